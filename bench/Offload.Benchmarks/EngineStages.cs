using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Conntrack.L4;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Nat;
using Offload.Engine.Packets;

namespace Offload.Benchmarks;

/// <summary>
/// Where the time of <see cref="EstablishedNatTcp.OriginalDirection"/> goes: each stage of the established
/// path alone (after the same copy of the packet), on the same connection and segment. A stage's cost is
/// its time minus the baseline; the stages add up to roughly the whole path.
/// </summary>
public class EngineStages
{
    private const ushort ClientPort = 40000;
    private const uint ClientIsn = 0x1000_0000;
    private const uint ServerIsn = 0x7000_0000;

    private readonly byte[] _buffer = new byte[Lab.BufferSize];
    private ConntrackEngine _engine = null!;
    private ConntrackEngine _engineManualClock = null!;
    private Connection _connection;
    private PacketInfo _info;
    private byte[] _packet = null!;

    [GlobalSetup]
    public void Setup()
    {
        // Read per packet here on purpose: the whole path with and without the clock's cost, side by side.
        _engine = Lab.CreateEngine(validateChecksums: false, clock: SystemClock.Instance);
        _engineManualClock = Lab.CreateEngine(validateChecksums: false, clock: new ManualClock { NowNanoseconds = 1_000_000_000 });
        var payload = new byte[64];
        _packet = TcpPackets.Build(Lab.Client, ClientPort, Lab.Server, 80, ClientIsn + 1, ServerIsn + 1, TcpFlags.Ack | TcpFlags.Psh, 502, default, payload);
        foreach (var engine in new[] { _engine, _engineManualClock })
        {
            Lab.ForwardOrThrow(engine, TcpPackets.Build(Lab.Client, ClientPort, Lab.Server, 80, ClientIsn, 0, TcpFlags.Syn, 64240, TcpPackets.LinuxSynOptions), Lab.Lan);
            Lab.ForwardOrThrow(engine, TcpPackets.Build(Lab.Server, 80, Lab.WanRouter, ClientPort, ServerIsn, ClientIsn + 1, TcpFlags.Syn | TcpFlags.Ack, 65160, TcpPackets.LinuxSynOptions), Lab.Wan);
            Lab.ForwardOrThrow(engine, TcpPackets.Build(Lab.Client, ClientPort, Lab.Server, 80, ClientIsn + 1, ServerIsn + 1, TcpFlags.Ack, 502), Lab.Lan);
            Lab.ForwardOrThrow(engine, _packet, Lab.Lan);
        }

        _info = PacketParser.Parse(_packet);
        ConnTuples.TryRead(_packet, _info, out var tuple);
        if (!_engine.Connections.TryFind(tuple, out _connection, out _))
        {
            throw new InvalidOperationException("The connection is not in the table.");
        }
    }

    [Benchmark(Baseline = true)]
    public int Copy()
    {
        _packet.CopyTo(_buffer, 0);
        return _buffer[0];
    }

    [Benchmark]
    public int Parse()
    {
        _packet.CopyTo(_buffer, 0);
        return PacketParser.Parse(_buffer.AsSpan(0, _packet.Length)).L4Offset;
    }

    /// <summary>What ValidateChecksums adds: the engine's IPv4 header and TCP checksum checks.</summary>
    [Benchmark]
    public bool VerifyChecksums()
    {
        _packet.CopyTo(_buffer, 0);
        var packet = _buffer.AsSpan(0, _packet.Length);
        return PacketParser.IPv4HeaderChecksumIsValid(packet) && PacketParser.TransportChecksumIsValid(packet, _info);
    }

    [Benchmark]
    public bool ReadTupleAndFind()
    {
        _packet.CopyTo(_buffer, 0);
        ConnTuples.TryRead(_buffer.AsSpan(0, _packet.Length), _info, out var tuple);
        return _engine.Connections.TryFind(tuple, out _, out _);
    }

    [Benchmark]
    public TcpVerdict TrackTcp()
    {
        _packet.CopyTo(_buffer, 0);
        var segment = L4ProtoTcp.ReadSegment(_buffer, _info);
        return TcpTracker.Process(ref _connection.Tcp, segment, false, 0, _engine.Options.Tcp, out _);
    }

    /// <summary>The source manip of POSTROUTING: address and port rewritten, IPv4 and TCP checksums updated.</summary>
    [Benchmark]
    public byte NatManipSource()
    {
        _packet.CopyTo(_buffer, 0);
        NatManip.Apply(_buffer.AsSpan(0, _packet.Length), _info, _connection, ConnDirection.Original, ManipType.Source);
        return _buffer[12];
    }

    /// <summary>The whole path, as in <see cref="EstablishedNatTcp"/> (system clock, no checksum validation).</summary>
    [Benchmark]
    public Verdict WholePath()
    {
        _packet.CopyTo(_buffer, 0);
        int length = _packet.Length;
        return Lab.Forward(_engine, _buffer, ref length, Lab.Lan);
    }

    /// <summary>The whole path with a clock that costs nothing to read: the difference is the clock.</summary>
    [Benchmark]
    public Verdict WholePathManualClock()
    {
        _packet.CopyTo(_buffer, 0);
        int length = _packet.Length;
        return Lab.Forward(_engineManualClock, _buffer, ref length, Lab.Lan);
    }
}
