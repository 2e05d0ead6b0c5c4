using BenchmarkDotNet.Attributes;
using Offload.Engine;
using Offload.Engine.Packets;

namespace Offload.Benchmarks;

/// <summary>
/// <see cref="EstablishedNatTcp.OriginalDirection"/> when the packets belong to many connections, in random
/// order: with a million entries the bucket array, the entries and the packets no longer fit in the caches,
/// so each lookup pays for memory. The engine keeps its default settings (checksums validated).
/// </summary>
/// <remarks>
/// The set-up establishes every connection (SYN, SYN/ACK, ACK through the engine), then pre-builds one data
/// segment for each of <see cref="RingSize"/> connections drawn at random; the operations walk that ring.
/// </remarks>
public class EstablishedNatTcpLargeTable
{
    /// <summary>Pre-built data segments the operations cycle through (each of a different connection).</summary>
    public const int RingSize = 1 << 16;

    private const int PortsPerDestination = 64_512;
    private const uint ClientIsn = 0x1000_0000;
    private const uint ServerIsn = 0x7000_0000;

    private readonly byte[] _buffer = new byte[Lab.BufferSize];
    private readonly int[] _buckets = new int[Lab.Burst];
    private ConntrackEngine _engine = null!;
    private byte[][] _ring = null!;
    private int _next;

    [Params(1_000, 1_000_000)]
    public int Connections { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _engine = Lab.CreateEngine(maxConnections: 1 << 20);
        var payload = new byte[64];
        Span<byte> packet = stackalloc byte[128];
        for (int i = 0; i < Connections; i++)
        {
            var (port, server) = Endpoint(i);
            Forward(packet, TcpPackets.Write(packet, Lab.Client, port, server, 80, ClientIsn, 0, TcpFlags.Syn, 64240, TcpPackets.LinuxSynOptions, default), Lab.Lan);
            Forward(packet, TcpPackets.Write(packet, server, 80, Lab.WanRouter, port, ServerIsn, ClientIsn + 1, TcpFlags.Syn | TcpFlags.Ack, 65160, TcpPackets.LinuxSynOptions, default), Lab.Wan);
            Forward(packet, TcpPackets.Write(packet, Lab.Client, port, server, 80, ClientIsn + 1, ServerIsn + 1, TcpFlags.Ack, 502, default, default), Lab.Lan);
        }

        var random = new Random(42);
        _ring = new byte[RingSize][];
        for (int i = 0; i < RingSize; i++)
        {
            var (port, server) = Endpoint(random.Next(Connections));
            _ring[i] = TcpPackets.Build(Lab.Client, port, server, 80, ClientIsn + 1, ServerIsn + 1, TcpFlags.Ack | TcpFlags.Psh, 502, default, payload);
        }

        if (_engine.Connections.Count != Connections)
        {
            throw new InvalidOperationException($"The table holds {_engine.Connections.Count} connections: {Lab.DescribeCounters(_engine)}");
        }

        // Warm the path once over the whole ring, and check that every segment is forwarded.
        for (int i = 0; i < RingSize; i++)
        {
            Lab.ForwardOrThrow(_engine, _ring[i], Lab.Lan);
        }

        GC.Collect();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_engine[EngineCounter.PacketsDropped] != 0)
        {
            throw new InvalidOperationException($"Packets were dropped: {Lab.DescribeCounters(_engine)}");
        }
    }

    /// <summary>Baseline: copy the next segments of the ring and verify their checksums, a burst of them.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Lab.Burst)]
    public int CopyAndVerifyChecksums()
    {
        int valid = 0;
        for (int i = 0; i < Lab.Burst; i++)
        {
            var packet = _ring[_next++ & (RingSize - 1)];
            packet.CopyTo(_buffer, 0);
            valid += Lab.ChecksumsAreValid(_buffer.AsSpan(0, packet.Length)) ? 1 : 0;
        }

        return valid;
    }

    /// <summary>A burst of the ring's next segments, one clock read for them, as offloadd's worker.</summary>
    [Benchmark(OperationsPerInvoke = Lab.Burst)]
    public int OriginalDirection()
    {
        Lab.Tick(_engine);
        return ForwardBurst();
    }

    /// <summary>The same burst with its lookups staged first (<see cref="ConntrackEngine.PrepareLookups"/>), as offloadd's worker does for a large table.</summary>
    [Benchmark(OperationsPerInvoke = Lab.Burst)]
    public int OriginalDirectionStaged()
    {
        Lab.Tick(_engine);
        StageBurst();
        return ForwardBurst();
    }

    /// <summary>
    /// <see cref="OriginalDirectionStaged"/> for packets whose checksums the kernel or the device verified, as the queue
    /// says of most (NFQA_SKB_INFO without CSUM_NOTVERIFIED) and offloadd passes on: the engine does not sum them again.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Lab.Burst)]
    public int OriginalDirectionStagedVerified()
    {
        Lab.Tick(_engine);
        StageBurst();
        return ForwardBurst(checksumVerified: true);
    }

    /// <summary>The next burst's lookups staged, as offloadd's worker stages them for a large table.</summary>
    private void StageBurst()
    {
        int first = _next;
        for (int i = 0; i < Lab.Burst; i++)
        {
            _buckets[i] = _engine.LookupBucketOf(_ring[(first + i) & (RingSize - 1)]);
        }

        _engine.PrepareLookups(_buckets);
    }

    /// <summary>The ring's next burst of segments through the engine, each copied first as a queue delivers it.</summary>
    private int ForwardBurst(bool checksumVerified = false)
    {
        int accepted = 0;
        for (int i = 0; i < Lab.Burst; i++)
        {
            var packet = _ring[_next++ & (RingSize - 1)];
            packet.CopyTo(_buffer, 0);
            int length = packet.Length;
            accepted += Lab.Forward(_engine, _buffer, ref length, Lab.Lan, checksumVerified) == Verdict.Accept ? 1 : 0;
        }

        return accepted;
    }

    /// <summary>Connection <paramref name="i"/>'s client port and server: distinct tuples that MASQUERADE keeps as they are.</summary>
    private static (ushort Port, uint Server) Endpoint(int i) =>
        ((ushort)(1024 + (i % PortsPerDestination)), Lab.Server + (uint)(i / PortsPerDestination));

    private void Forward(Span<byte> packet, int length, int inInterface)
    {
        packet.Slice(0, length).CopyTo(_buffer);
        if (Lab.Forward(_engine, _buffer, ref length, inInterface) != Verdict.Accept)
        {
            throw new InvalidOperationException($"A set-up packet was dropped: {Lab.DescribeCounters(_engine)}");
        }
    }
}
