using Offload.Engine.Nat;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Nat;

/// <summary>
/// The search for a free port of a NAT range at high occupancy (issue 14). The kernel's nf_nat_l4proto_unique_tuple
/// probes runs of 128, 64, 32, 16 and 8 ports from random starts and gives up after them (the connection then fails
/// at confirmation); in a range 90% used, runs of taken ports are longer than that, so a flood into a table of 4,096
/// entries with the daemon's 4,536 ports was refused ports that were free. Ours goes on over the whole range, so a new
/// connection is refused (<c>DroppedNatExhausted</c>) only when every port of the range is taken.
/// </summary>
public class NatPortSearchTests
{
    private const ushort Min = 61000;
    private const ushort Max = 65535;

    /// <summary>A masquerading router with a live daemon's source NAT range (steering's default <c>nat-ports</c>).</summary>
    private static RouterRig Masquerading(int maxConnections, ulong seed = 0x5eed) =>
        new([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan, Range = Ports(Min, Max) }], seed: seed, maxConnections: maxConnections, natPorts: (Min, Max));

    /// <summary>Takes every port of the range but <paramref name="free"/>: a client's source port inside the range is kept when free.</summary>
    private static void TakeAllBut(RouterRig rig, int free)
    {
        for (int port = Min; port <= Max; port++)
        {
            if (port != free)
            {
                Assert.Equal((ushort)port, SourcePort(rig.PassOut(TcpPacket(Client, (ushort)port, Server, 80, Syn))));
            }
        }
    }

    [Theory]
    [InlineData(Min)]
    [InlineData(63333)]
    [InlineData(Max)]
    public void A_new_connection_gets_the_last_free_port_of_a_range_nearly_used_up(int free)
    {
        var rig = Masquerading(maxConnections: 8192);
        TakeAllBut(rig, free);

        var hop = rig.Out(TcpPacket(Client2, 40000, Server, 80, Syn));

        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal((ushort)free, SourcePort(hop.Packet));
        Assert.Equal(0, rig[EngineCounter.DroppedNatExhausted]);
        Assert.Equal(Max - Min + 1, rig.Engine.Connections.Count);
    }

    [Fact]
    public void A_range_used_up_drops_and_counts_until_a_connection_lets_go_of_a_port()
    {
        var rig = Masquerading(maxConnections: 8192);
        TakeAllBut(rig, -1);

        Assert.False(rig.Out(TcpPacket(Client2, 40000, Server, 80, Syn)).Accepted);
        Assert.False(rig.Out(TcpPacket(Client2, 40001, Server, 80, Syn)).Accepted);
        Assert.Equal(2, rig[EngineCounter.DroppedNatExhausted]);

        // Another destination has the whole range free.
        Assert.True(rig.Out(TcpPacket(Client2, 40000, Server2, 80, Syn)).Accepted);

        // Expiry frees one mapping (the collector takes one entry): the next new connection gets its port.
        var before = PortsTowardsServer(rig);
        rig.Clock.NowNanoseconds += 121_000_000_000L;
        rig.Engine.CollectGarbage(1);
        Assert.Equal(1, rig[EngineCounter.ConnectionsExpired]);
        var released = Assert.Single(before.Except(PortsTowardsServer(rig)));
        Assert.Equal(released, SourcePort(rig.PassOut(TcpPacket(Client2, 40002, Server, 80, Syn))));
        Assert.False(rig.Out(TcpPacket(Client2, 40003, Server, 80, Syn)).Accepted);

        // So does a connection destroyed.
        var victim = rig.Engine.Connections.Entries().First(c => c.Original.Destination == A(Server) && c.Original.Source == A(Client));
        ushort port = victim.Reply.DestinationPort;
        rig.Engine.Destroy(victim);
        Assert.Equal(port, SourcePort(rig.PassOut(TcpPacket(Client2, 40004, Server, 80, Syn))));
        Assert.Equal(3, rig[EngineCounter.DroppedNatExhausted]);
    }

    [Fact]
    public void A_syn_flood_into_a_table_smaller_than_the_port_range_is_never_refused_a_port()
    {
        // The live shape of issue 14: hping3 -S --flood from one client to one server port, source ports counting up,
        // through a table of 4,096 entries (early drop makes room) masqueraded into the 4,536 ports of nat-ports.
        var rig = Masquerading(maxConnections: 4096);
        for (int i = 0; i < 60_000; i++)
        {
            var hop = rig.Out(TcpPacket(Client, (ushort)(3000 + i), Server, 80, Syn, seq: 1));
            Assert.True(hop.Accepted, $"SYN {i}: {rig.DropSummary()}");
            rig.Clock.NowNanoseconds += 10_000;
        }

        Assert.Equal(0, rig[EngineCounter.DroppedNatExhausted]);
        Assert.Equal(60_000 - 4096, rig[EngineCounter.ConnectionsEarlyDropped]);
        var ports = PortsTowardsServer(rig);
        Assert.Equal(4096, ports.Distinct().Count());
        Assert.All(ports, p => Assert.InRange(p, Min, Max));
    }

    /// <summary>The router's ports of the tracked connections to <see cref="Server"/>.</summary>
    private static List<ushort> PortsTowardsServer(RouterRig rig) =>
        [.. rig.Engine.Connections.Entries().Where(c => c.Original.Destination == A(Server)).Select(c => c.Reply.DestinationPort)];
}
