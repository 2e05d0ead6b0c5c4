using System.Diagnostics;
using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.Rpc;
using Offload.Alg.Tests.Support;
using Offload.Engine;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Rpc.RpcMessages;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Rpc;

/// <summary>
/// Bad input through the portmapper helper, over UDP and TCP, as a call and as an answer: nothing throws (a throw
/// would disable the helper) or reads past the payload, hostile lengths (auth bodies, strings, record marks up to
/// 2^31) end the read instead of driving it, a segment costs a scan bounded by its length, and what is not RPC is
/// counted; expectations stay within the policy and only lookups the client made open anything.
/// </summary>
public class RpcBadInputTests
{
    private static readonly Config Runs = Config.QuickThrowOnFailure.WithMaxTest(1000);

    [Theory]
    [InlineData(401u)]
    [InlineData(0xffff_fffcu)]
    [InlineData(0x7fff_ffffu)]
    public void A_credential_longer_than_rfc_5531_allows_is_counted(uint length)
    {
        var rig = RpcRig.Masquerade();
        var call = GetPortCall(1);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(call.AsSpan(28), length); // the credential's body length
        Assert.True(rig.Out(UdpPacket(Client, 40000, Server, 111, call)).Accepted);
        Assert.Equal(1, rig[EngineCounter.HelperMalformedCommand]);
    }

    [Fact]
    public void A_universal_address_string_longer_than_any_address_is_counted_and_opens_nothing()
    {
        var rig = RpcRig.Masquerade();
        var call = rig.Out(UdpPacket(Client, 40000, Server, 111, GetAddrCall(1, "tcp")));
        var reply = GetAddrReply(1, new string('1', RpcParser.MaxUniversalAddress + 1));
        Assert.True(rig.In(UdpPacket(Server, 111, WanAddress, SourcePort(call.Packet), reply)).Accepted);
        Assert.Equal(1, rig[EngineCounter.HelperMalformedCommand]);
        Assert.Empty(rig.Expectations);
    }

    [Fact]
    public void A_record_mark_of_two_gigabytes_skips_the_stream_by_its_length_without_reading_it()
    {
        var rig = RpcRig.Masquerade();
        var flow = new RpcTcpFlow(rig, forwarded: false);
        var huge = Concat(Words(0xffff_ffff), new byte[1000]);
        Assert.True(flow.Call(huge).Accepted);
        Assert.True(flow.Call(Record(GetPortCall(1))).Accepted); // inside the huge fragment as far as the stream goes
        flow.Answer(Record(GetPortReply(1, 2049)));
        Assert.Empty(rig.Expectations);
        Assert.Equal(0, rig[EngineCounter.HelperFailures]);
    }

    [Fact]
    public void A_segment_of_empty_fragments_is_walked_in_time_bounded_by_its_length()
    {
        var rig = RpcRig.Masquerade();
        var flow = new RpcTcpFlow(rig, forwarded: false);
        var empties = new byte[60000]; // 15000 record marks of empty, unfinished fragments
        var watch = Stopwatch.StartNew();
        Assert.True(flow.Call(empties, 101).Accepted);
        var lasts = Enumerable.Repeat(Words(0x8000_0000), 15000).SelectMany(w => w).ToArray(); // 15000 empty records
        Assert.True(flow.Call(lasts, 101).Accepted);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"{watch.Elapsed}");
        Assert.Equal(0, rig[EngineCounter.HelperFailures]);
        Assert.True(rig[EngineCounter.HelperMalformedCommand] <= RpcHelper.MaxRecordsPerSegment);
        Assert.True(rig[EngineCounter.HelperPartialCommand] >= 1);
    }

    [Fact]
    public void More_lookups_than_the_policy_allows_keep_at_most_the_policy_outstanding()
    {
        var rig = RpcRig.Masquerade();
        var flow = new RpcTcpFlow(rig, forwarded: false);
        for (uint xid = 1; xid <= 12; xid++)
        {
            flow.Call(Record(GetPortCall(xid)));
            flow.Answer(Record(GetPortReply(xid, 2000 + xid)));
        }

        Assert.Equal(RpcHelper.DefaultPolicy.MaxExpected, rig.Expectations.Count);
    }

    private static readonly byte[][] Valid =
    [
        GetPortCall(0x10, protocol: 6, authSys: true),
        GetAddrCall(0x11, "udp", addr: "192.0.2.2.0.0", owner: "superuser"),
        GetAddrCall(0x12, "tcp6", rpcbVersion: 4, procedure: 9),
        GetPortReply(0x10, 2049),
        GetAddrReply(0x11, Universal(Server, 20048)),
        GetAddrReply(0x12, "2001:db8:5::80.8.1"),
        DumpCall(0x13),
    ];

    private static readonly byte[] Interesting = [0, 1, 2, 3, 4, 6, 9, 17, 0x80, 0xff, (byte)'.', (byte)':', (byte)'1'];

    private static readonly Gen<byte> AnyByte = Gen.Frequency(
        (1, Gen.Choose(0, 255).Select(b => (byte)b)),
        (3, Gen.Elements(Interesting)));

    private static readonly Gen<byte[]> Mutated = ByteMutations.Of(Gen.Elements(Valid), AnyByte, maxPosition: 120, maxEdits: 4);

    /// <summary>
    /// A datagram through the helper as a call and as an answer to every lookup the valid messages make: nothing fails,
    /// what leaves is valid, and a message the parser calls malformed is counted.
    /// </summary>
    private static bool SurvivesDatagram(byte[] payload)
    {
        var rig = RpcRig.PortForward();
        foreach (var call in Valid.Take(3))
        {
            rig.In(UdpPacket(Server, 40000, WanAddress, 111, call));
        }

        var asCall = rig.In(UdpPacket(Server, 40000, WanAddress, 111, payload));
        var asAnswer = rig.Out(UdpPacket(InternalServer, 111, Server, 40000, payload));
        bool counted = rig[EngineCounter.HelperMalformedCommand] + rig[EngineCounter.HelperForeignAddressRefused] + rig[EngineCounter.HelperExpectationFailed] > 0;
        bool wellFormedCall = RpcParser.TryReadHeader(payload, out _, out uint type) && (type != RpcParser.Call || RpcParser.ReadCall(payload, out _) != RpcStatus.Malformed);
        return rig[EngineCounter.HelperFailures] == 0
            && (!asCall.Accepted || TransportChecksumIsValid(asCall.Packet))
            && (!asAnswer.Accepted || TransportChecksumIsValid(asAnswer.Packet))
            && (wellFormedCall || counted)
            && rig.Expectations.Count <= RpcHelper.DefaultPolicy.MaxExpected;
    }

    /// <summary>The same bytes as a TCP stream cut into two segments anywhere, in both directions.</summary>
    private static bool SurvivesStream(byte[] payload, int cut)
    {
        var rig = RpcRig.PortForward();
        var flow = new RpcTcpFlow(rig, forwarded: true);
        flow.Call(Concat(Valid.Take(3).Select(m => Record(m)).ToArray()));
        int at = payload.Length == 0 ? 0 : Math.Abs(cut % payload.Length);
        var hops = new[]
        {
            flow.Call(payload[..at]), flow.Call(payload[at..]),
            flow.Answer(payload[..at]), flow.Answer(payload[at..]),
        };
        return rig[EngineCounter.HelperFailures] == 0
            && hops.All(h => !h.Accepted || TransportChecksumIsValid(h.Packet))
            && rig.Expectations.Count <= RpcHelper.DefaultPolicy.MaxExpected;
    }

    private static readonly Gen<byte[]> MutatedRecords = ByteMutations.Of(
        Gen.Elements(Valid).SelectMany(m => Gen.Choose(0, m.Length).Select(split => Record(m, split))), AnyByte, maxPosition: 130, maxEdits: 4);

    [Fact]
    public void Mutated_datagrams_never_fail_the_helper_and_malformed_ones_are_counted() =>
        Check.One(Runs, Prop.ForAll(Mutated.ToArbitrary(), SurvivesDatagram));

    [Fact]
    public void Random_datagrams_never_fail_the_helper_and_malformed_ones_are_counted() =>
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), SurvivesDatagram));

    [Fact]
    public void Mutated_records_cut_anywhere_never_fail_the_helper() =>
        Check.One(Runs, Prop.ForAll(MutatedRecords.ToArbitrary(), ArbMap.Default.ArbFor<int>(), SurvivesStream));

    [Fact]
    public void Random_streams_never_fail_the_helper() =>
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), ArbMap.Default.ArbFor<int>(), SurvivesStream));

    [Fact]
    public void The_parser_never_throws_on_any_message_nor_reads_past_it()
    {
        // Each message is handed over as the exact span: reading one byte past it would throw.
        Check.One(Runs, Prop.ForAll(Gen.OneOf(Mutated, ArbMap.Default.ArbFor<byte[]>().Generator).ToArbitrary(), bytes =>
        {
            RpcParser.TryReadHeader(bytes, out _, out _);
            RpcParser.ReadCall(bytes, out _);
            RpcParser.ReadReply(bytes, RpcLookup.GetPort, out var port);
            RpcParser.ReadReply(bytes, RpcLookup.GetAddr, out var addr);
            UniversalAddress.TryParse(bytes, out _, out _, out _);
            return port.ResultStart + port.ResultLength <= bytes.Length && addr.TextStart + addr.TextLength <= bytes.Length;
        }));
    }
}
