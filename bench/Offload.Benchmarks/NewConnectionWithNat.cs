using BenchmarkDotNet.Attributes;
using Offload.Engine;
using Offload.Engine.Packets;

namespace Offload.Benchmarks;

/// <summary>
/// The cost of a new connection: a SYN from a port not seen before, through PREROUTING (entry created,
/// TCP tracking started, no destination NAT), routing, and POSTROUTING (MASQUERADE decided, the
/// translated tuple checked for clashes, the entry confirmed into the table).
/// </summary>
/// <remarks>
/// Each invocation sends <see cref="Connections"/> SYNs from distinct source ports into an engine made fresh
/// for it in <see cref="FreshEngine"/> (not timed), so every SYN really starts a connection and the table
/// never fills. The original source port is always free on the router, so MASQUERADE keeps it: this is
/// the no-clash path, the common one. With one invocation per iteration, many warm-up iterations are
/// needed for the JIT to reach its optimised tier; the heap is collected before each (untimed) so that
/// the set-up's garbage is not collected on the clock. Results differ more from one process to the next than
/// within one (JIT and PGO decisions, heap layout), so three processes are measured.
/// </remarks>
[InvocationCount(1)]
[WarmupCount(50)]
[IterationCount(15)]
[LaunchCount(3)]
public class NewConnectionWithNat
{
    /// <summary>SYNs per invocation: enough for an invocation to last about 10 ms; the table is half full at the end.</summary>
    public const int Connections = 32_768;

    private const int TableSize = 65_536;

    private readonly byte[] _buffer = new byte[Lab.BufferSize];
    private byte[][] _syns = null!;
    private ConntrackEngine _engine = null!;

    [GlobalSetup]
    public void Setup()
    {
        _syns = TcpPackets.NewConnectionSyns(Connections);

        _engine = Lab.CreateEngine(maxConnections: TableSize);
        var sent = Lab.ForwardOrThrow(_engine, _syns[0], Lab.Lan);
        if (TcpPackets.SourceAddress(sent) != Lab.WanRouter || !Lab.ChecksumsAreValid(sent))
        {
            throw new InvalidOperationException("The SYN is not translated as expected.");
        }
    }

    [IterationSetup]
    public void FreshEngine()
    {
        _engine = Lab.CreateEngine(maxConnections: TableSize);
        GC.Collect();
    }

    [IterationCleanup(Target = nameof(NewTcpConnection))]
    public void CheckAllCreated()
    {
        if (_engine.Connections.Count != Connections || _engine[EngineCounter.PacketsDropped] != 0)
        {
            throw new InvalidOperationException($"Not every SYN made a connection: {Lab.DescribeCounters(_engine)}");
        }
    }

    /// <summary>Baseline: copy each SYN and verify its checksums.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Connections)]
    public int CopyAndVerifyChecksums()
    {
        int valid = 0;
        foreach (var syn in _syns)
        {
            syn.CopyTo(_buffer, 0);
            if (Lab.ChecksumsAreValid(_buffer.AsSpan(0, syn.Length)))
            {
                valid++;
            }
        }

        return valid;
    }

    [Benchmark(OperationsPerInvoke = Connections)]
    public int NewTcpConnection() => Lab.ForwardEach(_engine, _syns, _buffer, Lab.Lan);
}
