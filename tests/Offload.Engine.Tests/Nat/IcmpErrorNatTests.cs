using Offload.Engine.Conntrack;
using Offload.Engine.Nat;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Nat;

/// <summary>
/// ICMP and ICMPv6 errors about translated flows (the kernel's nf_nat_icmp_reply_translation): the quoted packet
/// gets the inverse translation, the outer header this direction's, and the ICMP checksum is right afterwards.
/// </summary>
public class IcmpErrorNatTests
{
    private static RouterRig SnatWithPorts(string address) =>
        new([new NatRule { Action = NatAction.Snat, OutInterface = Wan, Range = Range(address, minPort: 20000, maxPort: 20999) }]);

    [Fact]
    public void Port_unreachable_from_the_server_about_a_snat_udp_flow_reaches_the_client_translated()
    {
        var rig = SnatWithPorts(WanAddress);
        var sent = rig.PassOut(UdpPacket(Client, 5000, Server, 53, Ascii("is anyone there?")));
        ushort port = SourcePort(sent);
        Assert.NotEqual((ushort)5000, port);

        var error = IcmpErrorPacket(Server, WanAddress, IcmpDestinationUnreachable, IcmpCodePortUnreachable, sent);
        var hop = rig.Forward(error, Wan, Lan);

        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.RelatedReply, hop.CtInfo);
        Assert.Equal(FindBySource(rig, Client), hop.Connection);
        var p = hop.Packet;
        AssertValid(p); // the ICMP checksum over the rewritten quote
        Assert.Equal(error.Length, p.Length);
        Assert.Equal(Ip(Server), Source(p));
        Assert.Equal(Ip(Client), Destination(p));
        Assert.Equal(IcmpDestinationUnreachable, IcmpType(p));
        Assert.Equal(IcmpCodePortUnreachable, IcmpCode(p));

        var quoted = Quoted(p);
        AssertQuotedValid(quoted); // header checksum and (quote is whole) the UDP checksum
        Assert.Equal(Ip(Client), Source(quoted));
        Assert.Equal((ushort)5000, SourcePort(quoted));
        Assert.Equal(Ip(Server), Destination(quoted));
        Assert.Equal((ushort)53, DestinationPort(quoted));
        Assert.Equal("is anyone there?", PayloadText(quoted));

        // Routing decided on the translated destination already.
        Assert.Equal(Ip(Client), Destination(hop.AfterPreRouting));
    }

    [Fact]
    public void Time_exceeded_from_a_far_router_quoting_only_eight_bytes_of_tcp()
    {
        var rig = SnatWithPorts(WanAddress);
        var sent = rig.PassOut(TcpPacket(Client, 40000, Server, 80, Syn, seq: 1000, ttl: 1));
        ushort port = SourcePort(sent);

        var error = IcmpErrorPacket(FarRouter, WanAddress, IcmpTimeExceeded, 0, sent, quoteLength: 28);
        Assert.Equal(20 + 8 + 28, error.Length);
        var p = rig.PassIn(error);

        Assert.Equal(Ip(FarRouter), Source(p));
        Assert.Equal(Ip(Client), Destination(p));
        var quoted = Quoted(p);
        Assert.Equal(28, quoted.Length);
        AssertQuotedValid(quoted);
        Assert.Equal(Ip(Client), Source(quoted));
        Assert.Equal((ushort)40000, SourcePort(quoted));
        Assert.Equal(Ip(Server), Destination(quoted));
        Assert.Equal((ushort)80, DestinationPort(quoted));
        Assert.Equal(1000u, Seq(quoted));
        Assert.NotEqual(port, SourcePort(quoted));
    }

    [Fact]
    public void Fragmentation_needed_keeps_its_mtu_and_translates_the_quoted_tcp_checksum()
    {
        var rig = SnatWithPorts(WanAddress);
        var sent = rig.PassOut(TcpPacket(Client, 40000, Server, 80, Syn, seq: 1000));

        var error = IcmpErrorPacket(FarRouter, WanAddress, IcmpDestinationUnreachable, IcmpCodeFragmentationNeeded, sent, rest: 1400);
        var p = rig.PassIn(error);

        Assert.Equal(1400u, IcmpRest(p));
        Assert.Equal(IcmpCodeFragmentationNeeded, IcmpCode(p));
        var quoted = Quoted(p);
        Assert.Equal(sent.Length, quoted.Length);
        AssertQuotedValid(quoted); // the whole SYN is quoted: its TCP checksum must hold after translation
        Assert.Equal(Ip(Client), Source(quoted));
        Assert.Equal((ushort)40000, SourcePort(quoted));
    }

    [Fact]
    public void Packet_too_big_ipv6_quoting_a_cut_segment_is_translated_with_the_pseudo_header_checksum()
    {
        var rig = SnatWithPorts(WanAddress6);
        rig.PassOut(TcpPacket(Client6, 40000, Server6, 443, Syn, seq: 1000, options: [2, 4, 5, 0xa0]));
        var synAck = rig.PassIn(TcpPacket(Server6, 443, WanAddress6, PortOf(rig, Client6), Syn | Ack, seq: 9000, ack: 1001, options: [2, 4, 5, 0xa0]));
        Assert.Equal(Ip(Client6), Destination(synAck));
        rig.PassOut(TcpPacket(Client6, 40000, Server6, 443, Ack, seq: 1001, ack: 9001));
        var big = rig.PassOut(TcpPacket(Client6, 40000, Server6, 443, Ack | Psh, seq: 1001, ack: 9001, payload: new byte[1400]));
        ushort port = SourcePort(big);

        var error = IcmpErrorPacket(FarRouter6, WanAddress6, Icmp6PacketTooBig, 0, big, rest: 1280);
        Assert.Equal(IPv6ErrorLimit, error.Length); // the quote is cut at the minimum MTU
        var hop = rig.Forward(error, Wan, Lan);

        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.RelatedReply, hop.CtInfo);
        var p = hop.Packet;
        AssertValid(p); // ICMPv6: the checksum covers the translated outer destination too
        Assert.Equal(error.Length, p.Length);
        Assert.Equal(Ip(FarRouter6), Source(p));
        Assert.Equal(Ip(Client6), Destination(p));
        Assert.Equal(1280u, IcmpRest(p));
        var quoted = Quoted(p);
        Assert.Equal(Ip(Client6), Source(quoted));
        Assert.Equal((ushort)40000, SourcePort(quoted));
        Assert.Equal(Ip(Server6), Destination(quoted));
        Assert.Equal((ushort)443, DestinationPort(quoted));
        Assert.NotEqual(port, SourcePort(quoted));
    }

    [Fact]
    public void Time_exceeded_ipv6_quoting_a_whole_udp_datagram()
    {
        var rig = SnatWithPorts(WanAddress6);
        var sent = rig.PassOut(UdpPacket(Client6, 33434, Server6, 33435, Ascii("traceroute probe")));

        var hop = rig.In(IcmpErrorPacket(FarRouter6, WanAddress6, Icmp6TimeExceeded, 0, sent));

        Assert.True(hop.Accepted, rig.DropSummary());
        var p = hop.Packet;
        AssertValid(p);
        Assert.Equal(Ip(FarRouter6), Source(p));
        Assert.Equal(Ip(Client6), Destination(p));
        var quoted = Quoted(p);
        AssertQuotedValid(quoted);
        Assert.Equal(Ip(Client6), Source(quoted));
        Assert.Equal((ushort)33434, SourcePort(quoted));
    }

    // Regression: the pseudo-header sum was once added with a plain "+=", losing the carry out of 64 bits (half of all errors wrong).
    [Fact]
    public void Icmpv6_errors_carry_a_correct_checksum_after_translation()
    {
        var rig = SnatWithPorts(WanAddress6);
        var failures = new List<string>();
        for (int i = 0; i < 32; i++)
        {
            var sent = rig.PassOut(UdpPacket(Client6, (ushort)(33000 + i), Server6, 33435, Ascii($"probe number {i:D4}")));
            var hop = rig.In(IcmpErrorPacket(FarRouter6, WanAddress6, Icmp6TimeExceeded, 0, sent));
            Assert.True(hop.Accepted, rig.DropSummary());
            if (!TransportChecksumIsValid(hop.Packet))
            {
                failures.Add($"probe {i}: 0x{TransportChecksum(hop.Packet):x4}, expected 0x{ExpectedTransportChecksum(hop.Packet):x4}");
            }
        }

        Assert.Empty(failures);
    }

    [Fact]
    public void Icmpv4_errors_carry_a_correct_checksum_after_translation()
    {
        var rig = SnatWithPorts(WanAddress);
        for (int i = 0; i < 32; i++)
        {
            var sent = rig.PassOut(UdpPacket(Client, (ushort)(33000 + i), Server, 33435, Ascii($"probe number {i:D4}")));
            var p = rig.PassIn(IcmpErrorPacket(FarRouter, WanAddress, IcmpTimeExceeded, 0, sent));
            AssertQuotedValid(Quoted(p));
        }
    }

    [Fact]
    public void Error_from_the_client_about_a_reply_leaves_with_the_public_address()
    {
        // The client's host refuses a reply: its error travels in the original direction and is source-translated after routing.
        var rig = SnatWithPorts(WanAddress);
        var sent = rig.PassOut(UdpPacket(Client, 5000, Server, 53, Ascii("q")));
        ushort port = SourcePort(sent);
        var reply = rig.PassIn(UdpPacket(Server, 53, WanAddress, port, Ascii("late answer")));
        Assert.Equal(Ip(Client), Destination(reply));

        var error = IcmpErrorPacket(Client, Server, IcmpDestinationUnreachable, IcmpCodePortUnreachable, reply);
        var hop = rig.Forward(error, Lan, Wan);

        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, hop.CtInfo);
        Assert.Equal(error, hop.AfterPreRouting); // nothing to do before routing
        var p = hop.Packet;
        AssertValid(p);
        Assert.Equal(Ip(WanAddress), Source(p));
        Assert.Equal(Ip(Server), Destination(p));
        var quoted = Quoted(p);
        AssertQuotedValid(quoted);
        Assert.Equal(Ip(Server), Source(quoted));
        Assert.Equal((ushort)53, SourcePort(quoted));
        Assert.Equal(Ip(WanAddress), Destination(quoted));
        Assert.Equal(port, DestinationPort(quoted));
    }

    [Fact]
    public void Error_from_a_dnat_server_leaves_as_if_from_the_public_address()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Dnat, InInterface = Wan, Protocol = 17, DestinationPortMin = 5353, DestinationPortMax = 5353, Range = Range(InternalServer, minPort: 53) }]);
        var arrived = rig.PassIn(UdpPacket(Remote, 7000, WanAddress, 5353, Ascii("q")));
        Assert.Equal(Ip(InternalServer), Destination(arrived));

        var error = IcmpErrorPacket(InternalServer, Remote, IcmpDestinationUnreachable, IcmpCodePortUnreachable, arrived);
        var p = rig.PassOut(error);

        Assert.Equal(Ip(WanAddress), Source(p));
        Assert.Equal(Ip(Remote), Destination(p));
        var quoted = Quoted(p);
        AssertQuotedValid(quoted);
        Assert.Equal(Ip(Remote), Source(quoted));
        Assert.Equal((ushort)7000, SourcePort(quoted));
        Assert.Equal(Ip(WanAddress), Destination(quoted));
        Assert.Equal((ushort)5353, DestinationPort(quoted));
    }

    [Fact]
    public void Error_from_a_far_router_about_a_dnat_servers_reply_reaches_the_server()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Dnat, InInterface = Wan, DestinationPortMin = 8080, DestinationPortMax = 8080, Range = Range(InternalServer, minPort: 80) }]);
        rig.PassIn(TcpPacket(Remote, 5555, WanAddress, 8080, Syn, seq: 1));
        var reply = rig.PassOut(TcpPacket(InternalServer, 80, Remote, 5555, Syn | Ack, seq: 700, ack: 2));
        Assert.Equal(Ip(WanAddress), Source(reply));

        // Somewhere on the Internet the reply ran out of TTL; the error comes back to the public address.
        var hop = rig.Forward(IcmpErrorPacket(FarRouter, WanAddress, IcmpTimeExceeded, 0, reply), Wan, Lan);

        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, hop.CtInfo); // the quoted reply makes the error travel in the original direction
        var p = hop.Packet;
        AssertValid(p);
        Assert.Equal(Ip(FarRouter), Source(p));
        Assert.Equal(Ip(InternalServer), Destination(hop.AfterPreRouting));
        var quoted = Quoted(p);
        AssertQuotedValid(quoted);
        Assert.Equal(Ip(InternalServer), Source(quoted));
        Assert.Equal((ushort)80, SourcePort(quoted));
        Assert.Equal(Ip(Remote), Destination(quoted));
        Assert.Equal((ushort)5555, DestinationPort(quoted));
    }

    [Fact]
    public void Error_on_a_hairpin_flow_is_translated_at_both_hooks()
    {
        // A LAN client reaches a LAN server through the public address: DNAT before routing, SNAT to the router's LAN
        // address after, so the server answers through the router. Its error must reach the client as if from the public side.
        var rig = new RouterRig(
        [
            new NatRule { Action = NatAction.Dnat, InInterface = Lan, DestinationNetwork = A(WanAddress), DestinationPrefixLength = 32, DestinationPortMin = 8080, DestinationPortMax = 8080, Range = Range(InternalServer, minPort: 80) },
            new NatRule { Action = NatAction.Masquerade, OutInterface = Lan, SourceNetwork = A("192.168.1.0"), SourcePrefixLength = 24 },
        ]);
        var sent = rig.Pass(UdpPacket(Client, 40000, WanAddress, 8080, Ascii("hairpin")), Lan, Lan);
        Assert.Equal(Ip(LanAddress), Source(sent));
        Assert.Equal(Ip(InternalServer), Destination(sent));
        Assert.Equal((ushort)80, DestinationPort(sent));
        ushort port = SourcePort(sent);

        var answer = rig.Pass(UdpPacket(InternalServer, 80, LanAddress, port, Ascii("answer")), Lan, Lan);
        Assert.Equal(Ip(WanAddress), Source(answer));
        Assert.Equal((ushort)8080, SourcePort(answer));
        Assert.Equal(Ip(Client), Destination(answer));
        Assert.Equal((ushort)40000, DestinationPort(answer));

        var hop = rig.Forward(IcmpErrorPacket(InternalServer, LanAddress, IcmpDestinationUnreachable, IcmpCodePortUnreachable, sent), Lan, Lan);

        Assert.True(hop.Accepted, rig.DropSummary());
        var p = hop.Packet;
        AssertValid(p);
        Assert.Equal(Ip(Client), Destination(hop.AfterPreRouting));
        Assert.Equal(Ip(WanAddress), Source(p));
        Assert.Equal(Ip(Client), Destination(p));
        var quoted = Quoted(p);
        AssertQuotedValid(quoted);
        Assert.Equal(Ip(Client), Source(quoted));
        Assert.Equal((ushort)40000, SourcePort(quoted));
        Assert.Equal(Ip(WanAddress), Destination(quoted));
        Assert.Equal((ushort)8080, DestinationPort(quoted));
        Assert.Equal("hairpin", PayloadText(quoted));
    }

    [Fact]
    public void Time_exceeded_quoting_a_translated_echo_restores_the_quoted_id()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, Range = Range(WanAddress, minPort: 30000, maxPort: 30009) }]);
        var ping = rig.PassOut(IcmpEchoPacket(Client, Server, id: 0x0bad, sequence: 5, payload: Ascii("0123456789")));
        Assert.NotEqual((ushort)0x0bad, IcmpId(ping));

        var p = rig.PassIn(IcmpErrorPacket(FarRouter, WanAddress, IcmpTimeExceeded, 0, ping));

        Assert.Equal(Ip(Client), Destination(p));
        var quoted = Quoted(p);
        AssertQuotedValid(quoted); // the quoted echo's own ICMP checksum is kept right
        Assert.Equal(Ip(Client), Source(quoted));
        Assert.Equal((ushort)0x0bad, IcmpId(quoted));
        Assert.Equal(IcmpEchoRequest, IcmpType(quoted));
    }

    [Fact]
    public void Error_quoting_an_unknown_flow_is_dropped_as_unrelated()
    {
        var rig = SnatWithPorts(WanAddress);
        rig.PassOut(UdpPacket(Client, 5000, Server, 53, Ascii("q")));
        var stranger = UdpPacket(WanAddress, 20999 + 1, Server, 53, Ascii("q")); // a port never handed out

        var hop = rig.In(IcmpErrorPacket(Server, WanAddress, IcmpDestinationUnreachable, IcmpCodePortUnreachable, stranger));

        Assert.Equal(Verdict.Drop, hop.Verdict);
        Assert.Equal(1, rig[EngineCounter.DroppedIcmpUnrelated]);
        Assert.Equal(1, rig[EngineCounter.PacketsDropped]);
        Assert.Equal(1, rig.Engine.Connections.Count); // an error never creates a connection

        var hop6 = rig.In(IcmpErrorPacket(FarRouter6, WanAddress6, Icmp6PacketTooBig, 0, UdpPacket(WanAddress6, 1, Server6, 2, Ascii("x")), rest: 1280));
        Assert.Equal(Verdict.Drop, hop6.Verdict);
        Assert.Equal(2, rig[EngineCounter.DroppedIcmpUnrelated]);
    }

    [Fact]
    public void Error_quoting_a_flow_of_the_other_family_is_dropped_as_unrelated()
    {
        var rig = new RouterRig();
        var inner = UdpPacket(Client6, 5000, Server6, 53, Ascii("q"));
        var hop = rig.In(IcmpErrorPacket(Server, Client, IcmpDestinationUnreachable, IcmpCodePortUnreachable, inner));
        Assert.Equal(Verdict.Drop, hop.Verdict);
        Assert.Equal(1, rig[EngineCounter.DroppedIcmpUnrelated]);
    }

    [Fact]
    public void Error_about_an_untranslated_flow_passes_unchanged()
    {
        var rig = new RouterRig();
        var sent = rig.PassOut(TcpPacket(Client, 40000, Server, 80, Syn));
        var error = IcmpErrorPacket(FarRouter, Client, IcmpTimeExceeded, 0, sent);

        var hop = rig.In(error);

        Assert.True(hop.Accepted);
        Assert.Equal(error, hop.Packet);
        Assert.Equal(CtInfo.RelatedReply, hop.CtInfo);
    }

    [Fact]
    public void Redirect_about_a_translated_flow_is_dropped()
    {
        // A redirect names a gateway for the quoted destination: meaningless once addresses are rewritten.
        var rig = SnatWithPorts(WanAddress);
        var sent = rig.PassOut(TcpPacket(Client, 40000, Server, 80, Syn));

        var hop = rig.In(IcmpErrorPacket(FarRouter, WanAddress, IcmpRedirect, 1, sent, rest: 0xC0000201));

        Assert.Equal(Verdict.Drop, hop.Verdict);
        Assert.Equal(1, rig[EngineCounter.DroppedIcmpUnrelated]);
    }

    private static Connection FindBySource(RouterRig rig, string source) =>
        rig.Engine.Connections.Entries().Single(c => c.Original.Source == A(source));

    private static ushort PortOf(RouterRig rig, string source) => FindBySource(rig, source).Reply.DestinationPort;
}
