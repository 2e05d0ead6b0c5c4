using Offload.Engine.Conntrack;
using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Nat;

/// <summary>
/// The NAT targets (SNAT, MASQUERADE, DNAT, REDIRECT) and how rules are matched: by hook, interface, protocol,
/// prefixes and destination port, the first match winning.
/// </summary>
public class NatRuleTests
{
    [Fact]
    public void Snat_maps_into_the_port_range_and_keeps_everything_else()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, OutInterface = Wan, Range = Range("203.0.113.10", minPort: 20000, maxPort: 20099) }]);
        var syn = TcpPacket(Client, 40000, Server, 80, Syn, seq: 123456, options: [2, 4, 5, 0xb4]);

        var hop = rig.Out(syn);

        Assert.True(hop.Accepted);
        var p = hop.Packet;
        AssertValid(p);
        Assert.Equal(Ip("203.0.113.10"), Source(p));
        Assert.InRange(SourcePort(p), (ushort)20000, (ushort)20099);
        Assert.Equal(Ip(Server), Destination(p));
        Assert.Equal((ushort)80, DestinationPort(p));
        Assert.Equal(123456u, Seq(p));
        Assert.Equal(syn.Length, p.Length);
        Assert.Equal(Ttl(syn), Ttl(p)); // the engine does not route: the TTL is the caller's business
        Assert.Equal(syn[32..36], p[32..36]); // data offset, flags, window
        Assert.Equal(syn[38..], p[38..]); // urgent pointer, options
        Assert.True(hop.Connection!.Value.HasStatus(ConnStatus.SrcNat | ConnStatus.SrcNatDone | ConnStatus.DstNatDone | ConnStatus.Confirmed));
        Assert.False(hop.Connection!.Value.HasStatus(ConnStatus.DstNat));
        Assert.Equal(1, rig[EngineCounter.PacketsIn]);
        Assert.Equal(1, rig[EngineCounter.PacketsOut]);
        Assert.Equal(1, rig[EngineCounter.ConnectionsCreated]);
    }

    [Fact]
    public void Snat_to_a_port_range_gives_every_connection_a_distinct_port_inside_it()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, Range = Range("203.0.113.10", minPort: 20000, maxPort: 20029) }]);
        var seen = new HashSet<ushort>();
        for (int host = 10; host < 40; host++)
        {
            var p = rig.PassOut(TcpPacket($"192.168.1.{host}", 40000, Server, 80));
            Assert.Equal(Ip("203.0.113.10"), Source(p));
            Assert.InRange(SourcePort(p), (ushort)20000, (ushort)20029);
            Assert.True(seen.Add(SourcePort(p)), $"port {SourcePort(p)} handed out twice");
        }

        Assert.Equal(30, rig.Engine.Connections.Count);
    }

    [Fact]
    public void Snat_to_an_ipv4_address_range_picks_addresses_inside_it()
    {
        // 100 ports per address: the address is picked by a hash of the endpoints (as in the kernel), not by which
        // address has room, so a tight range could legitimately run out on one address.
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, Range = Range("203.0.113.10", "203.0.113.13", 20000, 20099) }]);
        var seen = new HashSet<(string, ushort)>();
        var addresses = new HashSet<string>();
        for (int host = 10; host < 40; host++)
        {
            var p = rig.PassOut(TcpPacket($"192.168.1.{host}", 40000, Server, 80));
            Assert.InRange(ToUInt(Source(p)), ToUInt(Ip("203.0.113.10")), ToUInt(Ip("203.0.113.13")));
            Assert.InRange(SourcePort(p), (ushort)20000, (ushort)20099);
            Assert.True(seen.Add((Source(p).ToString(), SourcePort(p))), $"mapping {Source(p)}:{SourcePort(p)} handed out twice");
            addresses.Add(Source(p).ToString());
        }

        Assert.True(addresses.Count > 1, "30 clients all hashed to one address of four");
    }

    [Fact]
    public void Dnat_to_an_ipv4_address_range_picks_addresses_inside_it()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Dnat, InInterface = Wan, Range = Range("192.168.1.20", "192.168.1.23") }]);
        for (int host = 10; host < 30; host++)
        {
            var p = rig.PassIn(TcpPacket($"192.0.2.{host}", 40000, WanAddress, 80));
            Assert.InRange(ToUInt(Destination(p)), ToUInt(Ip("192.168.1.20")), ToUInt(Ip("192.168.1.23")));
            Assert.Equal((ushort)80, DestinationPort(p));
        }
    }

    [Fact]
    public void Snat_to_an_ipv6_address_range_picks_addresses_inside_it()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, Range = Range("2001:db8:ff::10", "2001:db8:ff::13") }]);
        var addresses = new HashSet<string>();
        var mappings = new HashSet<(string, ushort)>();
        for (int host = 0x10; host < 0x30; host++)
        {
            var p = rig.PassOut(TcpPacket($"fd00:1::{host:x}", 40000, Server6, 80));
            var bytes = Source(p).GetAddressBytes();
            Assert.Equal(Ip("2001:db8:ff::").GetAddressBytes()[..15], bytes[..15]);
            Assert.InRange(bytes[15], (byte)0x10, (byte)0x13);
            Assert.InRange(SourcePort(p), (ushort)1024, (ushort)65535);
            Assert.True(mappings.Add((Source(p).ToString(), SourcePort(p))), $"mapping {Source(p)}:{SourcePort(p)} handed out twice");
            addresses.Add(Source(p).ToString());
        }

        Assert.True(addresses.Count > 1, "32 clients all hashed to one address of four");
    }

    [Fact]
    public void Snat_to_a_range_keeps_a_client_on_one_address_towards_one_server()
    {
        // IPv6, so the check does not depend on the IPv4 range bug above.
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, Range = Range("2001:db8:ff::100", "2001:db8:ff::1ff") }]);
        var first = rig.PassOut(TcpPacket(Client6, 40000, Server6, 80));
        Assert.Equal(Ip("2001:db8:ff::").GetAddressBytes()[..14], Source(first).GetAddressBytes()[..14]);
        Assert.Equal(1, Source(first).GetAddressBytes()[14]);
        for (ushort port = 40001; port < 40010; port++)
        {
            var p = rig.PassOut(TcpPacket(Client6, port, Server6, 443));
            Assert.Equal(Source(first), Source(p));
            Assert.Equal(port, SourcePort(p)); // free, so kept
        }
    }

    [Fact]
    public void Masquerade_uses_the_out_interface_address_that_fits_the_next_hop()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }]);

        var offLink = rig.PassOut(TcpPacket(Client, 40000, Server, 80));
        Assert.Equal(Ip(WanAddress), Source(offLink));
        Assert.Equal((ushort)40000, SourcePort(offLink));

        // A destination on the WAN's second subnet is reached from that subnet's address, as the kernel's source selection does.
        var onLink = rig.PassOut(TcpPacket(Client, 40001, "198.51.100.9", 80));
        Assert.Equal(Ip(WanAddress2), Source(onLink));

        var v6 = rig.PassOut(TcpPacket(Client6, 40000, Server6, 80));
        Assert.Equal(Ip(WanAddress6), Source(v6));
        Assert.Equal((ushort)40000, SourcePort(v6));
    }

    [Fact]
    public void Masquerade_with_ports_maps_into_them()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan, Range = Ports(30000, 30010) }]);
        var p = rig.PassOut(UdpPacket(Client, 5353, Server, 53, Ascii("query")));
        Assert.Equal(Ip(WanAddress), Source(p));
        Assert.InRange(SourcePort(p), (ushort)30000, (ushort)30010);
        Assert.Equal("query", PayloadText(p));
    }

    [Fact]
    public void Masquerade_out_an_interface_without_an_address_of_the_family_drops()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Dmz }]);
        var hop = rig.Forward(TcpPacket(Client6, 40000, Server6, 80), Lan, Dmz);

        Assert.Equal(Verdict.Drop, hop.Verdict);
        Assert.Equal(1, rig[EngineCounter.DroppedNatExhausted]);
        Assert.Equal(1, rig[EngineCounter.PacketsDropped]);
        Assert.Equal(0, rig.Engine.Connections.Count);

        // IPv4 out the same interface has an address and goes.
        var v4 = rig.Pass(TcpPacket(Client, 40000, Server, 80), Lan, Dmz);
        Assert.Equal(Ip(DmzAddress), Source(v4));
    }

    [Fact]
    public void Dnat_with_a_port_rewrites_destination_before_routing_and_the_reply_source_after()
    {
        var rig = new RouterRig([new NatRule
        {
            Action = NatAction.Dnat, InInterface = Wan, Protocol = IpProtocol.Tcp, DestinationPortMin = 8080, DestinationPortMax = 8080,
            Range = Range(InternalServer, minPort: 80),
        }]);

        var hop = rig.In(TcpPacket(Remote, 5555, WanAddress, 8080, Syn, seq: 77));
        Assert.True(hop.Accepted);

        // Routing must already see the new destination.
        Assert.Equal(Ip(InternalServer), Destination(hop.AfterPreRouting));
        Assert.Equal((ushort)80, DestinationPort(hop.AfterPreRouting));
        AssertValid(hop.AfterPreRouting);
        Assert.Equal(hop.AfterPreRouting, hop.Packet);
        Assert.Equal(Ip(Remote), Source(hop.Packet));
        Assert.Equal((ushort)5555, SourcePort(hop.Packet));
        Assert.True(hop.Connection!.Value.HasStatus(ConnStatus.DstNat));

        var reply = rig.PassOut(TcpPacket(InternalServer, 80, Remote, 5555, Syn | Ack, seq: 900, ack: 78));
        Assert.Equal(Ip(WanAddress), Source(reply));
        Assert.Equal((ushort)8080, SourcePort(reply));
        Assert.Equal(Ip(Remote), Destination(reply));
        Assert.Equal((ushort)5555, DestinationPort(reply));
    }

    [Fact]
    public void Dnat_without_a_port_keeps_the_port()
    {
        var rig = new RouterRig([new NatRule
        {
            Action = NatAction.Dnat, InInterface = Wan, DestinationPortMin = 443, DestinationPortMax = 443, Range = Range(InternalServer),
        }]);

        var p = rig.PassIn(TcpPacket(Remote, 5555, WanAddress, 443));
        Assert.Equal(Ip(InternalServer), Destination(p));
        Assert.Equal((ushort)443, DestinationPort(p));

        var v4Udp = rig.PassIn(UdpPacket(Remote, 5555, WanAddress, 443, Ascii("quic")));
        Assert.Equal(Ip(InternalServer), Destination(v4Udp));
        Assert.Equal((ushort)443, DestinationPort(v4Udp));
    }

    [Fact]
    public void Redirect_sends_to_the_in_interface_address_and_given_port()
    {
        var rig = new RouterRig([new NatRule
        {
            Action = NatAction.Redirect, InInterface = Lan, Protocol = IpProtocol.Tcp, DestinationPortMin = 80, DestinationPortMax = 80,
            Range = Ports(3128, 3128),
        }]);

        var hop = rig.Pre(TcpPacket(Client, 40000, Server, 80), Lan);
        Assert.True(hop.Accepted);
        AssertValid(hop.Packet);
        Assert.Equal(Ip(LanAddress), Destination(hop.Packet));
        Assert.Equal((ushort)3128, DestinationPort(hop.Packet));
        Assert.Equal(Ip(Client), Source(hop.Packet));
        Assert.Equal((ushort)40000, SourcePort(hop.Packet));

        var v6 = rig.Pre(TcpPacket(Client6, 40000, Server6, 80), Lan);
        AssertValid(v6.Packet);
        Assert.Equal(Ip(LanAddress6), Destination(v6.Packet));
        Assert.Equal((ushort)3128, DestinationPort(v6.Packet));
    }

    [Fact]
    public void Redirect_without_ports_keeps_the_port()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Redirect, InInterface = Lan, Protocol = IpProtocol.Udp }]);
        var hop = rig.Pre(UdpPacket(Client, 40000, Server, 53, Ascii("q")), Lan);
        AssertValid(hop.Packet);
        Assert.Equal(Ip(LanAddress), Destination(hop.Packet));
        Assert.Equal((ushort)53, DestinationPort(hop.Packet));
    }

    [Fact]
    public void Snat_rule_for_one_out_interface_leaves_traffic_out_another_alone()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, OutInterface = Dmz, Range = Range("198.18.0.77") }]);

        var toWan = rig.Pass(TcpPacket(Client, 40000, Server, 80), Lan, Wan);
        Assert.Equal(Ip(Client), Source(toWan));

        var toDmz = rig.Pass(TcpPacket(Client, 40001, Server, 80), Lan, Dmz);
        Assert.Equal(Ip("198.18.0.77"), Source(toDmz));
    }

    [Fact]
    public void Dnat_rule_for_one_in_interface_leaves_traffic_from_another_alone()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Dnat, InInterface = Wan, Range = Range(InternalServer) }]);

        var fromLan = rig.Pass(TcpPacket(Client, 40000, Server, 80), Lan, Wan);
        Assert.Equal(Ip(Server), Destination(fromLan));

        var fromWan = rig.PassIn(TcpPacket(Remote, 40000, WanAddress, 80));
        Assert.Equal(Ip(InternalServer), Destination(fromWan));
    }

    [Fact]
    public void Rules_match_by_family_and_protocol()
    {
        var rig = new RouterRig(
        [
            new NatRule { Action = NatAction.Dnat, Family = 4, Protocol = IpProtocol.Udp, DestinationPortMin = 53, DestinationPortMax = 53, Range = Range(InternalServer) },
        ]);

        Assert.Equal(Ip(WanAddress), Destination(rig.PassIn(TcpPacket(Remote, 1000, WanAddress, 53))));
        Assert.Equal(Ip(InternalServer), Destination(rig.PassIn(UdpPacket(Remote, 1000, WanAddress, 53, Ascii("q")))));
        Assert.Equal(Ip(WanAddress6), Destination(rig.PassIn(UdpPacket("2001:db8:5::99", 1000, WanAddress6, 53, Ascii("q")))));
    }

    [Fact]
    public void Rules_match_by_source_and_destination_prefix()
    {
        var rig = new RouterRig(
        [
            new NatRule { Action = NatAction.Snat, SourceNetwork = A("192.168.1.0"), SourcePrefixLength = 25, Range = Range("203.0.113.10") },
            new NatRule { Action = NatAction.Snat, DestinationNetwork = A("192.0.2.0"), DestinationPrefixLength = 28, Range = Range("203.0.113.20") },
            new NatRule { Action = NatAction.Snat, Range = Range("203.0.113.30") },
        ]);

        Assert.Equal(Ip("203.0.113.10"), Source(rig.PassOut(TcpPacket("192.168.1.127", 40000, Server, 80))));
        Assert.Equal(Ip("203.0.113.20"), Source(rig.PassOut(TcpPacket("192.168.1.128", 40000, "192.0.2.15", 80))));
        Assert.Equal(Ip("203.0.113.30"), Source(rig.PassOut(TcpPacket("192.168.1.128", 40000, "192.0.2.16", 80))));
    }

    [Fact]
    public void Rules_match_by_destination_port_range_inclusive()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Dnat, DestinationPortMin = 1000, DestinationPortMax = 1999, Range = Range(InternalServer) }]);

        Assert.Equal(Ip(WanAddress), Destination(rig.PassIn(TcpPacket(Remote, 5000, WanAddress, 999))));
        Assert.Equal(Ip(InternalServer), Destination(rig.PassIn(TcpPacket(Remote, 5000, WanAddress, 1000))));
        Assert.Equal(Ip(InternalServer), Destination(rig.PassIn(TcpPacket(Remote, 5000, WanAddress, 1999))));
        Assert.Equal(Ip(WanAddress), Destination(rig.PassIn(TcpPacket(Remote, 5000, WanAddress, 2000))));

        // A port match never matches ICMP, which has none.
        Assert.Equal(Ip(WanAddress), Destination(rig.PassIn(IcmpEchoPacket(Remote, WanAddress, 1000))));
    }

    [Fact]
    public void First_matching_rule_wins()
    {
        var rig = new RouterRig(
        [
            new NatRule { Action = NatAction.Snat, Protocol = IpProtocol.Udp, Range = Range("203.0.113.5") },
            new NatRule { Action = NatAction.Snat, Range = Range("203.0.113.10") },
            new NatRule { Action = NatAction.Snat, Range = Range("203.0.113.20") },
        ]);

        Assert.Equal(Ip("203.0.113.10"), Source(rig.PassOut(TcpPacket(Client, 40000, Server, 80))));
        Assert.Equal(Ip("203.0.113.5"), Source(rig.PassOut(UdpPacket(Client, 40000, Server, 80))));
    }

    [Fact]
    public void Snat_rule_is_not_applied_before_routing()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, Range = Range("203.0.113.10", minPort: 20000) }]);
        var syn = TcpPacket(Client, 40000, Server, 80);

        var hop = rig.Out(syn);

        Assert.Equal(syn, hop.AfterPreRouting);
        Assert.Equal(Ip("203.0.113.10"), Source(hop.Packet));
        Assert.Equal((ushort)20000, SourcePort(hop.Packet));
        Assert.Equal(Ip(Server), Destination(hop.Packet));
        Assert.Equal((ushort)80, DestinationPort(hop.Packet));
        Assert.False(hop.Connection!.Value.HasStatus(ConnStatus.DstNat));
    }

    [Fact]
    public void Dnat_rule_is_not_applied_after_routing()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Dnat, Range = Range(InternalServer, minPort: 8000) }]);

        var hop = rig.In(TcpPacket(Remote, 40000, WanAddress, 80));

        Assert.Equal(Ip(InternalServer), Destination(hop.AfterPreRouting));
        Assert.Equal((ushort)8000, DestinationPort(hop.AfterPreRouting));
        Assert.Equal(hop.AfterPreRouting, hop.Packet);
        Assert.Equal(Ip(Remote), Source(hop.Packet));
        Assert.Equal((ushort)40000, SourcePort(hop.Packet));
        Assert.False(hop.Connection!.Value.HasStatus(ConnStatus.SrcNat));
    }

    [Fact]
    public void Rules_are_consulted_for_the_first_packet_only()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, OutInterface = Wan, Range = Range("203.0.113.10") }]);

        rig.PassOut(TcpPacket(Client, 40000, Server, 80, Syn, seq: 1000));
        rig.PassIn(TcpPacket(Server, 80, "203.0.113.10", 40000, Syn | Ack, seq: 5000, ack: 1001));

        // Even leaving by another interface, an established connection keeps its translation.
        var ack = rig.Pass(TcpPacket(Client, 40000, Server, 80, Ack, seq: 1001, ack: 5001), Lan, Dmz);
        Assert.Equal(Ip("203.0.113.10"), Source(ack));
    }

    private static uint ToUInt(System.Net.IPAddress address) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(address.GetAddressBytes());
}
