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
                Assert.Equal((ushort)port, SourcePort(rig.PassOut(TcpPacket(Client, (ushort)port, Server, 80, Syn, seq: 1))));
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

        // A connection the server refuses (only a RST answered it) is killed: its port is free at once, although its
        // entry waits for the collector and the clock has not moved since the search found the range full.
        var refused = rig.Engine.Connections.Entries().First(c => c.Original.Destination == A(Server) && c.Original.Source == A(Client));
        ushort refusedPort = refused.Reply.DestinationPort;
        Assert.True(rig.In(TcpPacket(Server, 80, WanAddress, refusedPort, Rst | Ack, seq: 0, ack: 2)).Accepted, rig.DropSummary());
        Assert.Equal(refusedPort, SourcePort(rig.PassOut(TcpPacket(Client2, 40002, Server, 80, Syn))));
        Assert.False(rig.Out(TcpPacket(Client2, 40003, Server, 80, Syn)).Accepted);

        // A connection destroyed frees its port too.
        var victim = rig.Engine.Connections.Entries().First(c => c.Original.Destination == A(Server) && c.Original.Source == A(Client));
        ushort port = victim.Reply.DestinationPort;
        rig.Engine.Destroy(victim);
        Assert.Equal(port, SourcePort(rig.PassOut(TcpPacket(Client2, 40004, Server, 80, Syn))));
        Assert.False(rig.Out(TcpPacket(Client2, 40005, Server, 80, Syn)).Accepted);
        Assert.Equal(4, rig[EngineCounter.DroppedNatExhausted]);

        // Time passes: every mapping has expired, and nothing has collected them. The next new connection takes the port
        // of one of them (the kernel's tuple check collects an expired entry it comes across).
        rig.Clock.NowNanoseconds += 121_000_000_000L;
        var late = rig.Out(TcpPacket(Client2, 40006, Server, 80, Syn));
        Assert.True(late.Accepted, rig.DropSummary());
        Assert.InRange(SourcePort(late.Packet), Min, Max);
        Assert.True(rig[EngineCounter.ConnectionsExpired] >= 1);
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

    [Fact]
    public void Connections_a_reset_refused_let_go_of_their_ports_before_the_collector_comes()
    {
        // The live shape of issue 14: hping3's SYNs to a closed port, each answered by the server's RST. A connection only
        // a RST answered is killed at once (the kernel's nf_ct_kill_acct); its entry waits for the collector, but the
        // kernel's tuple check (nf_conntrack_tuple_taken) passes over an expired entry and collects it. Here the table
        // is larger than the range and nothing collects: every SYN must still get a port.
        var rig = Masquerading(maxConnections: 16384);
        for (int i = 0; i < 3 * (Max - Min + 1); i++)
        {
            var syn = rig.Out(TcpPacket(Client, (ushort)(1024 + i), Server, 80, Syn, seq: 1));
            Assert.True(syn.Accepted, $"SYN {i}: {rig.DropSummary()}");
            var rst = rig.In(TcpPacket(Server, 80, WanAddress, SourcePort(syn.Packet), Rst | Ack, seq: 0, ack: 2));
            Assert.True(rst.Accepted, $"RST {i}: {rig.DropSummary()}");
            rig.Clock.NowNanoseconds += 30_000;
        }

        Assert.Equal(0, rig[EngineCounter.DroppedNatExhausted]);
        Assert.Equal(3 * (Max - Min + 1), rig[EngineCounter.ConnectionsCreated]);
        Assert.True(rig[EngineCounter.ConnectionsExpired] >= (2 * (Max - Min + 1)) - 1, rig.DropSummary());
    }

    /// <summary>The router's ports of the tracked connections to <see cref="Server"/>.</summary>
    private static List<ushort> PortsTowardsServer(RouterRig rig) =>
        [.. rig.Engine.Connections.Entries().Where(c => c.Original.Destination == A(Server)).Select(c => c.Reply.DestinationPort)];
}
