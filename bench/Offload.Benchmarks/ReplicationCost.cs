using BenchmarkDotNet.Attributes;
using Offload.Engine;
using Offload.Engine.Packets;
using Offload.Engine.Replication;

namespace Offload.Benchmarks;

/// <summary>
/// What replication costs per new connection, in the three places it is paid: on the packet path of the active
/// router (the engine's observer noting each confirmed connection: SYNs with the change tracker recording against
/// SYNs without it), on the active router's replication thread under the engine lock (encoding a batch of new
/// connections into records, cut into datagram bodies), and on the standby (applying those bodies to its engine).
/// </summary>
/// <remarks>
/// Each invocation handles <see cref="Connections"/> connections on engines made fresh for it (not timed), as
/// <see cref="NewConnectionWithNat"/> does, whose settings it shares. The record's size (bytes per connection on the
/// sync link, before the datagram's header and MAC) is printed at the set-up.
/// </remarks>
[InvocationCount(1)]
[WarmupCount(30)]
[IterationCount(15)]
[LaunchCount(2)]
public class ReplicationCost
{
    /// <summary>Connections per invocation: a busy router's new connections over a few batches.</summary>
    public const int Connections = 10_000;

    private const int TableSize = 32_768;
    private const int MaxBody = 8192 - 28 - 32;

    private readonly byte[] _buffer = new byte[Lab.BufferSize];
    private byte[][] _syns = null!;
    private byte[][] _bodies = null!;
    private ConntrackEngine _engine = null!;
    private ChangeTracker _tracker = null!;
    private ReplicationApplier _applier = null!;
    private ReplicationBatch _batch = null!;

    [GlobalSetup]
    public void Setup()
    {
        _syns = TcpPackets.NewConnectionSyns(Connections);

        _batch = new ReplicationBatch();
        Recorded();
        SendSyns();
        _tracker.Collect(_batch, long.MaxValue);
        _bodies = [.. _batch.Pieces(MaxBody).Select(p => p.ToArray())];
        long bytes = _bodies.Sum(b => (long)b.Length);
        if (_batch.Records != Connections)
        {
            throw new InvalidOperationException($"{_batch.Records} records for {Connections} connections.");
        }

        Console.WriteLine($"// Replication: {Connections} new connections in {_bodies.Length} datagrams, {(double)bytes / Connections:N1} bytes of record each ({(double)(bytes + (_bodies.Length * 60)) / Connections:N1} with the datagrams' headers and MACs)");
        _batch.Clear();
    }

    [IterationSetup(Targets = [nameof(NewConnections)])]
    public void Plain()
    {
        _engine = Lab.CreateEngine(maxConnections: TableSize);
        GC.Collect();
    }

    [IterationSetup(Targets = [nameof(NewConnectionsRecorded)])]
    public void Recorded()
    {
        _engine = Lab.CreateEngine(maxConnections: TableSize);
        _tracker = new ChangeTracker(_engine, null) { Recording = true };
        _tracker.Collect(_batch, long.MaxValue); // the resync of an empty table that switching on starts
        _batch.Clear();
        _engine.Observer = _tracker;
        GC.Collect();
    }

    [IterationSetup(Targets = [nameof(CollectNewConnections)])]
    public void RecordedAndSent()
    {
        Recorded();
        SendSyns();
    }

    [IterationSetup(Targets = [nameof(ApplyOnStandby)])]
    public void Standby()
    {
        _applier = new ReplicationApplier(Lab.CreateEngine(maxConnections: TableSize));
        GC.Collect();
    }

    /// <summary>Baseline: new connections through an engine that replicates nothing.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Connections)]
    public int NewConnections() => SendSyns();

    /// <summary>The same with the change tracker noting each one (the packet path's share of replication).</summary>
    [Benchmark(OperationsPerInvoke = Connections)]
    public int NewConnectionsRecorded() => SendSyns();

    /// <summary>The replication thread's round: the batch encoded under the engine lock, then cut into datagram bodies.</summary>
    [Benchmark(OperationsPerInvoke = Connections)]
    public int CollectNewConnections()
    {
        _tracker.Collect(_batch, long.MaxValue);
        int pieces = 0;
        foreach (var piece in _batch.Pieces(MaxBody))
        {
            pieces += piece.Length > 0 ? 1 : 0;
        }

        _batch.Clear();
        return pieces;
    }

    /// <summary>The standby: every datagram body applied to its engine (each connection inserted).</summary>
    [Benchmark(OperationsPerInvoke = Connections)]
    public int ApplyOnStandby()
    {
        int records = 0;
        foreach (var body in _bodies)
        {
            records += _applier.Apply(body, 0, body.Length);
        }

        return records;
    }

    private int SendSyns() => Lab.ForwardEach(_engine, _syns, _buffer, Lab.Lan);
}
