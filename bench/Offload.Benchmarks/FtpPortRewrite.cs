using System.Text;
using BenchmarkDotNet.Attributes;
using Offload.Alg.Ftp;
using Offload.Engine;
using Offload.Engine.Packets;
using Offload.Plugins;

namespace Offload.Benchmarks;

/// <summary>
/// The FTP helper's expensive path: a client's <c>PORT 192,0,2,2,195,80</c> on a MASQUERADE'd control
/// connection. The helper parses it, registers the expectation of the data connection (replacing the
/// previous one: the FTP policy allows one), and the engine rewrites the address to the router's
/// (the payload grows by 3 bytes), recomputes the TCP checksum and records the sequence adjustment,
/// which every later segment then carries.
/// </summary>
/// <remarks>
/// The helper only reads a segment that starts right after a newline it saw in that direction, so the
/// commands are consecutive segments of one stream: a fresh engine and control connection per invocation
/// (not timed; handshake with window scaling, the server's banner, the client's USER), then
/// <see cref="Commands"/> PORT segments at consecutive sequence numbers, all inside the server's window.
/// With one invocation per iteration, many warm-up iterations are needed for the JIT to reach its optimised
/// tier; the heap is collected after each set-up (untimed) so that its garbage is not collected on the clock.
/// Results differ more from one process to the next than within one, so three processes are measured.
/// </remarks>
[InvocationCount(1)]
[WarmupCount(50)]
[IterationCount(15)]
[LaunchCount(3)]
public class FtpPortRewrite
{
    /// <summary>PORT commands per invocation (23 bytes each: about 736 KiB of stream, inside the 8 MiB scaled window).</summary>
    public const int Commands = 32_768;

    private const ushort ClientPort = 40021;
    private const uint ClientIsn = 0x3000_0000;
    private const uint ServerIsn = 0x9000_0000;

    private static readonly byte[] Banner = Encoding.ASCII.GetBytes("220 ready\r\n");
    private static readonly byte[] User = Encoding.ASCII.GetBytes("USER x\r\n");
    private static readonly byte[] Port = Encoding.ASCII.GetBytes("PORT 192,0,2,2,195,80\r\n");
    private static readonly byte[] TranslatedPort = Encoding.ASCII.GetBytes("PORT 198,51,100,1,195,80\r\n");

    // One invoker for the process, as in offloadd: its executor thread is reused from call to call.
    private static readonly ContainedHelperInvoker PluginInvoker = new(TimeSpan.FromMilliseconds(50), 16 << 20);

    private readonly byte[] _buffer = new byte[Lab.BufferSize];
    private byte[][] _commands = null!;
    private ConntrackEngine _engine = null!;

    private static uint FirstCommandSeq => ClientIsn + 1 + (uint)User.Length;

    private static uint ServerAck => ServerIsn + 1 + (uint)Banner.Length;

    [GlobalSetup]
    public void Setup()
    {
        _commands = new byte[Commands][];
        for (int i = 0; i < Commands; i++)
        {
            _commands[i] = TcpPackets.Build(
                Lab.Client, ClientPort, Lab.Server, 21, FirstCommandSeq + (uint)(i * Port.Length), ServerAck, TcpFlags.Ack | TcpFlags.Psh, 502, default, Port);
        }

        // A dry run: the first two commands must come out rewritten, the second one shifted by the first's growth.
        var engine = NewControlConnection(ftpHelper: true);
        var first = Lab.ForwardOrThrow(engine, _commands[0], Lab.Lan);
        var second = Lab.ForwardOrThrow(engine, _commands[1], Lab.Lan);
        int growth = TranslatedPort.Length - Port.Length;
        if (!TcpPackets.Payload(first).SequenceEqual(TranslatedPort) || !Lab.ChecksumsAreValid(first)
            || !TcpPackets.Payload(second).SequenceEqual(TranslatedPort) || !Lab.ChecksumsAreValid(second)
            || TcpPackets.Seq(second) != FirstCommandSeq + (uint)Port.Length + (uint)growth
            || engine[EngineCounter.ExpectationsCreated] != 2 || engine.Expectations.Count != 1)
        {
            throw new InvalidOperationException($"PORT is not rewritten as expected: {Lab.DescribeCounters(engine)}");
        }
    }

    [IterationSetup(Target = nameof(WithoutHelper))]
    public void FreshConnectionWithoutHelper()
    {
        _engine = NewControlConnection(ftpHelper: false);
        GC.Collect();
    }

    [IterationSetup(Target = nameof(FtpHelperRewritesPort))]
    public void FreshConnectionWithHelper()
    {
        _engine = NewControlConnection(ftpHelper: true);
        GC.Collect();
    }

    [IterationSetup(Target = nameof(FtpHelperAsPlugin))]
    public void FreshConnectionWithPluginHelper()
    {
        _engine = NewControlConnection(ftpHelper: true, asPlugin: true);
        GC.Collect();
    }

    [IterationCleanup(Targets = [nameof(FtpHelperRewritesPort), nameof(FtpHelperAsPlugin)])]
    public void CheckEveryCommandRewritten()
    {
        if (_engine[EngineCounter.PayloadRewrites] != Commands || _engine[EngineCounter.ExpectationsCreated] != Commands
            || _engine[EngineCounter.PacketsDropped] != 0)
        {
            throw new InvalidOperationException($"Not every PORT was rewritten: {Lab.DescribeCounters(_engine)}");
        }
    }

    [IterationCleanup(Target = nameof(WithoutHelper))]
    public void CheckEveryCommandForwarded()
    {
        if (_engine[EngineCounter.PacketsDropped] != 0)
        {
            throw new InvalidOperationException($"Packets were dropped: {Lab.DescribeCounters(_engine)}");
        }
    }

    /// <summary>Baseline: the same segments on the same kind of connection, without a helper (NAT only).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Commands)]
    public int WithoutHelper() => SendCommands();

    [Benchmark(OperationsPerInvoke = Commands)]
    public int FtpHelperRewritesPort() => SendCommands();

    /// <summary>The same helper loaded as a plugin would be: each call handed to the executor thread, under budgets.</summary>
    [Benchmark(OperationsPerInvoke = Commands)]
    public int FtpHelperAsPlugin() => SendCommands();

    private int SendCommands() => Lab.ForwardEach(_engine, _commands, _buffer, Lab.Lan);

    /// <summary>An engine with one established control connection whose client has sent a complete line (USER).</summary>
    private static ConntrackEngine NewControlConnection(bool ftpHelper, bool asPlugin = false)
    {
        var engine = asPlugin
            ? Lab.CreateEngine(maxConnections: 4096, ftpHelper: true, ftpAs: new PluginFtpHelper(), invoker: PluginInvoker)
            : Lab.CreateEngine(maxConnections: 4096, ftpHelper: ftpHelper);
        Lab.ForwardOrThrow(engine, TcpPackets.Build(Lab.Client, ClientPort, Lab.Server, 21, ClientIsn, 0, TcpFlags.Syn, 64240, TcpPackets.LinuxSynOptions), Lab.Lan);
        Lab.ForwardOrThrow(engine, TcpPackets.Build(Lab.Server, 21, Lab.WanRouter, ClientPort, ServerIsn, ClientIsn + 1, TcpFlags.Syn | TcpFlags.Ack, 65160, TcpPackets.LinuxSynOptions), Lab.Wan);
        Lab.ForwardOrThrow(engine, TcpPackets.Build(Lab.Client, ClientPort, Lab.Server, 21, ClientIsn + 1, ServerIsn + 1, TcpFlags.Ack, 502), Lab.Lan);

        // The banner opens the client's window to its scaled size (65535 << 7).
        Lab.ForwardOrThrow(engine, TcpPackets.Build(Lab.Server, 21, Lab.WanRouter, ClientPort, ServerIsn + 1, ClientIsn + 1, TcpFlags.Ack | TcpFlags.Psh, 65535, default, Banner), Lab.Wan);
        Lab.ForwardOrThrow(engine, TcpPackets.Build(Lab.Client, ClientPort, Lab.Server, 21, ClientIsn + 1, ServerAck, TcpFlags.Ack | TcpFlags.Psh, 502, default, User), Lab.Lan);
        return engine;
    }
}

/// <summary>The FTP helper in a type of this assembly: to the invoker, a plugin (only the built-ins are called directly).</summary>
public sealed class PluginFtpHelper : ConntrackHelper
{
    private readonly FtpHelper _inner = new();

    public PluginFtpHelper()
        : base("ftp", FtpHelper.DefaultPolicy) => Ports = [FtpHelper.DefaultPort];

    public override HelperVerdict Help(ref HelperContext context) => _inner.Help(ref context);
}
