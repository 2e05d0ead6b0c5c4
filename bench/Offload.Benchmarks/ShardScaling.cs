using BenchmarkDotNet.Attributes;
using Offload.Engine;
using Offload.Engine.Packets;

namespace Offload.Benchmarks;

/// <summary>
/// Packets per second with 1, 2 and all of the machine's cores: one engine shard per thread, as offloadd runs one
/// per queue pair, each forwarding established, MASQUERADE'd segments of its own 10,000 connections (in random
/// order) in bursts of 64 with the clock read once per burst. The shards share nothing on this path, so the
/// aggregate should grow with the threads until the cores (or the memory bus) are used up.
/// </summary>
/// <remarks>
/// One operation is one packet, whichever shard forwards it: an invocation forwards <see cref="PacketsPerInvoke"/>,
/// shared out between the threads, so the time per operation is the inverse of the aggregate rate and the packets/s
/// column is the whole router's. The threads start once per invocation (microseconds in tens of milliseconds).
/// </remarks>
public class ShardScaling
{
    private const int ConnectionsPerShard = 10_000;
    private const int RingSize = 1 << 14;
    private const int Burst = 64;
    private const int PacketsPerInvoke = 1 << 18;
    private const uint ClientIsn = 0x1000_0000;
    private const uint ServerIsn = 0x7000_0000;

    private Shard[] _shards = null!;

    /// <summary>Threads, each with a shard of its own: 1, 2 and every core of the machine.</summary>
    [ParamsSource(nameof(ThreadCounts))]
    public int Threads { get; set; }

    public static IEnumerable<int> ThreadCounts() => new[] { 1, 2, Environment.ProcessorCount }.Distinct().Order();

    [GlobalSetup]
    public void Setup()
    {
        _shards = [.. Enumerable.Range(0, Threads).Select(i => new Shard(i))];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var shard in _shards)
        {
            if (shard.Engine[EngineCounter.PacketsDropped] != 0)
            {
                throw new InvalidOperationException($"Packets were dropped: {Lab.DescribeCounters(shard.Engine)}");
            }
        }
    }

    [Benchmark(OperationsPerInvoke = PacketsPerInvoke)]
    public void EstablishedNatPerShard() =>
        Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, i => _shards[i].Run(PacketsPerInvoke / Threads));

    /// <summary>One engine shard and the segments of its connections.</summary>
    private sealed class Shard
    {
        private readonly byte[] _buffer = new byte[Lab.BufferSize];
        private readonly byte[][] _ring = new byte[RingSize][];
        private readonly ManualClock _clock = new() { NowNanoseconds = SystemClock.Instance.NowNanoseconds };
        private int _next;

        public Shard(int index)
        {
            Engine = Lab.CreateEngine(maxConnections: 1 << 15, clock: _clock);
            var payload = new byte[64];
            uint server = Lab.Server + (uint)(index * 16);
            for (int c = 0; c < ConnectionsPerShard; c++)
            {
                ushort port = (ushort)(1024 + c);
                Lab.ForwardOrThrow(Engine, TcpPackets.Build(Lab.Client, port, server, 80, ClientIsn, 0, TcpFlags.Syn, 64240, TcpPackets.LinuxSynOptions), Lab.Lan);
                Lab.ForwardOrThrow(Engine, TcpPackets.Build(server, 80, Lab.WanRouter, port, ServerIsn, ClientIsn + 1, TcpFlags.Syn | TcpFlags.Ack, 65160, TcpPackets.LinuxSynOptions), Lab.Wan);
                Lab.ForwardOrThrow(Engine, TcpPackets.Build(Lab.Client, port, server, 80, ClientIsn + 1, ServerIsn + 1, TcpFlags.Ack, 502), Lab.Lan);
            }

            var random = new Random(42 + index);
            for (int i = 0; i < RingSize; i++)
            {
                _ring[i] = TcpPackets.Build(Lab.Client, (ushort)(1024 + random.Next(ConnectionsPerShard)), server, 80, ClientIsn + 1, ServerIsn + 1, TcpFlags.Ack | TcpFlags.Psh, 502, default, payload);
            }
        }

        public ConntrackEngine Engine { get; }

        public void Run(int packets)
        {
            for (int done = 0; done < packets; done += Burst)
            {
                // As a queue worker: the clock once per burst.
                _clock.NowNanoseconds = SystemClock.Instance.NowNanoseconds;
                for (int i = 0; i < Burst; i++)
                {
                    var packet = _ring[_next++ & (RingSize - 1)];
                    packet.CopyTo(_buffer, 0);
                    int length = packet.Length;
                    Lab.Forward(Engine, _buffer, ref length, Lab.Lan);
                }
            }
        }
    }
}
