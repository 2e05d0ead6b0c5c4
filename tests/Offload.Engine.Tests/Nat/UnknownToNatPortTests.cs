using Offload.Engine.Nat;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Nat;

/// <summary>
/// A packet to one of the router's addresses at a port of the daemon's NAT range that no connection or expectation
/// explains (the reply of a translation whose state was lost, say across a crash) is dropped and counted. The kernel
/// would deliver it to the router's own stack, which answers with a reset and kills the peer's connection; here it
/// fails quietly and the peer retransmits. Flows to other hosts at such ports, and known replies, are untouched.
/// </summary>
public class UnknownToNatPortTests
{
    private static RouterRig Router() => new(
        [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan, Range = Ports(61000, 61010) }],
        natPorts: (61000, 61010));

    [Fact]
    public void A_segment_to_a_nat_port_of_the_router_that_matches_nothing_is_dropped_and_counted()
    {
        var rig = Router();

        var hop = rig.In(TcpPacket(Server, 80, WanAddress, 61005, Ack | Psh, seq: 1, ack: 1, payload: Ascii("data")));
        var udp = rig.In(UdpPacket(Server, 53, WanAddress, 61010, Ascii("answer")));

        Assert.False(hop.Accepted);
        Assert.False(udp.Accepted);
        Assert.Equal(2, rig[EngineCounter.DroppedUnknownToNatPort]);
        Assert.Equal(0, rig.Engine.Connections.Count);
    }

    [Fact]
    public void The_reply_of_a_known_translation_and_flows_to_other_hosts_or_ports_pass()
    {
        var rig = Router();
        var syn = rig.PassOut(TcpPacket(Client, 40000, Server, 80, Syn, seq: 100));
        Assert.InRange(SourcePort(syn), (ushort)61000, (ushort)61010);

        Assert.True(rig.In(TcpPacket(Server, 80, WanAddress, SourcePort(syn), Syn | Ack, seq: 500, ack: 101)).Accepted);
        Assert.True(rig.In(TcpPacket(Server, 80, Client, 61005, Syn, seq: 1)).Accepted); // to a host behind the router
        Assert.True(rig.In(TcpPacket(Server, 80, WanAddress, 22, Syn, seq: 1)).Accepted); // below the range: the router's own service
        Assert.Equal(0, rig[EngineCounter.DroppedUnknownToNatPort]);
    }
}
