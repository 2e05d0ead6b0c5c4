using System.Diagnostics;
using System.Runtime.CompilerServices;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Packets;

namespace Offload.Benchmarks;

/// <summary>
/// Not a timing benchmark: fills an engine sized for 2^20 connections with distinct MASQUERADE'd TCP
/// connections (one SYN each, through PREROUTING and POSTROUTING) and reports what the managed heap
/// holds per connection, with where the bytes go.
/// </summary>
internal static class MemoryPerConnection
{
    public const int DefaultConnections = 1_000_000;
    public const int TableSize = 1_048_576;

    /// <summary>Source ports used per destination address; 16 destinations give 1,032,192 distinct tuples.</summary>
    private const int PortsPerDestination = 64_512;

    public static int Run(int connections)
    {
        if (connections < 1 || connections > TableSize || connections > PortsPerDestination * 16)
        {
            Console.Error.WriteLine($"--memory takes 1..{TableSize} connections.");
            return 2;
        }

        long extrasSize = MeasureAllocation(() => new ConnectionExtras());

        long heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        var engine = Lab.CreateEngine(maxConnections: TableSize, clock: new ManualClock { NowNanoseconds = 1_000_000_000 });
        long heapEmptyEngine = GC.GetTotalMemory(forceFullCollection: true);

        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        var stopwatch = Stopwatch.StartNew();
        if (!Fill(engine, connections))
        {
            return 1;
        }

        stopwatch.Stop();
        long allocatedDuring = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        long heapFull = GC.GetTotalMemory(forceFullCollection: true);
        var info = GC.GetGCMemoryInfo(GCKind.FullBlocking);
        if (engine.Connections.Count != connections)
        {
            Console.Error.WriteLine($"The table holds {engine.Connections.Count} connections, not {connections}.");
            return 1;
        }

        long tableArrays = heapEmptyEngine - heapBefore;
        long entries = heapFull - heapEmptyEngine;
        long total = heapFull - heapBefore;
        Console.WriteLine($"Connections inserted:           {connections:N0} (table capacity {TableSize:N0}, {engine.Connections.BucketCount:N0} buckets)");
        Console.WriteLine($"Insertion time:                 {stopwatch.Elapsed.TotalMilliseconds:N0} ms ({stopwatch.Elapsed.TotalNanoseconds / connections:N0} ns per SYN, GC included, single run)");
        Console.WriteLine();
        Console.WriteLine($"Heap, empty engine:             {tableArrays,14:N0} bytes = {(double)tableArrays / connections,7:N1} per connection (preallocated table arrays)");
        Console.WriteLine($"Heap, entries:                  {entries,14:N0} bytes = {(double)entries / connections,7:N1} per connection");
        Console.WriteLine($"Heap, total:                    {total,14:N0} bytes = {(double)total / connections,7:N1} per connection");
        Console.WriteLine($"Allocated while inserting:      {allocatedDuring,14:N0} bytes = {(double)allocatedDuring / connections,7:N1} per connection");
        Console.WriteLine();
        Console.WriteLine($"Connection entry (by value):    {Unsafe.SizeOf<ConnEntry>(),7} bytes (in chunks of slots allocated as the table fills)");
        Console.WriteLine($"  IPv4 tuples x2:               {2 * Unsafe.SizeOf<EntryTuple>(),7} bytes ({Unsafe.SizeOf<EntryTuple>()} each; an IPv6 entry adds an address block of {Unsafe.SizeOf<AddressBlock>()})");
        Console.WriteLine($"  TcpTrackState:                {Unsafe.SizeOf<TcpTrackState>(),7} bytes");
        Console.WriteLine($"ConnectionExtras (when needed): {extrasSize,7} bytes");
        Console.WriteLine($"Table per slot of capacity:     {(double)tableArrays / TableSize,7:N1} bytes (bucket heads, by-source heads)");
        Console.WriteLine();
        // The entries hold no references: a full collection has nothing of the table to trace.
        var pause = Stopwatch.StartNew();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: false);
        pause.Stop();
        var fullGc = GC.GetGCMemoryInfo(GCKind.FullBlocking);
        Console.WriteLine($"Full blocking GC with the table full: {pause.Elapsed.TotalMilliseconds:N1} ms wall, pause {fullGc.PauseDurations[0].TotalMilliseconds:N1} ms");
        Console.WriteLine($"GC after: heap {info.HeapSizeBytes:N0} bytes, fragmented {info.FragmentedBytes:N0}, committed {info.TotalCommittedBytes:N0}; process working set {Environment.WorkingSet:N0} bytes");
        Churn(engine, connections, System.Runtime.GCLatencyMode.Interactive);
        Churn(engine, connections, System.Runtime.GCLatencyMode.SustainedLowLatency);
        GC.KeepAlive(engine);
        return 0;
    }

    /// <summary>
    /// What a daemon with a full table meets in operation rather than in a forced collection: connections ending and
    /// new ones taking their place (a quarter of the table replaced), with the collections the runtime chooses. Prints
    /// how many there were of each generation, the longest pause and the sum of pauses, in one GC latency mode.
    /// </summary>
    private static void Churn(ConntrackEngine engine, int connections, System.Runtime.GCLatencyMode mode)
    {
        var previous = System.Runtime.GCSettings.LatencyMode;
        System.Runtime.GCSettings.LatencyMode = mode;
        var victims = engine.Connections.Entries().Take(connections / 4).ToArray();
        var buffer = new byte[Lab.BufferSize];
        int[] before = [GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2)];
        var pausedBefore = GC.GetTotalPauseDuration();
        long lastIndex = GC.GetGCMemoryInfo(GCKind.Any).Index;
        double longest = 0;
        var stopwatch = Stopwatch.StartNew();
        for (int i = 0; i < victims.Length; i++)
        {
            engine.Destroy(victims[i]);
            ushort sourcePort = (ushort)(1024 + (i % PortsPerDestination));
            uint destination = Lab.Server + 64 + (uint)(i / PortsPerDestination) + (mode == System.Runtime.GCLatencyMode.Interactive ? 0u : 32u);
            int length = TcpPackets.Write(buffer, Lab.Client, sourcePort, destination, 443, (uint)i, 0, TcpFlags.Syn, 64240, TcpPackets.LinuxSynOptions, default);
            Lab.Forward(engine, buffer, ref length, Lab.Lan);
            if ((i & 255) == 0 && GC.GetGCMemoryInfo(GCKind.Any) is { } last && last.Index != lastIndex)
            {
                lastIndex = last.Index;
                foreach (var p in last.PauseDurations)
                {
                    longest = Math.Max(longest, p.TotalMilliseconds);
                }
            }
        }

        stopwatch.Stop();
        var paused = GC.GetTotalPauseDuration() - pausedBefore;
        System.Runtime.GCSettings.LatencyMode = previous;
        Console.WriteLine(
            $"Churn, {mode}: {victims.Length:N0} connections replaced in {stopwatch.Elapsed.TotalMilliseconds:N0} ms; collections gen0 {GC.CollectionCount(0) - before[0]}, " +
            $"gen1 {GC.CollectionCount(1) - before[1]}, gen2 {GC.CollectionCount(2) - before[2]}; longest pause seen {longest:N2} ms, all pauses {paused.TotalMilliseconds:N1} ms");
    }

    /// <summary>
    /// Fills an engine with distinct MASQUERADE'd TCP connections, one SYN each through PREROUTING and POSTROUTING
    /// (one client; source ports 1024-65535 to 16 servers). False, with the reason on stderr, when a SYN is dropped.
    /// </summary>
    public static bool Fill(ConntrackEngine engine, int connections)
    {
        var buffer = new byte[Lab.BufferSize];
        for (int i = 0; i < connections; i++)
        {
            ushort sourcePort = (ushort)(1024 + (i % PortsPerDestination));
            uint destination = Lab.Server + (uint)(i / PortsPerDestination);
            int length = TcpPackets.Write(
                buffer, Lab.Client, sourcePort, destination, 443, (uint)i * 2654435761u, 0, TcpFlags.Syn, 64240, TcpPackets.LinuxSynOptions, default);
            if (Lab.Forward(engine, buffer, ref length, Lab.Lan) != Verdict.Accept)
            {
                Console.Error.WriteLine($"SYN {i} was dropped: {Lab.DescribeCounters(engine)}");
                return false;
            }
        }

        return true;
    }

    /// <summary>Bytes one call of <paramref name="create"/> allocates, averaged over many.</summary>
    private static long MeasureAllocation(Func<object> create)
    {
        const int count = 10_000;
        var keep = new object[count];
        create();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < count; i++)
        {
            keep[i] = create();
        }

        long after = GC.GetAllocatedBytesForCurrentThread();
        GC.KeepAlive(keep);
        return (after - before) / count;
    }
}
