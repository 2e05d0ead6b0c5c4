using Offload.Engine.Conntrack;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Offload.Sdk.Testing;
using Offload.Engine.Tests.Packets;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;

namespace Offload.Engine.Tests.IcmpTracking;

/// <summary>
/// IPv6 packets whose upper layer sits behind extension headers, classified as the kernel's conntrack does
/// (ipv6_skip_exthdr): hop-by-hop, routing, fragment, destination options and AH are stepped over, AH by its own length
/// unit ((length + 2) * 4 bytes), so TCP or UDP behind them is tracked and translated as TCP or UDP; Mobility (135),
/// HIP and shim6 end the walk, so the packet is of that protocol, tracked by addresses alone, and what follows is never
/// read as the TCP or UDP header its payload-protocol byte announces; a chain that runs past the packet is malformed,
/// dropped and counted.
/// </summary>
public class Ipv6ExtensionHeaderTests
{
    private static RouterRig Routed() => new([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan, Family = 4 }]);

    private static RouterRig Nat66() => new([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan, Range = Ports(61000, 65535) }]);

    /// <summary>A Mobility header (RFC 6275: payload protocol, length, MH type...) whose payload-protocol byte claims TCP.</summary>
    private static Ext MobilityClaimingTcp() => new(IpProtocol.Mobility, [6, 0, 5, 0, 0, 0, 0, 0]);

    [Fact]
    public void Tcp_behind_an_authentication_header_is_tracked_as_tcp_with_its_ports_both_ways()
    {
        var rig = Routed();
        var syn = Wire.V6(Client6, Server6, IpProtocol.Tcp, Wire.Tcp(40000, 443, 1000, 0, Wire.Syn), [Ext.Ah(icvWords: 3)]);
        var synAck = Wire.V6(Server6, Client6, IpProtocol.Tcp, Wire.Tcp(443, 40000, 9000, 1001, Wire.Syn | Wire.Ack), [Ext.Ah(icvWords: 3)]);

        var out1 = rig.Live(syn, Lan, Wan);
        var back = rig.Live(synAck, Wan, Lan);

        Assert.True(out1.Accepted && back.Accepted, rig.DropSummary());
        Assert.Equal(syn, out1.Packet);
        Assert.Equal(synAck, back.Packet);
        var conn = out1.Connection!;
        Assert.Equal(IpProtocol.Tcp, conn!.Value.Original.Protocol);
        Assert.Equal(40000, conn!.Value.Original.SourcePort);
        Assert.Equal(443, conn!.Value.Original.DestinationPort);
        Assert.Equal(conn, back.Connection);
        Assert.Equal(CtInfo.EstablishedReply, back.CtInfo);
        Assert.Equal(TcpConntrackState.SynRecv, conn!.Value.TcpState);
    }

    [Fact]
    public void Udp_behind_an_authentication_header_is_translated_with_a_correct_checksum()
    {
        var rig = Nat66();
        var datagram = Wire.V6(Client6, Server6, IpProtocol.Udp, Wire.Udp(5000, 53, TestPackets.Ascii("question")), [Ext.HopByHop(), Ext.Ah(icvWords: 2)]);

        var hop = rig.Live(datagram, Lan, Wan);

        Assert.True(hop.Accepted, rig.DropSummary());
        var p = hop.Packet;
        TestPackets.AssertValid(p);
        Assert.Equal(Ip(WanAddress6), TestPackets.Source(p));
        Assert.InRange(TestPackets.SourcePort(p), 61000, 65535);
        Assert.Equal(53, TestPackets.DestinationPort(p));
        Assert.Equal(IpProtocol.Udp, hop.Connection!.Value.Original.Protocol);
    }

    [Fact]
    public void Behind_a_mobility_header_nothing_is_read_as_tcp_the_packet_is_protocol_135_without_ports()
    {
        var tcpLike = Wire.Tcp(40000, 443, 1000, 0, Wire.Syn);
        var p = Wire.V6(Client6, Server6, IpProtocol.Tcp, tcpLike, [MobilityClaimingTcp()], fixTransport: false);

        var info = PacketParser.Parse(p);
        Assert.True(info.IsValid);
        Assert.Equal(IpProtocol.Mobility, info.Protocol);
        Assert.Equal(40, info.L4Offset);
        Assert.Equal(40, info.PayloadOffset);
        Assert.True(ConnTuples.TryRead(p, info, out var tuple));
        Assert.Equal(0, tuple.SourcePort);
        Assert.Equal(0, tuple.DestinationPort);

        // Through a router that masquerades IPv6: the address changes, the bytes that look like TCP do not.
        var rig = Nat66();
        var hop = rig.Live(p, Lan, Wan);
        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(IpProtocol.Mobility, hop.Connection!.Value.Original.Protocol);
        Assert.Equal(Ip(WanAddress6), TestPackets.Source(hop.Packet));
        Assert.Equal(p.AsSpan(40).ToArray(), hop.Packet.AsSpan(40).ToArray());
        Assert.Equal(0, rig.Engine.Connections.Entries().Count(c => c.Original.Protocol == IpProtocol.Tcp));
    }

    [Theory]
    [InlineData(IpProtocol.Mobility)]
    [InlineData(IpProtocol.Hip)]
    [InlineData(IpProtocol.Shim6)]
    public void Headers_that_end_the_kernels_walk_end_ours(byte type)
    {
        var p = Wire.V6(Client6, Server6, IpProtocol.Udp, Wire.Udp(1, 2, [1, 2, 3, 4]), [new Ext(type, new byte[8])], fixTransport: false);

        var info = PacketParser.Parse(p);

        Assert.True(info.IsValid);
        Assert.Equal(type, info.Protocol);
        Assert.Equal(40, info.L4Offset);
    }

    [Fact]
    public void An_extension_header_chain_running_past_the_packet_is_dropped_as_malformed()
    {
        var rig = Routed();
        var hopByHop = Wire.V6(Client6, Server6, IpProtocol.Tcp, Wire.Tcp(40000, 443, 1, 0, Wire.Syn), [Ext.HopByHop()]);
        hopByHop[41] = 30; // 248 bytes claimed
        var ah = Wire.V6(Client6, Server6, IpProtocol.Udp, Wire.Udp(5000, 53, [1]), [Ext.Ah()]);
        ah[41] = 100; // 408 bytes claimed
        // A chain that ends exactly at the end of the packet, announcing another header: no room for it.
        var announcesMore = Wire.V6(Client6, Server6, IpProtocol.IPv6DestinationOptions, [], [Ext.DestinationOptions()]);

        Assert.Equal(Verdict.Drop, rig.Live(hopByHop, Lan, Wan).Verdict);
        Assert.Equal(Verdict.Drop, rig.Live(ah, Lan, Wan).Verdict);
        Assert.Equal(Verdict.Drop, rig.Live(announcesMore, Lan, Wan).Verdict);

        Assert.Equal(3, rig[EngineCounter.MalformedBadExtensionHeader]);
        Assert.Equal(3, rig[EngineCounter.PacketsDropped]);
        Assert.Equal(0, rig.Engine.Connections.Count);
    }

    [Fact]
    public void A_chain_longer_than_the_limit_is_dropped_and_counted()
    {
        var rig = Routed();
        var chain = Enumerable.Repeat(Ext.DestinationOptions(), PacketParser.MaxExtensionHeaders + 1).ToArray();
        var p = Wire.V6(Client6, Server6, IpProtocol.Udp, Wire.Udp(5000, 53, [1]), chain);

        Assert.Equal(Verdict.Drop, rig.Live(p, Lan, Wan).Verdict);
        Assert.Equal(1, rig[EngineCounter.MalformedTooManyExtensionHeaders]);
    }
}
