using Offload.Engine.Conntrack;
using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Offload.Engine.Routing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Nat;

/// <summary>
/// Source NAT for a new connection queued before routing (a live queue at PREROUTING reports no out interface). The
/// kernel chooses the SNAT rule after routing, by the out interface; we choose it by the interface whose connected
/// subnet holds the destination after DNAT (its link-scope route), which is what hairpin NAT needs: a LAN client
/// reaches a LAN server through the router's public address (DNAT), and MASQUERADE out the LAN makes the server answer
/// the router. A destination that is the router's own, or off every connected subnet, matches no rule that names an
/// out interface; a packet that has an out interface keeps it.
/// </summary>
public class HairpinBeforeRoutingTests
{
    private static readonly NatRule[] HairpinRules =
    [
        new NatRule
        {
            Action = NatAction.Dnat, DestinationNetwork = A(WanAddress), DestinationPrefixLength = 32, Protocol = IpProtocol.Tcp,
            DestinationPortMin = 8080, DestinationPortMax = 8080, Range = Range(InternalServer, minPort: 80),
        },
        new NatRule { Action = NatAction.Masquerade, OutInterface = Lan, SourceNetwork = A("192.168.1.0"), SourcePrefixLength = 24 },
        new NatRule { Action = NatAction.Masquerade, OutInterface = Wan, Family = 4 },
    ];

    [Fact]
    public void A_hairpin_connection_queued_before_routing_is_masqueraded_out_the_lan_and_its_replies_come_back_through_both_translations()
    {
        var rig = new RouterRig(HairpinRules);

        var syn = rig.Live(TcpPacket(Client, 40000, WanAddress, 8080, Syn, seq: 100), Lan);

        Assert.True(syn.Accepted, rig.DropSummary());
        AssertValid(syn.Packet);
        Assert.Equal(Ip(LanAddress), Source(syn.Packet));
        Assert.Equal(Ip(InternalServer), Destination(syn.Packet));
        Assert.Equal((ushort)80, DestinationPort(syn.Packet));
        Assert.True(syn.SourceNatted);
        Assert.True(syn.DestinationNatted);
        Assert.Equal(Lan, syn.Connection!.Value.MasqueradeInterface);
        ushort port = SourcePort(syn.Packet);

        // The server answers the router, queued before routing too: back to the client, as if from the public address.
        var synAck = rig.Live(TcpPacket(InternalServer, 80, LanAddress, port, Syn | Ack, seq: 900, ack: 101), Lan);

        Assert.True(synAck.Accepted, rig.DropSummary());
        AssertValid(synAck.Packet);
        Assert.Equal(syn.Connection, synAck.Connection);
        Assert.Equal(CtInfo.EstablishedReply, synAck.CtInfo);
        Assert.Equal(Ip(WanAddress), Source(synAck.Packet));
        Assert.Equal((ushort)8080, SourcePort(synAck.Packet));
        Assert.Equal(Ip(Client), Destination(synAck.Packet));
        Assert.Equal((ushort)40000, DestinationPort(synAck.Packet));

        var ack = rig.Live(TcpPacket(Client, 40000, WanAddress, 8080, Ack, seq: 101, ack: 901, payload: Ascii("GET / HTTP/1.0\r\n\r\n")), Lan);

        Assert.True(ack.Accepted, rig.DropSummary());
        AssertValid(ack.Packet);
        Assert.Equal(CtInfo.Established, ack.CtInfo);
        Assert.Equal(Ip(LanAddress), Source(ack.Packet));
        Assert.Equal(port, SourcePort(ack.Packet));
        Assert.Equal(Ip(InternalServer), Destination(ack.Packet));
        Assert.Equal(1, rig.Engine.Connections.Count);
    }

    [Fact]
    public void A_port_forward_from_outside_queued_before_routing_keeps_its_source_when_the_lan_rule_names_only_lan_sources()
    {
        var rig = new RouterRig(HairpinRules);

        var syn = rig.Live(TcpPacket(Remote, 5555, WanAddress, 8080, Syn, seq: 1), Wan);

        Assert.True(syn.Accepted, rig.DropSummary());
        Assert.Equal(Ip(Remote), Source(syn.Packet));
        Assert.Equal(Ip(InternalServer), Destination(syn.Packet));
        Assert.False(syn.SourceNatted);
        Assert.True(syn.DestinationNatted);

        var synAck = rig.Live(TcpPacket(InternalServer, 80, Remote, 5555, Syn | Ack, seq: 7, ack: 2), Lan);
        Assert.True(synAck.Accepted, rig.DropSummary());
        AssertValid(synAck.Packet);
        Assert.Equal(Ip(WanAddress), Source(synAck.Packet));
        Assert.Equal((ushort)8080, SourcePort(synAck.Packet));
    }

    [Fact]
    public void A_masquerade_rule_for_the_lan_without_a_source_takes_outside_clients_of_a_port_forward_too_as_the_kernel_would()
    {
        var rig = new RouterRig(
        [
            HairpinRules[0],
            new NatRule { Action = NatAction.Masquerade, OutInterface = Lan },
        ]);

        var syn = rig.Live(TcpPacket(Remote, 5555, WanAddress, 8080, Syn, seq: 1), Wan);

        Assert.True(syn.Accepted, rig.DropSummary());
        Assert.Equal(Ip(LanAddress), Source(syn.Packet));
        Assert.Equal(Ip(InternalServer), Destination(syn.Packet));
    }

    [Fact]
    public void A_packet_with_an_out_interface_is_matched_by_it_not_by_the_subnet_of_its_destination()
    {
        var rig = new RouterRig(HairpinRules);

        // Policy routing sent a LAN-addressed packet out the DMZ: the LAN rule does not apply, as in the kernel.
        var hop = rig.Forward(TcpPacket(Client, 40000, WanAddress, 8080, Syn, seq: 100), Lan, Dmz);

        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(Ip(Client), Source(hop.Packet));
        Assert.Equal(Ip(InternalServer), Destination(hop.Packet));

        // And the usual case is unchanged: out the WAN, masqueraded to the WAN address.
        var outward = rig.Forward(TcpPacket(Client, 40001, Server, 443, Syn, seq: 5), Lan, Wan);
        Assert.Equal(Ip(WanAddress), Source(outward.Packet));
    }

    [Fact]
    public void Before_routing_a_destination_off_every_connected_subnet_matches_no_rule_that_names_an_out_interface()
    {
        var rig = new RouterRig(HairpinRules);

        var hop = rig.Live(TcpPacket(Client, 40000, Server, 443, Syn, seq: 1), Lan);

        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(Ip(Client), Source(hop.Packet));
        Assert.False(hop.SourceNatted);
    }

    [Fact]
    public void Before_routing_a_destination_that_is_the_routers_own_address_is_never_masqueraded()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Lan }]);

        var hop = rig.Live(UdpPacket(Client, 5353, LanAddress, 53, Ascii("q")), Lan);

        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(Ip(Client), Source(hop.Packet));
        Assert.False(hop.SourceNatted);
    }

    [Fact]
    public void Interfaces_that_do_not_route_leave_rules_naming_an_out_interface_unmatched_before_routing()
    {
        var interfaces = new NoRoutes(new RouterRig().Interfaces);
        var engine = new ConntrackEngine(
            new EngineOptions { HashKey = 1, RandomSeed = 1, NatRules = HairpinRules, Interfaces = interfaces },
            new ManualClock());
        var buffer = WithRoom(TcpPacket(Client, 40000, WanAddress, 8080, Syn, seq: 100), 64);
        var ctx = new PacketContext(buffer, buffer.Length - 64, Lan);

        Assert.Equal(Verdict.Accept, engine.Process(ref ctx));
        Assert.Equal(Ip(Client), Source(ctx.Packet));
        Assert.Equal(Ip(InternalServer), Destination(ctx.Packet));
    }

    [Fact]
    public void The_connected_route_is_the_longest_prefix_holding_the_destination_and_none_for_the_routers_own_addresses()
    {
        var interfaces = new StaticNetworkInterfaces();
        int wide = interfaces.Add("wide0", (A("10.0.0.1"), 4, 8), (A("2001:db8::1"), 6, 32));
        int narrow = interfaces.Add("narrow0", (A("10.1.0.1"), 4, 16), (A("2001:db8:1::1"), 6, 48));
        int p2p = interfaces.Add("p2p0", (A("10.9.9.9"), 4, 32));

        Assert.Equal(narrow, interfaces.RouteOut(4, A("10.1.2.3")));
        Assert.Equal(wide, interfaces.RouteOut(4, A("10.2.0.1")));
        Assert.Equal(narrow, interfaces.RouteOut(6, A("2001:db8:1::99")));
        Assert.Equal(wide, interfaces.RouteOut(6, A("2001:db8:2::99")));
        Assert.Equal(0, interfaces.RouteOut(4, A("10.1.0.1")));
        Assert.Equal(0, interfaces.RouteOut(4, A("10.9.9.9")));
        Assert.Equal(0, interfaces.RouteOut(4, A("192.0.2.1")));
        Assert.Equal(0, interfaces.RouteOut(6, A("fd00::1")));
        Assert.NotEqual(0, p2p);
    }

    /// <summary>An interface table written before RouteOut existed: it keeps the default.</summary>
    private sealed class NoRoutes(StaticNetworkInterfaces inner) : INetworkInterfaces
    {
        public int IndexOf(string name) => inner.IndexOf(name);

        public bool TryGetPrimaryAddress(int interfaceIndex, byte family, InetAddress nextHop, out InetAddress address) =>
            inner.TryGetPrimaryAddress(interfaceIndex, family, nextHop, out address);
    }

    [Fact]
    public void A_source_nat_rule_matches_the_destination_after_dnat_as_the_kernels_postrouting_does()
    {
        // The kernel's usual hairpin rule names the LAN server (-d SERVER -p tcp --dport 80), which the packet carries
        // only after DNAT: its public address and port must not be what the rule is matched against.
        NatRule[] rules =
        [
            HairpinRules[0],
            new NatRule
            {
                Action = NatAction.Masquerade, OutInterface = Lan, Protocol = IpProtocol.Tcp,
                DestinationNetwork = A(InternalServer), DestinationPrefixLength = 32, DestinationPortMin = 80, DestinationPortMax = 80,
            },
        ];
        var rig = new RouterRig(rules);

        var syn = rig.Live(TcpPacket(Client, 40000, WanAddress, 8080, Syn, seq: 100), Lan);

        Assert.True(syn.Accepted, rig.DropSummary());
        Assert.True(syn.SourceNatted);
        Assert.Equal(Ip(LanAddress), Source(syn.Packet));
        Assert.Equal(Ip(InternalServer), Destination(syn.Packet));
    }
}
