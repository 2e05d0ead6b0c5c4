using Offload.Engine.Conntrack;
using Offload.Engine.Nat;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Nat;

/// <summary>
/// What a packet's context says after <see cref="ConntrackEngine.Process"/> accepted it, the facts a live daemon turns
/// into mark bits: the kernel's ctinfo (NEW until the connection saw a reply, ESTABLISHED after, RELATED for an ICMP
/// error quoting the flow and for an expected connection, each with its reply variant) and its status bits IPS_SRC_NAT
/// and IPS_DST_NAT, set only when a translation changes the tuple (a null binding sets neither).
/// </summary>
public class PacketStateTests
{
    private static readonly NatRule Masquerade = new() { Action = NatAction.Masquerade, OutInterface = Wan };

    // What a dual-stack router usually has: IPv4 masqueraded, IPv6 routed.
    private static readonly NatRule Masquerade44 = new() { Action = NatAction.Masquerade, OutInterface = Wan, Family = 4 };

    private static readonly NatRule PortForward = new()
    {
        Action = NatAction.Dnat, InInterface = Wan, Protocol = IpProtocol.Tcp, DestinationPortMin = 8080, DestinationPortMax = 8080,
        Range = Range(InternalServer, minPort: 80),
    };

    [Fact]
    public void A_masqueraded_flow_is_new_then_established_and_source_natted_both_ways()
    {
        var rig = new RouterRig([Masquerade]);

        var syn = rig.Live(TcpPacket(Client, 40000, Server, 80, Syn, seq: 1), Lan, Wan);
        Assert.True(syn.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.New, syn.CtInfo);
        Assert.Equal(ConnDirection.Original, syn.Direction);
        Assert.True(syn.SourceNatted);
        Assert.False(syn.DestinationNatted);
        Assert.True(syn.Status.HasFlag(ConnStatus.Confirmed));
        Assert.Equal(ConnStatus.SrcNat, syn.Status & ConnStatus.NatMask);

        var synAck = rig.Live(TcpPacket(Server, 80, WanAddress, SourcePort(syn.Packet), Syn | Ack, seq: 500, ack: 2), Wan);
        Assert.True(synAck.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.EstablishedReply, synAck.CtInfo);
        Assert.Equal(ConnDirection.Reply, synAck.Direction);
        Assert.True(synAck.SourceNatted);
        Assert.False(synAck.DestinationNatted);

        var ack = rig.Live(TcpPacket(Client, 40000, Server, 80, Ack, seq: 2, ack: 501), Lan, Wan);
        Assert.Equal(CtInfo.Established, ack.CtInfo);
        Assert.True(ack.SourceNatted);
    }

    [Fact]
    public void A_routed_flow_without_nat_has_both_translations_decided_and_neither_set()
    {
        var rig = new RouterRig([Masquerade44]);

        var sent = rig.Live(UdpPacket(Client6, 5000, Server6, 53, Ascii("q")), Lan, Wan);
        Assert.True(sent.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.New, sent.CtInfo);
        Assert.False(sent.SourceNatted);
        Assert.False(sent.DestinationNatted);
        Assert.Equal(ConnStatus.NatDoneMask, sent.Status & (ConnStatus.NatDoneMask | ConnStatus.NatMask));

        var back = rig.Live(UdpPacket(Server6, 53, Client6, 5000, Ascii("a")), Wan, Lan);
        Assert.Equal(CtInfo.EstablishedReply, back.CtInfo);
        Assert.False(back.SourceNatted);
        Assert.False(back.DestinationNatted);
    }

    [Fact]
    public void A_port_forwarded_flow_is_destination_natted_in_both_directions()
    {
        var rig = new RouterRig([PortForward, Masquerade]);

        var syn = rig.Live(TcpPacket(Remote, 5555, WanAddress, 8080, Syn, seq: 1), Wan, Lan);
        Assert.True(syn.Accepted, rig.DropSummary());
        Assert.Equal(Ip(InternalServer), Destination(syn.Packet));
        Assert.Equal(CtInfo.New, syn.CtInfo);
        Assert.True(syn.DestinationNatted);
        Assert.False(syn.SourceNatted);

        var synAck = rig.Live(TcpPacket(InternalServer, 80, Remote, 5555, Syn | Ack, seq: 700, ack: 2), Lan, Wan);
        Assert.True(synAck.Accepted, rig.DropSummary());
        Assert.Equal(Ip(WanAddress), Source(synAck.Packet));
        Assert.Equal(CtInfo.EstablishedReply, synAck.CtInfo);
        Assert.True(synAck.DestinationNatted);
        Assert.False(synAck.SourceNatted);
    }

    [Fact]
    public void An_icmp_error_quoting_a_natted_flow_is_related_and_carries_the_flows_translation()
    {
        var rig = new RouterRig([Masquerade]);
        var sent = rig.Live(UdpPacket(Client, 5000, Server, 53, Ascii("q")), Lan, Wan);

        var error = rig.Live(IcmpErrorPacket(Server, WanAddress, IcmpDestinationUnreachable, IcmpCodePortUnreachable, sent.Packet), Wan);

        Assert.True(error.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.RelatedReply, error.CtInfo);
        Assert.Equal(sent.Connection, error.Connection);
        Assert.True(error.SourceNatted);
        Assert.False(error.DestinationNatted);
    }

    [Fact]
    public void A_dropped_packet_has_no_connection_and_no_status()
    {
        var rig = new RouterRig([Masquerade]);

        var stray = rig.Live(IcmpEchoPacket(Server, WanAddress, id: 77, reply: true), Wan);

        Assert.Equal(Verdict.Drop, stray.Verdict);
        Assert.Null(stray.Connection);
        Assert.Equal(ConnStatus.None, stray.Status);
        Assert.False(stray.SourceNatted);
        Assert.False(stray.DestinationNatted);
    }

    [Fact]
    public void Reading_the_state_allocates_nothing()
    {
        var rig = new RouterRig([Masquerade]);
        var buffer = WithRoom(UdpPacket(Client, 5000, Server, 53, Ascii("q")), 64);
        var ctx = new PacketContext(buffer, buffer.Length - 64, Lan) { OutInterface = Wan };
        Assert.Equal(Verdict.Accept, rig.Engine.Process(ref ctx));

        long before = GC.GetAllocatedBytesForCurrentThread();
        uint bits = 0;
        for (int i = 0; i < 1000; i++)
        {
            bits |= (uint)ctx.CtInfo | (uint)ctx.ConnectionStatus | (ctx.IsSourceNatted ? 1u : 0) | (ctx.IsDestinationNatted ? 2u : 0);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.NotEqual(0u, bits);
    }
}
