using System.Diagnostics;
using Offload.Engine;
using Offload.Engine.Snapshot;

namespace Offload.Benchmarks;

/// <summary>
/// Not a BenchmarkDotNet benchmark (one run of each step takes seconds at a million connections): fills an engine as
/// <c>--memory</c> does, then measures what offloadd's state snapshot costs: the copy taken under the engine lock (the
/// time packets wait at each checkpoint), the write to a file (hash, write, fsync, rename: outside the lock), the
/// file's size, and the load into a fresh engine at start. Each step runs <see cref="Rounds"/> times; the minimum and
/// the median are reported.
/// </summary>
internal static class SnapshotCost
{
    private const int Rounds = 5;

    public static int Run(int connections, string directory)
    {
        if (connections < 1 || connections > MemoryPerConnection.TableSize)
        {
            Console.Error.WriteLine($"--snapshot takes 1..{MemoryPerConnection.TableSize} connections.");
            return 2;
        }

        var clock = new ManualClock { NowNanoseconds = 1_000_000_000 };
        var engine = Lab.CreateEngine(maxConnections: MemoryPerConnection.TableSize, clock: clock);
        if (!MemoryPerConnection.Fill(engine, connections))
        {
            return 1;
        }

        string path = Path.Combine(directory, $"offload-snapshot-bench-{Environment.ProcessId}");
        var capture = new List<double>();
        var write = new List<double>();
        var load = new List<double>();
        long bytes = 0;
        long unixNow = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
        try
        {
            for (int round = 0; round < Rounds; round++)
            {
                var watch = Stopwatch.StartNew();
                using (var image = EngineSnapshot.Capture(engine, unixNow))
                {
                    capture.Add(watch.Elapsed.TotalMilliseconds);
                    watch.Restart();
                    image.WriteFile(path);
                    write.Add(watch.Elapsed.TotalMilliseconds);
                    bytes = image.Length;
                }

                var fresh = Lab.CreateEngine(maxConnections: MemoryPerConnection.TableSize, clock: clock);
                watch.Restart();
                var result = EngineSnapshot.LoadFile(fresh, path, unixNow);
                load.Add(watch.Elapsed.TotalMilliseconds);
                if (result.Connections != connections)
                {
                    Console.Error.WriteLine($"The load restored {result.Connections} connections, not {connections}.");
                    return 1;
                }
            }
        }
        finally
        {
            File.Delete(path);
        }

        Console.WriteLine($"Connections:                    {connections:N0} (MASQUERADE'd TCP, SYN_SENT), {Rounds} rounds, file in {directory}");
        Console.WriteLine($"Snapshot size:                  {bytes:N0} bytes = {(double)bytes / connections:N1} per connection");
        Console.WriteLine($"Capture (engine held):          {Describe(capture, connections)}");
        Console.WriteLine($"Write (hash, write, fsync, mv): {Describe(write, connections)}");
        Console.WriteLine($"Load into a fresh engine:       {Describe(load, connections)}");
        GC.KeepAlive(engine);
        return 0;
    }

    private static string Describe(List<double> milliseconds, int connections)
    {
        milliseconds.Sort();
        double median = milliseconds[milliseconds.Count / 2];
        return $"min {milliseconds[0],8:N1} ms, median {median,8:N1} ms ({median * 1_000_000 / connections:N0} ns per connection)";
    }
}
