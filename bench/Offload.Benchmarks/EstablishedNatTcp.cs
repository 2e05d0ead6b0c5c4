using BenchmarkDotNet.Attributes;
using Offload.Engine;
using Offload.Engine.Packets;

namespace Offload.Benchmarks;

/// <summary>
/// The common case: a data segment of an established, MASQUERADE'd TCP connection. Per operation the
/// pre-built segment is copied into the packet buffer (the engine rewrites in place) and goes through
/// PREROUTING, a route lookup and POSTROUTING: the table lookup, the TCP window check, the NAT manip and
/// the incremental checksum updates. An invocation is a burst of <see cref="Lab.Burst"/> packets with one clock
/// read, as offloadd's worker handles a queue's batch; the figures are per packet.
/// </summary>
/// <remarks>
/// The same segment is presented every time, so the tracker sees a retransmission; it runs the same
/// window checks as for new data (and counts the repeat), so the cost is that of any in-window segment.
/// </remarks>
public class EstablishedNatTcp
{
    private const ushort ClientPort = 40000;
    private const ushort ServerPort = 80;
    private const uint ClientIsn = 0x1000_0000;
    private const uint ServerIsn = 0x7000_0000;
    private const int PayloadLength = 64;

    private readonly byte[] _buffer = new byte[Lab.BufferSize];
    private ConntrackEngine _engine = null!;
    private byte[] _original = null!;
    private byte[] _reply = null!;

    /// <summary>The engine's nf_conntrack_checksum switch: verify IPv4 and TCP checksums of every packet.</summary>
    [Params(true, false)]
    public bool ValidateChecksums { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _engine = Lab.CreateEngine(ValidateChecksums);
        var payload = new byte[PayloadLength];
        for (int i = 0; i < payload.Length; i++)
        {
            payload[i] = (byte)('a' + (i % 26));
        }

        // The handshake, through the engine: it creates the entry, decides MASQUERADE and confirms it.
        Lab.ForwardOrThrow(_engine, TcpPackets.Build(Lab.Client, ClientPort, Lab.Server, ServerPort, ClientIsn, 0, TcpFlags.Syn, 64240, TcpPackets.LinuxSynOptions), Lab.Lan);
        Lab.ForwardOrThrow(_engine, TcpPackets.Build(Lab.Server, ServerPort, Lab.WanRouter, ClientPort, ServerIsn, ClientIsn + 1, TcpFlags.Syn | TcpFlags.Ack, 65160, TcpPackets.LinuxSynOptions), Lab.Wan);
        Lab.ForwardOrThrow(_engine, TcpPackets.Build(Lab.Client, ClientPort, Lab.Server, ServerPort, ClientIsn + 1, ServerIsn + 1, TcpFlags.Ack, 502), Lab.Lan);

        _original = TcpPackets.Build(Lab.Client, ClientPort, Lab.Server, ServerPort, ClientIsn + 1, ServerIsn + 1, TcpFlags.Ack | TcpFlags.Psh, 502, default, payload);
        _reply = TcpPackets.Build(Lab.Server, ServerPort, Lab.WanRouter, ClientPort, ServerIsn + 1, ClientIsn + 1 + PayloadLength, TcpFlags.Ack | TcpFlags.Psh, 510, default, payload);

        // Both directions once for real, checking that the engine translates them as the kernel would.
        var sent = Lab.ForwardOrThrow(_engine, _original, Lab.Lan);
        var answered = Lab.ForwardOrThrow(_engine, _reply, Lab.Wan);
        if (TcpPackets.SourceAddress(sent) != Lab.WanRouter || !Lab.ChecksumsAreValid(sent)
            || TcpPackets.DestinationAddress(answered) != Lab.Client || !Lab.ChecksumsAreValid(answered)
            || _engine.Connections.Count != 1)
        {
            throw new InvalidOperationException("The set-up connection is not translated as expected.");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        // Every measured packet must have been forwarded: a drop would make the numbers meaningless.
        if (_engine[EngineCounter.PacketsDropped] != 0)
        {
            throw new InvalidOperationException($"Packets were dropped: {Lab.DescribeCounters(_engine)}");
        }
    }

    /// <summary>Baseline: what touching the packet costs at all (copy it, verify its checksums), a burst of them.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Lab.Burst)]
    public int CopyAndVerifyChecksums()
    {
        int valid = 0;
        for (int i = 0; i < Lab.Burst; i++)
        {
            _original.CopyTo(_buffer, 0);
            valid += Lab.ChecksumsAreValid(_buffer.AsSpan(0, _original.Length)) ? 1 : 0;
        }

        return valid;
    }

    /// <summary>Client to server: source NAT applied in POSTROUTING.</summary>
    [Benchmark(OperationsPerInvoke = Lab.Burst)]
    public int OriginalDirection() => Lab.ForwardBurst(_engine, _original, _buffer, Lab.Lan);

    /// <summary>Server to client: the reverse translation (destination) applied in PREROUTING.</summary>
    [Benchmark(OperationsPerInvoke = Lab.Burst)]
    public int ReplyDirection() => Lab.ForwardBurst(_engine, _reply, _buffer, Lab.Wan);
}
