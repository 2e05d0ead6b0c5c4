using System.Runtime.CompilerServices;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Routing;
using Offload.Plugins;
using Offload.Rules;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Daemon.Tests;

/// <summary>
/// A plugin directory (in a directory strict modes accept, see <see cref="CleanDirectory"/>), a catalog, the budgeted invoker and an engine built the way offloadd
/// builds it, with a manager to load, reload and unload plugins; and a TCP conversation to drive through the engine.
/// </summary>
internal sealed class PluginRig : IDisposable
{
    public const string Client = "192.168.1.10";
    public const string Server = "203.0.113.50";

    private readonly OffloadConfig _config;
    private ushort _nextClientPort = 40000;

    /// <summary>The daemon's default call budget, for the tests of the budget itself.</summary>
    public static readonly TimeSpan ProductionCallBudget = TimeSpan.FromMilliseconds(50);

    /// <param name="callBudget">
    /// A plugin call's time budget. Unless a test is about the budget, a generous one: on a busy 2-core machine a
    /// healthy call (its first, which compiles the plugin's code) can overrun 50 ms, and a test of something else
    /// would then see its helper disabled for a reason it does not test.
    /// </param>
    /// <param name="modes">The strict modes plugins are checked with: the production rule unless given.</param>
    public PluginRig(TimeSpan? callBudget = null, long allocationBudget = 16L * 1024 * 1024, OffloadConfig? config = null, Action<string>? setup = null, StrictModes? modes = null)
    {
        Directory = CleanDirectory.Create("plugins-");
        setup?.Invoke(Directory);
        _config = config ?? new OffloadConfig([], [], [], [], new ConntrackConfig(), "test.yaml");
        Invoker = new ContainedHelperInvoker(callBudget ?? TimeSpan.FromSeconds(5), allocationBudget);
        Failures = [];
        Catalog = HelperCatalog.Load(Directory, e => Failures.Add(e.Message), modes);
        Engine = new ConntrackEngine(Build(dropUnknown: false), Clock) { Observer = Events };
        Manager = new HelperManager(Catalog, Engine, EngineLock, () => Build(dropUnknown: true));
    }

    public string Directory { get; }

    public List<string> Failures { get; }

    public ManualClock Clock { get; } = new() { NowNanoseconds = 1_000_000_000_000 };

    public object EngineLock { get; } = new();

    public ContainedHelperInvoker Invoker { get; }

    public HelperCatalog Catalog { get; }

    public ConntrackEngine Engine { get; }

    public HelperManager Manager { get; }

    public EventLog Events { get; } = new();

    private EngineOptions Build(bool dropUnknown) =>
        EngineBuilder.Build(Catalog.Effective(_config, dropUnknown), new StaticNetworkInterfaces(), Catalog.Factory, deterministicSeed: 7, helperInvoker: Invoker);

    /// <summary>Writes a plugin file into the directory and returns its path.</summary>
    public string Write(string file, string text)
    {
        string path = Path.Combine(Directory, file);
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>Compiles C# text to a .dll in the directory, as a helper author's build would, and returns its path.</summary>
    public string WriteDll(string file, string source)
    {
        string path = Path.Combine(Directory, file);
        File.WriteAllBytes(path, PluginLoader.Compile(Path.ChangeExtension(path, ".cs"), System.Text.Encoding.UTF8.GetBytes(source)));
        return path;
    }

    /// <summary>One packet through both hooks (client side in on 1, out on 2; the server's the other way).</summary>
    public Verdict Send(byte[] packet, bool fromClient)
    {
        var buffer = new byte[packet.Length + 512];
        packet.CopyTo(buffer, 0);
        var ctx = new PacketContext(buffer, packet.Length, fromClient ? 1 : 2);
        lock (EngineLock)
        {
            var verdict = Engine.PreRouting(ref ctx);
            if (verdict != Verdict.Accept)
            {
                return verdict;
            }

            ctx.OutInterface = fromClient ? 2 : 1;
            return Engine.PostRouting(ref ctx);
        }
    }

    /// <summary>A TCP connection from the client to the server's port, handshake done.</summary>
    public Conversation Connect(ushort serverPort = PluginSources.Port) => new(this, _nextClientPort++, serverPort);

    public Connection? Find(Conversation c) =>
        Engine.Connections.Entries().FirstOrDefault(x => x.Original.SourcePort == c.ClientPort && x.Original.DestinationPort == c.ServerPort);

    public int Expectations => Engine.Expectations.Count;

    /// <summary>Runs the GC until the weak reference's target is gone; false if it outlives ten rounds.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static bool Collected(WeakReference weak)
    {
        for (int i = 0; i < 10 && weak.IsAlive; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        return !weak.IsAlive;
    }

    public void Dispose()
    {
        Invoker.Dispose();
        CleanDirectory.Delete(Directory);
    }

    /// <summary>A TCP conversation whose sequence numbers the rig keeps.</summary>
    internal sealed class Conversation
    {
        private readonly PluginRig _rig;
        private uint _clientSeq = 1000;
        private uint _serverSeq = 5000;

        public Conversation(PluginRig rig, ushort clientPort, ushort serverPort)
        {
            _rig = rig;
            ClientPort = clientPort;
            ServerPort = serverPort;
            Handshake = [
                rig.Send(TcpPacket(Client, clientPort, Server, serverPort, Syn, _clientSeq), fromClient: true),
                rig.Send(TcpPacket(Server, serverPort, Client, clientPort, Syn | Ack, _serverSeq, _clientSeq + 1), fromClient: false),
                rig.Send(TcpPacket(Client, clientPort, Server, serverPort, Ack, _clientSeq + 1, _serverSeq + 1), fromClient: true),
            ];
            _clientSeq++;
            _serverSeq++;
        }

        public ushort ClientPort { get; }

        public ushort ServerPort { get; }

        public Verdict[] Handshake { get; }

        /// <summary>Data from the client to the server.</summary>
        public Verdict Say(string text)
        {
            var verdict = _rig.Send(TcpPacket(Client, ClientPort, Server, ServerPort, Psh | Ack, _clientSeq, _serverSeq, Ascii(text)), fromClient: true);
            _clientSeq += (uint)text.Length;
            return verdict;
        }

        /// <summary>Data from the server to the client.</summary>
        public Verdict Answer(string text)
        {
            var verdict = _rig.Send(TcpPacket(Server, ServerPort, Client, ClientPort, Psh | Ack, _serverSeq, _clientSeq, Ascii(text)), fromClient: false);
            _serverSeq += (uint)text.Length;
            return verdict;
        }
    }
}

/// <summary>What the engine told its observer about helpers.</summary>
internal sealed class EventLog : IConntrackObserver
{
    public List<string> Lines { get; } = [];

    public List<(string Helper, string Reason)> Disabled { get; } = [];

    public void HelperDisabled(ConntrackHelper helper, Exception error) => Disabled.Add((helper.Name, $"{error.GetType().Name}: {error.Message}"));

    public void HelperLogged(ConntrackHelper helper, HelperLogLevel level, string message) => Lines.Add($"{helper.Name}: {message}");
}
