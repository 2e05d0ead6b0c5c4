using System.Buffers.Binary;
using Offload.Engine.Conntrack;
using Offload.Engine.Nat;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Nat;

/// <summary>
/// Both directions of translated flows: the original direction translated, the replies translated back, for
/// IPv4 and IPv6, TCP, UDP and ICMP echo, with every checksum recomputed from scratch by the test.
/// </summary>
public class ReplyTranslationTests
{
    private static RouterRig SnatWithPorts(string address) =>
        new([new NatRule { Action = NatAction.Snat, OutInterface = Wan, Range = Range(address, minPort: 20000, maxPort: 20999) }]);

    [Fact]
    public void Tcp_snat_ipv4_handshake_and_data_both_ways()
    {
        var rig = SnatWithPorts(WanAddress);

        var syn = rig.PassOut(TcpPacket(Client, 40000, Server, 80, Syn, seq: 1000));
        ushort port = SourcePort(syn);
        Assert.Equal(Ip(WanAddress), Source(syn));
        Assert.InRange(port, (ushort)20000, (ushort)20999);

        var synAck = rig.Forward(TcpPacket(Server, 80, WanAddress, port, Syn | Ack, seq: 5000, ack: 1001), Wan, Lan);
        Assert.True(synAck.Accepted);
        Assert.Equal(ConnDirection.Reply, synAck.Direction);
        Assert.Equal(CtInfo.EstablishedReply, synAck.CtInfo);

        // The reply is translated back before routing, so routing sends it to the client.
        Assert.Equal(Ip(Client), Destination(synAck.AfterPreRouting));
        Assert.Equal((ushort)40000, DestinationPort(synAck.AfterPreRouting));
        Assert.Equal(synAck.AfterPreRouting, synAck.Packet);
        AssertValid(synAck.Packet);
        Assert.Equal(Ip(Server), Source(synAck.Packet));
        Assert.Equal((ushort)80, SourcePort(synAck.Packet));
        Assert.Equal(5000u, Seq(synAck.Packet));
        Assert.Equal(1001u, AckNumber(synAck.Packet));

        var ack = rig.Forward(TcpPacket(Client, 40000, Server, 80, Ack, seq: 1001, ack: 5001), Lan, Wan);
        Assert.Equal(CtInfo.Established, ack.CtInfo);
        AssertValid(ack.Packet);
        Assert.Equal(port, SourcePort(ack.Packet));

        var data = rig.PassOut(TcpPacket(Client, 40000, Server, 80, Ack | Psh, seq: 1001, ack: 5001, payload: Ascii("GET / HTTP/1.1\r\n\r\n")));
        Assert.Equal(port, SourcePort(data));
        Assert.Equal("GET / HTTP/1.1\r\n\r\n", PayloadText(data));

        var answer = rig.PassIn(TcpPacket(Server, 80, WanAddress, port, Ack | Psh, seq: 5001, ack: 1019, payload: Ascii("HTTP/1.1 200 OK\r\n\r\n")));
        Assert.Equal(Ip(Client), Destination(answer));
        Assert.Equal((ushort)40000, DestinationPort(answer));
        Assert.Equal("HTTP/1.1 200 OK\r\n\r\n", PayloadText(answer));

        Assert.Equal(5, rig[EngineCounter.PacketsOut]);
        Assert.Equal(0, rig[EngineCounter.PacketsDropped]);
    }

    [Fact]
    public void Tcp_dnat_ipv4_reply_leaves_with_the_public_address_and_port()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Dnat, InInterface = Wan, DestinationPortMin = 2222, DestinationPortMax = 2222, Range = Range(InternalServer, minPort: 22) }]);

        var syn = rig.PassIn(TcpPacket(Remote, 50000, WanAddress, 2222, Syn, seq: 1));
        Assert.Equal(Ip(InternalServer), Destination(syn));
        Assert.Equal((ushort)22, DestinationPort(syn));

        var synAck = rig.Forward(TcpPacket(InternalServer, 22, Remote, 50000, Syn | Ack, seq: 700, ack: 2), Lan, Wan);
        Assert.Equal(synAck.AfterPreRouting, TcpPacket(InternalServer, 22, Remote, 50000, Syn | Ack, seq: 700, ack: 2)); // nothing to undo before routing
        AssertValid(synAck.Packet);
        Assert.Equal(Ip(WanAddress), Source(synAck.Packet));
        Assert.Equal((ushort)2222, SourcePort(synAck.Packet));
        Assert.Equal(Ip(Remote), Destination(synAck.Packet));
        Assert.Equal((ushort)50000, DestinationPort(synAck.Packet));
    }

    [Fact]
    public void Tcp_dnat_ipv6_both_ways()
    {
        const string Internal6 = "fd00:1::20";
        var rig = new RouterRig([new NatRule { Action = NatAction.Dnat, InInterface = Wan, Family = 6, DestinationPortMin = 8443, DestinationPortMax = 8443, Range = Range(Internal6, minPort: 443) }]);

        var syn = rig.PassIn(TcpPacket("2001:db8:5::99", 50000, WanAddress6, 8443, Syn, seq: 1));
        Assert.Equal(Ip(Internal6), Destination(syn));
        Assert.Equal((ushort)443, DestinationPort(syn));

        var synAck = rig.PassOut(TcpPacket(Internal6, 443, "2001:db8:5::99", 50000, Syn | Ack, seq: 700, ack: 2));
        Assert.Equal(Ip(WanAddress6), Source(synAck));
        Assert.Equal((ushort)8443, SourcePort(synAck));
        Assert.Equal(Ip("2001:db8:5::99"), Destination(synAck));
    }

    [Fact]
    public void Tcp_snat_ipv6_both_ways()
    {
        var rig = SnatWithPorts(WanAddress6);

        var syn = rig.PassOut(TcpPacket(Client6, 40000, Server6, 443, Syn, seq: 1000));
        ushort port = SourcePort(syn);
        Assert.Equal(Ip(WanAddress6), Source(syn));
        Assert.InRange(port, (ushort)20000, (ushort)20999);

        var synAck = rig.PassIn(TcpPacket(Server6, 443, WanAddress6, port, Syn | Ack, seq: 5000, ack: 1001));
        Assert.Equal(Ip(Client6), Destination(synAck));
        Assert.Equal((ushort)40000, DestinationPort(synAck));
        Assert.Equal(Ip(Server6), Source(synAck));
    }

    [Fact]
    public void Udp_ipv4_without_checksum_keeps_it_zero_both_ways()
    {
        var rig = SnatWithPorts(WanAddress);

        var query = UdpPacket(Client, 5353, Server, 53, Ascii("query"), withoutChecksum: true);
        Assert.Equal(0, TransportChecksum(query));

        var outbound = rig.PassOut(query);
        Assert.Equal(0, TransportChecksum(outbound));
        Assert.Equal(Ip(WanAddress), Source(outbound));
        ushort port = SourcePort(outbound);
        Assert.NotEqual((ushort)5353, port);

        var inbound = rig.PassIn(UdpPacket(Server, 53, WanAddress, port, Ascii("answer"), withoutChecksum: true));
        Assert.Equal(0, TransportChecksum(inbound));
        Assert.Equal(Ip(Client), Destination(inbound));
        Assert.Equal((ushort)5353, DestinationPort(inbound));
        Assert.Equal("answer", PayloadText(inbound));
    }

    [Fact]
    public void Udp_ipv4_with_checksum_is_updated_both_ways()
    {
        var rig = SnatWithPorts(WanAddress);

        var outbound = rig.PassOut(UdpPacket(Client, 5353, Server, 53, Ascii("query")));
        Assert.NotEqual(0, TransportChecksum(outbound));
        ushort port = SourcePort(outbound);

        var inbound = rig.PassIn(UdpPacket(Server, 53, WanAddress, port, Ascii("answer!")));
        Assert.NotEqual(0, TransportChecksum(inbound));
        Assert.Equal(Ip(Client), Destination(inbound));
        Assert.Equal((ushort)5353, DestinationPort(inbound));
    }

    [Fact]
    public void Udp_checksum_that_would_come_out_zero_is_sent_as_ffff()
    {
        // MASQUERADE keeps the free port, so the translated datagram is known in advance: pick a payload word that makes
        // its checksum compute to 0, which UDP must send as 0xFFFF (0 would mean "no checksum").
        var payload = new byte[8];
        var translated = UdpPacket(WanAddress, 5353, Server, 53, payload);
        translated.AsSpan(20 + 6, 2).Clear();
        ushort sum = OnesComplementSum(translated.AsSpan(20), StartSum(translated, translated.Length - 20));
        BinaryPrimitives.WriteUInt16BigEndian(payload, (ushort)~sum);

        var rig = new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }]);
        var original = UdpPacket(Client, 5353, Server, 53, payload);
        Assert.NotEqual(0xFFFF, TransportChecksum(original));

        var outbound = rig.PassOut(original);
        Assert.Equal(Ip(WanAddress), Source(outbound));
        Assert.Equal(0xFFFF, TransportChecksum(outbound));
    }

    [Fact]
    public void Udp_ipv6_both_ways()
    {
        var rig = SnatWithPorts(WanAddress6);

        var outbound = rig.PassOut(UdpPacket(Client6, 5353, Server6, 53, Ascii("query")));
        Assert.Equal(Ip(WanAddress6), Source(outbound));
        ushort port = SourcePort(outbound);
        Assert.InRange(port, (ushort)20000, (ushort)20999);

        var inbound = rig.PassIn(UdpPacket(Server6, 53, WanAddress6, port, Ascii("answer")));
        Assert.Equal(Ip(Client6), Destination(inbound));
        Assert.Equal((ushort)5353, DestinationPort(inbound));
    }

    [Fact]
    public void Icmp_echo_ipv4_id_is_translated_and_restored()
    {
        // An id range forces the id to change, so its translation (and its checksum update) is visible.
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, Range = Range(WanAddress, minPort: 30000, maxPort: 30009) }]);

        var request = rig.PassOut(IcmpEchoPacket(Client, Server, id: 0x1234, sequence: 9, payload: Ascii("abcdefgh")));
        ushort id = IcmpId(request);
        Assert.InRange(id, (ushort)30000, (ushort)30009);
        Assert.Equal(Ip(WanAddress), Source(request));
        Assert.Equal(IcmpEchoRequest, IcmpType(request));

        var reply = rig.Forward(IcmpEchoPacket(Server, WanAddress, id: id, sequence: 9, reply: true, payload: Ascii("abcdefgh")), Wan, Lan);
        Assert.True(reply.Accepted);
        Assert.Equal(ConnDirection.Reply, reply.Direction);
        AssertValid(reply.Packet);
        Assert.Equal(Ip(Client), Destination(reply.Packet));
        Assert.Equal((ushort)0x1234, IcmpId(reply.Packet));
        Assert.Equal(IcmpEchoReply, IcmpType(reply.Packet));
        Assert.Equal("abcdefgh", PayloadText(reply.Packet));
    }

    [Fact]
    public void Icmpv6_echo_id_is_translated_and_restored_with_the_pseudo_header_checksum()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, Range = Range(WanAddress6, minPort: 30000, maxPort: 30009) }]);

        var request = rig.PassOut(IcmpEchoPacket(Client6, Server6, id: 0x1234, sequence: 3, payload: Ascii("ping")));
        ushort id = IcmpId(request);
        Assert.InRange(id, (ushort)30000, (ushort)30009);
        Assert.Equal(Ip(WanAddress6), Source(request));

        var reply = rig.PassIn(IcmpEchoPacket(Server6, WanAddress6, id: id, sequence: 3, reply: true, payload: Ascii("ping")));
        Assert.Equal(Ip(Client6), Destination(reply));
        Assert.Equal((ushort)0x1234, IcmpId(reply));
    }

    [Fact]
    public void Icmpv6_echo_address_change_alone_updates_the_checksum()
    {
        // MASQUERADE keeps the id: only the pseudo-header changes, which ICMP (v4) would not even notice.
        var rig = new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }]);
        var request = rig.PassOut(IcmpEchoPacket(Client6, Server6, id: 77));
        Assert.Equal((ushort)77, IcmpId(request));
        Assert.Equal(Ip(WanAddress6), Source(request));
    }

    [Fact]
    public void Reply_from_a_stranger_to_the_public_address_is_not_translated()
    {
        var rig = SnatWithPorts(WanAddress);
        var syn = rig.PassOut(TcpPacket(Client, 40000, Server, 80));

        // Same public port, but from another server: it belongs to no connection and starts its own.
        var stranger = rig.In(TcpPacket(Server2, 80, WanAddress, SourcePort(syn), Syn));
        Assert.True(stranger.Accepted);
        Assert.Equal(Ip(WanAddress), Destination(stranger.Packet));
        Assert.Equal(ConnDirection.Original, stranger.Direction);
        Assert.Equal(CtInfo.New, stranger.CtInfo);
    }
}
