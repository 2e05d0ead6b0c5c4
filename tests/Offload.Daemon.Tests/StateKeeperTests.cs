using Microsoft.Extensions.Logging.Abstractions;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Nat;
using Offload.Engine.Sharding;
using Offload.Sdk.Testing;
using Offload.TestSupport;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Daemon.Tests;

/// <summary>
/// The state files of a daemon whose number of shards changed between two runs (<c>state</c>, <c>state.1</c>, ...): every
/// connection is restored once, into the shard of its NAT port's slice; the new layout is saved at once and the files
/// of shards gone are removed after it, so that nothing is restored twice; a run with the same shards moves nothing, and
/// one shard restarted as one shard reads its one file as before.
/// </summary>
public sealed class StateKeeperTests : IDisposable
{
    private const ushort NatPortMin = 61000;
    private const ushort NatPortMax = 65535;
    private const int Flows = 40;

    private readonly string _directory = CleanDirectory.Create("state-");

    private string StatePath => Path.Combine(_directory, "state");

    public void Dispose() => CleanDirectory.Delete(_directory);

    /// <summary>Shards as <c>Daemon.Start</c> builds them.</summary>
    private static List<EngineShard> Shards(int count)
    {
        var options = new EngineOptions
        {
            MaxConnections = 4096,
            NatRules = [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan, Range = Ports(NatPortMin, NatPortMax) }],
            Interfaces = new RouterRig().Interfaces,
            NatPortMin = NatPortMin,
            NatPortMax = NatPortMax,
        };
        var directory = count > 1 ? new ShardDirectory(count) : null;
        return [.. Enumerable.Range(0, count).Select(i =>
        {
            var clock = new ManualClock { NowNanoseconds = SystemClock.Instance.NowNanoseconds };
            var engine = new ConntrackEngine(count == 1 ? options : options with { Shard = i, Shards = count, Directory = directory }, clock);
            return new EngineShard(i, engine, clock);
        })];
    }

    private StateKeeper Keeper(List<EngineShard> shards) => new(StatePath, TimeSpan.Zero, shards, NullLogger.Instance);

    /// <summary>Masqueraded TCP flows, each sent out through a shard in turn (the kernel's choice), in its slice.</summary>
    private static void Traffic(List<EngineShard> shards)
    {
        for (int i = 0; i < Flows; i++)
        {
            var packet = TcpPacket($"192.168.1.{100 + i}", 40000, Server, 80, Syn, seq: 100);
            var ctx = new PacketContext(WithRoom(packet, 2048), packet.Length, Lan) { OutInterface = Wan };
            Assert.Equal(Verdict.Accept, shards[i % shards.Count].Engine.Process(ref ctx));
        }
    }

    private static void AssertPlaced(List<EngineShard> shards)
    {
        var all = shards.SelectMany(s => s.Engine.Connections.Entries().Select(c => (Connection: c, s.Index))).ToList();
        Assert.Equal(Flows, all.Count);
        Assert.Equal(Flows, all.Select(x => x.Connection.Original).Distinct().Count());
        foreach (var (conn, index) in all)
        {
            Assert.True(conn.HasStatus(ConnStatus.SrcNat));
            Assert.Equal(PortSlice.OwnerOf(conn.Reply.DestinationPort, NatPortMin, NatPortMax, shards.Count), index);
        }
    }

    private string[] Files() => [.. Directory.GetFiles(_directory).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];

    [Fact]
    public void Four_shards_files_restored_by_two_then_one_then_three_shards_lose_no_connection_and_leave_no_file_behind()
    {
        var four = Shards(4);
        Traffic(four);
        using (var keeper = Keeper(four))
        {
            Assert.True(keeper.Save("stop"));
        }

        Assert.Equal(["state", "state.1", "state.2", "state.3"], Files());

        var two = Shards(2);
        using (var keeper = Keeper(two))
        {
            keeper.Restore();
            AssertPlaced(two);
            Assert.Equal(0, keeper.Refused);
            Assert.Contains("4 snapshots", keeper.Statistics(), StringComparison.Ordinal);
        }

        // The new layout was saved at once, and the files of the shards gone removed after it.
        Assert.Equal(["state", "state.1"], Files());

        var again = Shards(2);
        using (var keeper = Keeper(again))
        {
            keeper.Restore();
            AssertPlaced(again);
            Assert.Contains(": 0 connections moved", keeper.Statistics(), StringComparison.Ordinal);
        }

        var one = Shards(1);
        using (var keeper = Keeper(one))
        {
            keeper.Restore();
            AssertPlaced(one);
        }

        Assert.Equal(["state"], Files());

        var three = Shards(3);
        using (var keeper = Keeper(three))
        {
            keeper.Restore();
            AssertPlaced(three);
        }

        Assert.Equal(["state", "state.1", "state.2"], Files());
    }

    [Fact]
    public void One_shard_restarted_as_one_reads_its_file_as_before_and_leaves_it()
    {
        var one = Shards(1);
        Traffic(one);
        using (var keeper = Keeper(one))
        {
            Assert.True(keeper.Save("stop"));
        }

        var after = Shards(1);
        using (var keeper = Keeper(after))
        {
            Assert.Equal(Flows, keeper.Restore()!.Connections);
            Assert.DoesNotContain("dealt", keeper.Statistics(), StringComparison.Ordinal);
        }

        Assert.Equal(["state"], Files());
    }

    [Fact]
    public void A_damaged_file_of_a_shard_gone_is_refused_alone_and_moved_aside()
    {
        var three = Shards(3);
        Traffic(three);
        using (var keeper = Keeper(three))
        {
            Assert.True(keeper.Save("stop"));
        }

        int lost = three[2].Engine.Connections.Count;
        File.WriteAllBytes(StatePath + ".2", [1, 2, 3]);
        var two = Shards(2);
        using (var keeper = Keeper(two))
        {
            keeper.Restore();
            Assert.Equal(1, keeper.Refused);
            Assert.Equal(Flows - lost, two.Sum(s => s.Engine.Connections.Count));
        }

        Assert.Equal(["state", "state.1", "state.2.refused"], Files());
    }
}
