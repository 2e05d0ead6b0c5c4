using System.Buffers.Binary;
using System.Globalization;
using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Sharding;
using Offload.Engine.Snapshot;
using Offload.Engine.Tests.Expectations;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Sharding;

/// <summary>
/// The snapshots of one run's shards restored by a run with another number of shards (a bigger machine, another
/// <c>shards:</c>): every connection comes back once, in the shard the kernel will queue its replies to (the owner of
/// its NAT port's slice now), an expected connection and the expectations of a connection with their master, and the
/// flows go on there: replies translated where they arrive, announced connections admitted.
/// </summary>
public class ReshardTests
{
    private const long Second = 1_000_000_000L;
    private const long WrittenAt = 1_800_000_000 * Second;

    private static readonly NatRule Masquerade = new() { Action = NatAction.Masquerade, OutInterface = Wan, Range = Ports(ShardRig.NatPortMin, ShardRig.NatPortMax) };
    private static readonly NatRule Forward = new() { Action = NatAction.Dnat, InInterface = Wan, Protocol = 6, DestinationPortMin = 8080, DestinationPortMax = 8080, Range = Range(InternalServer, minPort: 80) };
    private readonly AnnouncingHelper _helper = new(new ExpectationPolicy(8, TimeSpan.FromSeconds(600)));

    private ShardRig NewRig(int shards) => new(shards, [Forward, Masquerade], [new HelperBinding(_helper, 17, 5000)]);

    /// <summary>What the first run holds, to be found again after each restart.</summary>
    private sealed record Flows(List<(string Client, ushort NatPort)> Masqueraded, List<ushort> Announced, List<(ushort From, ushort To)> Joined, List<string> Forwarded, int Connections, int Expectations);

    /// <summary>
    /// Forty masqueraded TCP flows (SYN sent, SYN/ACK awaited), eight helper masters each announcing a connection at a
    /// port of its shard's slice (four of them joined by it, four still expected), and four port forwards.
    /// </summary>
    private static Flows Traffic(ShardRig rig)
    {
        var masqueraded = new List<(string, ushort)>();
        for (int host = 30; host < 70; host++)
        {
            string client = $"192.168.1.{host}";
            var syn = rig.Out(TcpPacket(client, 40000, Server, 80, Syn, seq: 100));
            Assert.Equal(Verdict.Accept, syn.Verdict);
            masqueraded.Add((client, SourcePort(syn.Packet)));
        }

        var announced = new List<ushort>();
        var joined = new List<(ushort, ushort)>();
        for (int host = 100; host < 108; host++)
        {
            var control = rig.Out(UdpPacket($"192.168.1.{host}", 3000, Server, 5000, Ascii("EXPECT 6001")));
            Assert.Equal(Verdict.Accept, control.Verdict);
            ushort port = ushort.Parse(PayloadText(control.Packet).Split(' ')[1], CultureInfo.InvariantCulture);
            if (host % 2 == 0)
            {
                // From a port of its own (an FTP server's 20 would clash with an earlier transfer's to the same port).
                ushort from = (ushort)(2000 + host);
                var child = rig.In(TcpPacket(Server, from, WanAddress, port, Syn, seq: 700));
                Assert.Equal(Verdict.Accept, child.Verdict);
                Assert.True(child.Connection!.Value.HasStatus(ConnStatus.Expected));
                Assert.Equal(control.Shard, child.Shard);
                joined.Add((from, port));
            }
            else
            {
                announced.Add(port);
            }
        }

        var forwarded = new List<string>();
        for (int host = 2; host < 6; host++)
        {
            string remote = $"198.51.100.{host}";
            Assert.Equal(Verdict.Accept, rig.In(TcpPacket(remote, 5555, WanAddress, 8080, Syn, seq: 300)).Verdict);
            forwarded.Add(remote);
        }

        var flows = new Flows(masqueraded, announced, joined, forwarded, rig.Engines.Sum(e => e.Connections.Count), rig.Engines.Sum(e => e.Expectations.Count));
        Assert.Equal(40 + 8 + 4 + 4, flows.Connections);
        Assert.Equal(4, flows.Expectations);
        Assert.True(rig.Engines.All(e => e.Connections.Count > 0), "traffic in every shard");
        return flows;
    }

    private static List<byte[]> SaveAll(ShardRig rig, long writtenAt = WrittenAt) =>
        [.. rig.Engines.Select(engine =>
        {
            using var image = EngineSnapshot.Capture(engine, writtenAt, final: true);
            using var stream = new MemoryStream();
            image.WriteTo(stream);
            return stream.ToArray();
        })];

    private (ShardRig Rig, SnapshotResharder Resharder) Restore(int shards, IReadOnlyList<byte[]> snapshots, long now = WrittenAt + Second)
    {
        var rig = NewRig(shards);
        var resharder = new SnapshotResharder(shards, ShardRig.NatPortMin, ShardRig.NatPortMax);
        for (int i = 0; i < snapshots.Count; i++)
        {
            resharder.Add(i, new MemoryStream(snapshots[i]));
        }

        var images = resharder.Deal();
        Assert.Equal(shards, images.Length);
        for (int i = 0; i < shards; i++)
        {
            using var image = images[i];
            using var stream = new MemoryStream();
            image.WriteTo(stream);
            stream.Position = 0;
            EngineSnapshot.Load(rig.Engines[i], stream, now);
            rig.Engines[i].PublishAll();
        }

        return (rig, resharder);
    }

    /// <summary>Every connection once, each where its packets go; children and expectations with their masters.</summary>
    private static void AssertPlaced(ShardRig rig, Flows flows)
    {
        int shards = rig.Engines.Length;
        var all = rig.Engines.SelectMany((engine, i) => engine.Connections.Entries().Select(c => (Connection: c, Shard: i))).ToList();
        Assert.Equal(flows.Connections, all.Count);
        Assert.Equal(flows.Connections, all.Select(x => x.Connection.Original).Distinct().Count());
        foreach (var (conn, shard) in all)
        {
            var engine = rig.Engines[shard];
            if (conn.HasStatus(ConnStatus.Expected))
            {
                Assert.NotNull(conn.Master);
                Assert.Contains(conn.Master.Value, engine.Connections.Entries());
            }
            else if (conn.HasStatus(ConnStatus.SrcNat) && !conn.HasStatus(ConnStatus.DstNat))
            {
                Assert.Equal(PortSlice.OwnerOf(conn.Reply.DestinationPort, ShardRig.NatPortMin, ShardRig.NatPortMax, shards), shard);
            }
        }

        Assert.Equal(flows.Expectations, rig.Engines.Sum(e => e.Expectations.Count));
        for (int i = 0; i < shards; i++)
        {
            foreach (var e in rig.Engines[i].Expectations.Entries())
            {
                Assert.Contains(e.Master, rig.Engines[i].Connections.Entries());
            }
        }
    }

    /// <summary>The flows go on: replies of masquerade in their slice's shard without a handover, the rest found.</summary>
    private static void AssertFlowsGoOn(ShardRig rig, Flows flows)
    {
        int shards = rig.Engines.Length;
        foreach (var (client, port) in flows.Masqueraded)
        {
            var synAck = rig.In(TcpPacket(Server, 80, WanAddress, port, Syn | Ack, seq: 900, ack: 101));
            Assert.Equal(Verdict.Accept, synAck.Verdict);
            Assert.Equal(PortSlice.OwnerOf(port, ShardRig.NatPortMin, ShardRig.NatPortMax, shards), synAck.Shard);
            Assert.Equal(Ip(client), Destination(synAck.Packet));
            Assert.Equal((ushort)40000, DestinationPort(synAck.Packet));
        }

        Assert.Equal(0, rig.Handovers);

        foreach (var (from, port) in flows.Joined)
        {
            var ack = rig.In(TcpPacket(Server, from, WanAddress, port, Syn, seq: 700));
            Assert.Equal(Verdict.Accept, ack.Verdict);
            Assert.True(ack.Connection!.Value.HasStatus(ConnStatus.Expected));
            Assert.Equal((ushort)6001, DestinationPort(ack.Packet));
        }

        foreach (string remote in flows.Forwarded)
        {
            var reply = rig.Out(TcpPacket(InternalServer, 80, remote, 5555, Syn | Ack, seq: 400, ack: 301));
            Assert.Equal(Verdict.Accept, reply.Verdict);
            Assert.Equal(Ip(WanAddress), Source(reply.Packet));
            Assert.Equal((ushort)8080, SourcePort(reply.Packet));
        }
    }

    [Fact]
    public void Four_shards_restored_into_two_then_one_then_three_keep_every_connection_where_its_packets_arrive()
    {
        var first = NewRig(4);
        var flows = Traffic(first);
        var snapshots = SaveAll(first);

        foreach (int shards in new[] { 2, 1, 3 })
        {
            var (rig, resharder) = Restore(shards, snapshots);
            Assert.Equal(0, resharder.Duplicates);
            Assert.Equal(0, resharder.OutsideSlices);
            Assert.True(resharder.Final);
            AssertPlaced(rig, flows);

            // The chain goes on from what this run would save (nothing changed by packets yet).
            snapshots = SaveAll(rig);
        }

        var (last, _) = Restore(3, snapshots);
        AssertPlaced(last, flows);
        AssertFlowsGoOn(last, flows);
    }

    [Fact]
    public void Restored_into_fewer_shards_the_flows_go_on_and_an_announced_connection_is_still_admitted()
    {
        var first = NewRig(4);
        var flows = Traffic(first);
        var (rig, resharder) = Restore(2, SaveAll(first));

        Assert.True(resharder.Moved > 0, "two shards' connections moved");
        AssertPlaced(rig, flows);
        AssertFlowsGoOn(rig, flows);

        // The expectations that were pending admit their connection, in its master's shard, translated to the client.
        foreach (ushort port in flows.Announced)
        {
            var syn = rig.In(TcpPacket(Server, (ushort)(3000 + port % 1000), WanAddress, port, Syn, seq: 700));
            Assert.Equal(Verdict.Accept, syn.Verdict);
            Assert.True(syn.Connection!.Value.HasStatus(ConnStatus.Expected));
            Assert.Contains(syn.Connection.Value.Master!.Value, rig.Engines[syn.Shard].Connections.Entries());
            Assert.Equal((ushort)6001, DestinationPort(syn.Packet));
        }

        Assert.Equal(0, rig.Engines.Sum(e => e.Expectations.Count));
    }

    [Fact]
    public void The_same_number_of_shards_moves_nothing()
    {
        var first = NewRig(3);
        var flows = Traffic(first);
        var (rig, resharder) = Restore(3, SaveAll(first));

        Assert.Equal(0, resharder.Moved);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(first.Engines[i].Connections.Count, rig.Engines[i].Connections.Count);
            Assert.Equal(first.Engines[i].Expectations.Count, rig.Engines[i].Expectations.Count);
        }

        AssertFlowsGoOn(rig, flows);
    }

    [Fact]
    public void A_connection_in_two_snapshots_is_taken_once_from_the_newer_one()
    {
        var first = NewRig(2);
        var flows = Traffic(first);
        var older = SaveAll(first, WrittenAt - (10 * Second));
        var newer = SaveAll(first);

        // A reshuffle saved halfway: shard 0's new file written, a file of the old layout still there.
        var (rig, resharder) = Restore(1, [newer[0], newer[1], older[0]]);

        Assert.Equal(first.Engines[0].Connections.Count, resharder.Duplicates);
        AssertPlaced(rig, flows);
    }

    [Fact]
    public void Remaining_times_are_taken_against_each_snapshots_own_clock()
    {
        var rig = NewRig(2);
        Traffic(rig);
        var older = SaveAll(rig, WrittenAt - (100 * Second));
        var newer = SaveAll(rig);

        // Shard 0 saved 100 s before shard 1: its connections lost 100 s more by the time of the load. The masqueraded
        // SYNs (120 s in SYN_SENT) had the same time left in both.
        long Left(ConntrackEngine engine, ConntrackEngine savedBy, long now) => engine.Connections.Entries()
            .Where(c => c.Original.DestinationPort == 80 && savedBy.Connections.Entries().Any(o => o.Original.Equals(c.Original)))
            .Max(c => c.ExpiresAt) - now;
        long before = Left(rig.Engines[0], rig.Engines[0], rig.Clock.NowNanoseconds);
        Assert.Equal(before, Left(rig.Engines[1], rig.Engines[1], rig.Clock.NowNanoseconds));

        var (restored, _) = Restore(1, [older[0], newer[1]], now: WrittenAt + Second);
        Assert.Equal(before - (101 * Second), Left(restored.Engines[0], rig.Engines[0], restored.Clock.NowNanoseconds));
        Assert.Equal(before - Second, Left(restored.Engines[0], rig.Engines[1], restored.Clock.NowNanoseconds));
    }

    [Fact]
    public void A_source_nat_port_outside_the_range_now_stays_with_the_shard_that_saved_it()
    {
        var reply = new ConnTuple(4, IpProtocol.Tcp, A(Server), 80, A(WanAddress), 50000);
        Assert.Equal(1, SnapshotResharder.ShardOf(ConnStatus.SrcNat, reply, 3, 2, ShardRig.NatPortMin, ShardRig.NatPortMax, out bool outside));
        Assert.True(outside);
        Assert.Equal(0, SnapshotResharder.ShardOf(ConnStatus.SrcNat, reply with { DestinationPort = ShardRig.NatPortMin }, 3, 2, ShardRig.NatPortMin, ShardRig.NatPortMax, out outside));
        Assert.False(outside);
        Assert.Equal(1, SnapshotResharder.ShardOf(ConnStatus.SrcNat, reply with { DestinationPort = ShardRig.NatPortMax }, 0, 2, ShardRig.NatPortMin, ShardRig.NatPortMax, out _));
        Assert.Equal(2, SnapshotResharder.ShardOf(ConnStatus.DstNat, reply with { DestinationPort = ShardRig.NatPortMax }, 2, 4, ShardRig.NatPortMin, ShardRig.NatPortMax, out outside));
        Assert.False(outside);
    }

    [Fact]
    public void A_damaged_snapshot_is_refused_whole_and_the_others_are_dealt()
    {
        var first = NewRig(2);
        Traffic(first);
        var snapshots = SaveAll(first);
        var damaged = (byte[])snapshots[1].Clone();
        damaged[^3] ^= 0xff;

        var resharder = new SnapshotResharder(2, ShardRig.NatPortMin, ShardRig.NatPortMax);
        resharder.Add(0, new MemoryStream(snapshots[0]));
        var refused = Assert.Throws<SnapshotException>(() => resharder.Add(1, new MemoryStream(damaged)));
        Assert.Equal(SnapshotRefusal.Corrupt, refused.Reason);
        var truncated = Assert.Throws<SnapshotException>(() => resharder.Add(1, new MemoryStream(snapshots[1], 0, snapshots[1].Length - 7)));
        Assert.Equal(SnapshotRefusal.Truncated, truncated.Reason);

        Assert.Equal(1, resharder.Snapshots);
        var images = resharder.Deal();
        Assert.Equal(first.Engines[0].Connections.Count, images.Sum(i => i.Connections));
        Assert.Equal(BinaryPrimitives.ReadInt32LittleEndian(snapshots[0].AsSpan(32)), images.Sum(i => i.Connections));
    }
}
