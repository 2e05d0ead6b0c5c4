using Microsoft.Extensions.Logging.Abstractions;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Nat;
using Offload.Engine.Sharding;
using Offload.Engine.Snapshot;
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

    /// <summary>A run of <paramref name="count"/> shards with traffic, stopped (its state saved).</summary>
    private List<EngineShard> Stopped(int count)
    {
        var shards = Shards(count);
        Traffic(shards);
        using var keeper = Keeper(shards);
        Assert.True(keeper.Save("stop"));
        return shards;
    }

    /// <summary>A run of <paramref name="count"/> shards started: what it restored, and what it says of it.</summary>
    private (List<EngineShard> Shards, SnapshotLoadResult? First, string Statistics, int Refused) Started(int count)
    {
        var shards = Shards(count);
        using var keeper = Keeper(shards);
        var first = keeper.Restore();
        return (shards, first, keeper.Statistics(), keeper.Refused);
    }

    [Fact]
    public void Four_shards_files_restored_by_two_then_one_then_three_shards_lose_no_connection_and_leave_no_file_behind()
    {
        Stopped(4);
        Assert.Equal(["state", "state.1", "state.2", "state.3"], Files());

        var two = Started(2);
        AssertPlaced(two.Shards);
        Assert.Equal(0, two.Refused);
        Assert.Contains("4 snapshots", two.Statistics, StringComparison.Ordinal);

        // The new layout was saved at once, and the files of the shards gone removed after it.
        Assert.Equal(["state", "state.1"], Files());

        var again = Started(2);
        AssertPlaced(again.Shards);
        Assert.Contains(": 0 connections moved", again.Statistics, StringComparison.Ordinal);

        AssertPlaced(Started(1).Shards);
        Assert.Equal(["state"], Files());

        AssertPlaced(Started(3).Shards);
        Assert.Equal(["state", "state.1", "state.2"], Files());
    }

    [Fact]
    public void One_shard_restarted_as_one_reads_its_file_as_before_and_leaves_it()
    {
        Stopped(1);
        var after = Started(1);

        Assert.Equal(Flows, after.First!.Connections);
        Assert.DoesNotContain("dealt", after.Statistics, StringComparison.Ordinal);
        Assert.Equal(["state"], Files());
    }

    [Fact]
    public void A_damaged_file_of_a_shard_gone_is_refused_alone_and_moved_aside()
    {
        int lost = Stopped(3)[2].Engine.Connections.Count;
        File.WriteAllBytes(StatePath + ".2", [1, 2, 3]);

        var two = Started(2);

        Assert.Equal(1, two.Refused);
        Assert.Equal(Flows - lost, two.Shards.Sum(s => s.Engine.Connections.Count));
        Assert.Equal(["state", "state.1", "state.2.refused"], Files());
    }
}
