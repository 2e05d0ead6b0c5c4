using System.Buffers.Binary;
using Offload.Engine.Conntrack;
using Offload.Engine.Helpers;
using Offload.Engine.Snapshot;
using Offload.Engine.Tests.Expectations;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Engine.Tests.Support.MasqueradedTcp;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Gre;

/// <summary>
/// GRE as the kernel's nf_conntrack_proto_gre.c tracks it: plain GRE (version 0) by addresses, with 30 s until a reply
/// and 180 s (assured) after, a PPTP call's too (as this kernel shows in conntrack -L); PPTP's enhanced GRE (version 1) by the two call IDs of a call, the sender's looked up in
/// the keymap that the call's expectations fill, so both directions of a call are one connection; NAT writes the call
/// ID of a packet only in a destination manip (the packet names its receiver's call ID alone, and has no checksum).
/// Enhanced GRE that carries no PPP is refused, as the kernel refuses to track it.
/// </summary>
public class GreTrackingTests
{
    internal const ushort PnsCall = 0x1111;
    internal const ushort PacCall = 0x2222;
    internal const ushort TranslatedCall = 0x7777;
    private const long Second = 1_000_000_000L;

    internal static byte[] Gre(string source, string destination, ushort callId, byte version = 1, ushort protocol = 0x880B)
    {
        var gre = new byte[16];
        gre[0] = version == 1 ? (byte)0x30 : (byte)0x00;
        gre[1] = version;
        BinaryPrimitives.WriteUInt16BigEndian(gre.AsSpan(2), protocol);
        BinaryPrimitives.WriteUInt16BigEndian(gre.AsSpan(4), 4);
        BinaryPrimitives.WriteUInt16BigEndian(gre.AsSpan(6), callId);
        BinaryPrimitives.WriteUInt32BigEndian(gre.AsSpan(8), 7);
        return IpPacket(source, destination, 47, gre);
    }

    internal static ushort CallId(byte[] packet) => BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(L4Offset(packet) + 6));

    private static double SecondsLeft(RouterRig rig, Connection conn) => (conn.ExpiresAtNanoseconds - rig.Clock.NowNanoseconds) / (double)Second;

    /// <summary>
    /// A helper that, on the reply of its control connection, expects a call's GRE both ways as the PPTP helper does:
    /// from the client with its call ID to the server's (leaving translated with <see cref="TranslatedCall"/>), and from
    /// the server to the router's address with the translated call ID (delivered with the client's own).
    /// </summary>
    internal static ScriptedHelper CallHelper() => new((ref HelperContext context) =>
    {
        if (context.Direction != ConnDirection.Reply || context.Payload.IsEmpty)
        {
            return HelperVerdict.Accept;
        }

        ref readonly var reply = ref context.Tuple;
        ref readonly var original = ref context.OtherTuple;
        var toPac = new ExpectationRequest
        {
            Protocol = IpProtocol.Gre, Source = original.Source, SourcePrefixLength = 32, SourcePort = PnsCall, MatchSourcePort = true,
            Destination = original.Destination, DestinationPort = PacCall, Nat = ExpectationNat.Source, NatAddress = reply.Destination, NatPort = TranslatedCall,
        };
        var toPns = new ExpectationRequest
        {
            Protocol = IpProtocol.Gre, Source = reply.Source, SourcePrefixLength = 32, SourcePort = PacCall, MatchSourcePort = true,
            Destination = reply.Destination, DestinationPort = TranslatedCall, Nat = ExpectationNat.Redirect, NatAddress = original.Source, NatPort = PnsCall,
        };
        Assert.Equal(ExpectResult.Added, context.Expect(ref toPac));
        Assert.Equal(ExpectResult.Added, context.Expect(ref toPns));
        return HelperVerdict.Accept;
    });

    private static RouterRig CallRouter(out ScriptedHelper helper)
    {
        helper = CallHelper();
        var rig = new RouterRig(Masquerade, [new HelperBinding(helper, 6, ServicePort)]);
        var syn = Establish(rig);
        rig.PassIn(TcpPacket(Server, ServicePort, WanAddress, SourcePort(syn), Ack | Psh, seq: S + 1, ack: C + 1, payload: Ascii("CALL")));
        return rig;
    }

    [Fact]
    public void Plain_gre_is_tracked_by_addresses_with_the_kernels_timeouts()
    {
        var rig = new RouterRig();
        var first = rig.Out(Gre(Client, Server, 0, version: 0));
        Assert.True(first.Accepted, rig.DropSummary());
        var conn = first.Connection!;
        Assert.Equal(0, conn!.Value.Original.SourcePort);
        Assert.Equal(0, conn!.Value.Original.DestinationPort);
        Assert.Equal(30, SecondsLeft(rig, conn!.Value));
        Assert.False(conn!.Value.HasStatus(ConnStatus.Assured));

        // As in the kernel, the reply that is seen first still gets the unreplied timeout (SEEN_REPLY is set after tracking).
        var back = rig.In(Gre(Server, Client, 0, version: 0));
        Assert.Equal(conn, back.Connection);
        Assert.Equal(ConnDirection.Reply, back.Direction);
        Assert.Equal(30, SecondsLeft(rig, conn!.Value));
        rig.Out(Gre(Client, Server, 0, version: 0));
        Assert.Equal(180, SecondsLeft(rig, conn!.Value));
        Assert.True(conn!.Value.HasStatus(ConnStatus.Assured));
    }

    [Fact]
    public void Masqueraded_plain_gre_keeps_its_header_and_its_reply_finds_the_client()
    {
        var rig = new RouterRig(Masquerade);
        byte[] sent = Gre(Client, Server, 0x4242, version: 0);
        var outward = rig.PassOut(sent);
        Assert.Equal(Ip(WanAddress), Source(outward));
        Assert.Equal(sent.AsSpan(L4Offset(sent)).ToArray(), outward.AsSpan(L4Offset(outward)).ToArray());
        var inward = rig.PassIn(Gre(Server, WanAddress, 0x4242, version: 0));
        Assert.Equal(Ip(Client), Destination(inward));
        Assert.Equal(0x4242, CallId(inward)); // version 0 has no call ID to translate
    }

    [Fact]
    public void Enhanced_gre_of_no_call_is_keyed_by_its_call_id_alone()
    {
        var rig = new RouterRig();
        var hop = rig.Out(Gre(Client, Server, PacCall));
        Assert.True(hop.Accepted);
        Assert.Equal(0, hop.Connection!.Value.Original.SourcePort);
        Assert.Equal(PacCall, hop.Connection!.Value.Original.DestinationPort);
        Assert.Equal(30, SecondsLeft(rig, hop.Connection!.Value));
    }

    [Fact]
    public void Enhanced_gre_without_ppp_is_dropped_as_the_kernel_refuses_it()
    {
        var rig = new RouterRig();
        Assert.False(rig.Out(Gre(Client, Server, PacCall, protocol: 0x0800)).Accepted);
        Assert.Equal(1, rig[EngineCounter.DroppedCannotStart]);
        Assert.Equal(0, rig.Engine.Connections.Count);
    }

    [Fact]
    public void A_calls_gre_both_ways_is_one_connection_translated_by_address_and_call_id()
    {
        var rig = CallRouter(out _);
        Assert.Equal(2, rig.Engine.Connections.GreKeys.Count);

        var outward = rig.PassOut(Gre(Client, Server, PacCall));
        Assert.Equal(Ip(WanAddress), Source(outward));
        Assert.Equal(PacCall, CallId(outward)); // a source manip has no call ID to write
        var conn = rig.Engine.Connections.Entries().Single(c => c.Original.Protocol == IpProtocol.Gre);
        Assert.Equal(PnsCall, conn.Original.SourcePort);
        Assert.Equal(TranslatedCall, conn.Reply.DestinationPort);
        Assert.Equal(30, SecondsLeft(rig, conn)); // pptp_expectfn's 10 minutes are overwritten by the GRE tracker, in the kernel too

        var inward = rig.PassIn(Gre(Server, WanAddress, TranslatedCall));
        Assert.Equal(Ip(Client), Destination(inward));
        Assert.Equal(PnsCall, CallId(inward));
        rig.PassOut(Gre(Client, Server, PacCall));
        Assert.Equal(180, SecondsLeft(rig, conn));
        Assert.True(conn.HasStatus(ConnStatus.Assured));
        Assert.Equal(1, rig[EngineCounter.ConnectionsExpected]);
        Assert.Single(rig.Engine.Connections.Entries(), c => c.Original.Protocol == IpProtocol.Gre);
    }

    [Fact]
    public void The_keymap_goes_with_the_expectations_and_the_connection()
    {
        var rig = CallRouter(out _);
        rig.PassOut(Gre(Client, Server, PacCall));
        var conn = rig.Engine.Connections.Entries().Single(c => c.Original.Protocol == IpProtocol.Gre);

        foreach (var e in rig.Expectations)
        {
            rig.Engine.Expectations.Remove(e);
        }

        Assert.Equal(4, rig.Engine.Connections.GreKeys.Count); // the connection's two tuples, and both as translated
        rig.Engine.Destroy(conn);
        Assert.Equal(0, rig.Engine.Connections.GreKeys.Count);
    }

    [Fact]
    public void An_icmp_error_quoting_a_calls_gre_as_it_left_reaches_the_client()
    {
        var rig = CallRouter(out _);
        var outward = rig.PassOut(Gre(Client, Server, PacCall));
        var error = IcmpErrorPacket(Server, WanAddress, 3, 3, outward);
        var delivered = rig.PassIn(error);
        Assert.Equal(Ip(Client), Destination(delivered));
    }

    [Fact]
    public void A_calls_gre_goes_on_after_a_snapshot_restore()
    {
        var before = CallRouter(out var helper);
        before.PassOut(Gre(Client, Server, PacCall));

        using var image = EngineSnapshot.Capture(before.Engine, 1_800_000_000 * Second, final: true);
        using var stream = new MemoryStream();
        image.WriteTo(stream);
        var after = new RouterRig(Masquerade, [new HelperBinding(helper, 6, ServicePort)]);
        stream.Position = 0;
        EngineSnapshot.Load(after.Engine, stream, (1_800_000_000 * Second) + Second);

        Assert.Equal(before.Engine.Connections.GreKeys.Count, after.Engine.Connections.GreKeys.Count);
        var inward = after.PassIn(Gre(Server, WanAddress, TranslatedCall));
        Assert.Equal(Ip(Client), Destination(inward));
        Assert.Equal(PnsCall, CallId(inward));
    }

    [Fact]
    public void An_expected_call_from_the_server_first_is_delivered_with_the_clients_call_id()
    {
        var rig = CallRouter(out _);
        var inward = rig.PassIn(Gre(Server, WanAddress, TranslatedCall));
        Assert.Equal(Ip(Client), Destination(inward));
        Assert.Equal(PnsCall, CallId(inward));
        var outward = rig.PassOut(Gre(Client, Server, PacCall));
        Assert.Equal(Ip(WanAddress), Source(outward));
        Assert.Single(rig.Engine.Connections.Entries(), c => c.Original.Protocol == IpProtocol.Gre);
    }

    [Fact]
    public void Enhanced_gre_without_ppp_on_a_tracked_flow_is_dropped_and_counted()
    {
        var rig = new RouterRig();
        Assert.True(rig.Out(Gre(Client, Server, 0, version: 0)).Accepted);
        Assert.False(rig.Out(Gre(Client, Server, PacCall, protocol: 0x0800)).Accepted);
        Assert.Equal(1, rig[EngineCounter.DroppedGreNotPptp]);
    }

    [Fact]
    public void A_calls_gre_ends_with_its_control_connection_as_the_kernels_pptp_helper_ends_it()
    {
        var rig = CallRouter(out _);
        rig.PassOut(Gre(Client, Server, PacCall));
        var call = rig.Engine.Connections.Entries().Single(c => c.Original.Protocol == IpProtocol.Gre);
        var control = rig.Engine.Connections.Entries().Single(c => c.Original.Protocol == IpProtocol.Tcp);

        rig.Engine.Destroy(control);
        Assert.True(call.ExpiresAtNanoseconds <= rig.Clock.NowNanoseconds);

        // The server's next GRE finds no call: it is tracked anew, and reaches no client.
        var hop = rig.In(Gre(Server, WanAddress, TranslatedCall));
        Assert.NotEqual(call, hop.Connection);
        Assert.True(!hop.Accepted || Destination(hop.Packet).Equals(Ip(WanAddress)));
        Assert.Equal(0, rig.Engine.Connections.GreKeys.Count);
    }

    [Fact]
    public void A_calls_gre_that_ends_first_leaves_its_control_connection_nothing_to_end()
    {
        var rig = CallRouter(out _);
        rig.PassOut(Gre(Client, Server, PacCall));
        var call = rig.Engine.Connections.Entries().Single(c => c.Original.Protocol == IpProtocol.Gre);
        rig.Engine.Destroy(call);
        var control = rig.Engine.Connections.Entries().Single(c => c.Original.Protocol == IpProtocol.Tcp);
        long before = call.ExpiresAtNanoseconds;
        rig.Clock.NowNanoseconds += Second;
        rig.Engine.Destroy(control);
        Assert.Equal(before, call.ExpiresAtNanoseconds);
    }
}
