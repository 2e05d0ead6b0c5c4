using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using Offload.Daemon.Plugins;
using Offload.Daemon.Replication;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Routing;
using Offload.Engine.Sharding;
using Offload.Interop.Nfqueue;
using Offload.Plugins;
using Offload.Rules;

namespace Offload.Daemon;

/// <summary>
/// offloadd put together: the engine, its two queues (before and after routing), the control socket, and the
/// reactions to signals (reload on SIGHUP, stop on SIGTERM/SIGINT).
/// </summary>
internal sealed class Daemon : IDisposable
{
    private readonly string _configPath;
    private readonly string _socketPath;
    private readonly bool _manageRules;
    private readonly DaemonOptions _options;
    private readonly ILogger _logger;
    private readonly LiveNetworkInterfaces _interfaces = new();
    private readonly ManualResetEventSlim _stopped = new();
    private readonly List<QueueWorker> _workers = [];
    private readonly SystemdNotifier _systemd = new(); // sd_notify: Type=notify in offloadd.service
    private OffloadConfig _config;
    private ConntrackEngine? _engine; // the first shard's: what runs in one shard only (replication, helpers mode's sets)
    private object _engineLock = new();
    private ManualClock _clock = new() { NowNanoseconds = SystemClock.Instance.NowNanoseconds };
    private EngineShard[] _shards = [];
    private ShardDirectory? _directory;
    private volatile bool _started;
    private ControlServer? _control;
    private IpsetSteering? _ipset;
    private Handback.HandbackManager? _handback;
    private bool _rulesApplied;
    private bool _handbackRulesApplied; // with flows: all, whether the applied rules let handed-back flows past
    private SteeringConfig? _runningSteering;
    private HelperCatalog _catalog = new();
    private ContainedHelperInvoker? _invoker;
    private readonly List<ContainedHelperInvoker> _shardInvokers = []; // one per further shard: an invoker runs one call at a time
    private HelperManager? _helpers;
    private StateKeeper? _state;
    private ReplicationService? _replication;

    public Daemon(OffloadConfig config, string configPath, DaemonOptions options, ILogger logger)
    {
        _config = config;
        _configPath = configPath;
        _options = options;
        _socketPath = options.SocketPath;
        _manageRules = options.ApplyRules;
        _logger = logger;
    }

    /// <summary>Builds the engine options from a configuration and the helpers known (also what <c>--check</c> runs).</summary>
    /// <param name="config">The configuration.</param>
    /// <param name="interfaces">The interfaces NAT rules name.</param>
    /// <param name="catalog">The helpers known: built-in and loaded plugins.</param>
    /// <param name="invoker">How helper code is called (plugins under budgets).</param>
    /// <param name="dropUnknown">Leave out entries naming a plugin that is gone (after an unload) instead of failing on them.</param>
    public static EngineOptions BuildOptions(OffloadConfig config, Engine.Routing.INetworkInterfaces interfaces, HelperCatalog catalog, IHelperInvoker? invoker = null, bool dropUnknown = false) =>
        EngineBuilder.Build(catalog.Effective(config, dropUnknown), interfaces, catalog.Factory, helperInvoker: invoker);

    private EngineOptions BuildOptions(OffloadConfig config, bool dropUnknown = false) => BuildOptions(config, _interfaces, _catalog, _invoker, dropUnknown);

    /// <summary>Binds the queues, starts the workers and the control socket. Throws when a queue cannot be bound.</summary>
    public void Start()
    {
        var steering = _config.Steering ?? throw new ConfigException(_config.Source, 0, 0, "offloadd needs a steering: section (which queues to serve)");
        _catalog = PluginSetup.LoadCatalog(_config, _logger);
        _invoker = PluginSetup.Invoker(_config);
        // One engine per shard, each with its own queues, thread, lock and clock, sharing only the directory where
        // they find what the kernel queued to the wrong one (docs/architecture.md, "Every core").
        int shards = ShardCount.Effective(_config);
        var engineOptions = BuildOptions(_config);
        if (shards > 1)
        {
            // The table's size is the router's (the kernel's nf_conntrack_max): the shards share it out.
            engineOptions = engineOptions with
            {
                MaxConnections = Math.Max(1024, engineOptions.MaxConnections / shards),
                MaxExpectations = engineOptions.MaxExpectations > 0 ? Math.Max(16, engineOptions.MaxExpectations / shards) : 0,
            };
        }

        _directory = shards > 1 ? new ShardDirectory(shards) : null;
        _shards = [.. Enumerable.Range(0, shards).Select(i =>
        {
            // Reading the system clock costs a fifth of a packet's path: the workers read it once per burst instead.
            var clock = new ManualClock { NowNanoseconds = SystemClock.Instance.NowNanoseconds };
            var options = shards == 1 ? engineOptions : engineOptions with { Shard = i, Shards = shards, Directory = _directory, HelperInvoker = i == 0 ? _invoker : ShardInvoker() };
            return new EngineShard(i, new ConntrackEngine(options, clock), clock);
        })];
        _engine = _shards[0].Engine;
        _engineLock = _shards[0].Lock;
        _clock = _shards[0].Clock;
        _helpers = new HelperManager(_catalog, [.. _shards.Select(s => (s.Engine, s.Lock))], () => BuildOptions(_config, dropUnknown: true));
        _interfaces.Changed += OnInterfacesChanged;

        // The state of the daemon that ran before (a restart, an upgrade, a crash), before any packet is read.
        if (_options.StatePath is { } statePath)
        {
            _state = new StateKeeper(statePath, _options.CheckpointPeriod, _shards, _logger);
            _state.Restore();
        }

        _replication = ReplicationService.Create(_config.Replication, _engine, _clock, _engineLock, _logger);
        var options = new NfQueueOptions { FailOpen = steering.FailOpen, Gso = steering.Gso, MaxQueueLength = 4096 };
        var marker = new StateMarker(steering);
        foreach (var shard in _shards)
        {
            foreach (var (role, first) in new[] { ("pre", steering.QueuePre), ("post", steering.QueuePost) })
            {
                var queue = NfQueue.Open((ushort)(first + shard.Index), options);
                _workers.Add(new QueueWorker(role, queue, shard, _shards, marker, _logger));
            }
        }

        if (_manageRules)
        {
            SteeringApplier.Apply(_catalog.Effective(_config, dropUnknown: false), _catalog.Factory);
            _rulesApplied = true;
            _handbackRulesApplied = SteeringRules.HandsBack(_config);
            _runningSteering = steering;
            Log.SteeringApplied(_logger, steering.QueuePre, steering.QueuePost, steering.NatPortMin, steering.NatPortMax, steering.FailOpen ? "open" : "closed");
        }

        if (steering.Flows == SteeredFlows.Helpers)
        {
            // The sets exist now (made by the rules, here or by offloadctl rules apply).
            _ipset = new IpsetSteering(SteeringRules.SetName(steering, 4), SteeringRules.SetName(steering, 6), _logger);
            lock (_engineLock)
            {
                _ipset.Reconcile(_engine);
            }

            foreach (var worker in _workers)
            {
                worker.Steering = _ipset;
            }

        }

        if (_ipset is not null || _shards.Length == 1)
        {
            // With flows: all the hand-back set alone takes a flow out of the steering. Hand-back runs in one shard: a
            // handback section keeps the configuration to one (ShardCount), and a reload cannot change the shards.
            _handback = new Handback.HandbackManager(_ipset, _ipset, steering, _engine, _engineLock, _logger);
            _handback.Configure(_config.Handback);
            _workers.ForEach(w => w.Handback = _handback);
        }

        var observer = ReplicationService.Observe(_replication, new HelperObserver((IConntrackObserver?)_handback ?? _ipset, _catalog, _logger));
        foreach (var shard in _shards)
        {
            shard.Engine.Observer = observer;
        }
        if (_replication is not null)
        {
            _replication.BecameActive = () => _ipset?.Reconcile(_engine); // the connections replicated in, steered by entry
        }

        _control = new ControlServer(_socketPath, Answer, _logger);
        _control.Start();
        foreach (var worker in _workers)
        {
            worker.Start();
        }

        _state?.StartCheckpoints();
        _replication?.Start();

        Log.Ready(_logger, QueueRange(steering.QueuePre), QueueRange(steering.QueuePost), _config.Nat.Count, HelperNames(_catalog.Effective(_config, dropUnknown: false)));
        _started = true;
        _systemd.Ready($"queues {QueueRange(steering.QueuePre)} and {QueueRange(steering.QueuePost)} bound");
    }

    private ContainedHelperInvoker ShardInvoker()
    {
        var invoker = PluginSetup.Invoker(_config);
        _shardInvokers.Add(invoker);
        return invoker;
    }

    /// <summary>A direction's queues: its one queue, or the first to the last of the shards' ("0-3").</summary>
    private string QueueRange(ushort first) =>
        _shards.Length == 1 ? first.ToString(CultureInfo.InvariantCulture) : string.Create(CultureInfo.InvariantCulture, $"{first}-{first + _shards.Length - 1}");

    /// <summary>
    /// Re-reads the configuration and rescans the plugin directory; on success new connections follow them, tracked
    /// ones keep going as they were (a changed plugin's connections move to its new version).
    /// </summary>
    public void Reload()
    {
        if (!_started)
        {
            return; // SIGHUP while starting: the configuration being started is the newest anyway
        }

        using var reloading = _systemd.Reloading(); // READY=1 again when the reload ends, failed or not
        try
        {
            var config = ConfigLoader.LoadFile(_configPath);
            if (ShardCount.Effective(config) is var shards && shards != _shards.Length)
            {
                // The shards are the queues bound at start and the NAT port slices their connections hold.
                throw new ConfigException(config.Source, config.Steering?.Line ?? 0, 1, $"engine shards: {shards} in the configuration, {_shards.Length} running: a change of shards (or of what keeps them at one: helpers mode, replication, the pptp helper) needs a restart, which keeps the connections");
            }

            PluginSetup.Rescan(_helpers!, _logger);
            var options = BuildOptions(config);
            _helpers!.Rebind(options);
            int connections = 0;
            foreach (var shard in _shards)
            {
                lock (shard.Lock)
                {
                    connections += shard.Engine.Connections.Count;
                }
            }

            _config = config;
            RefreshHelperSteering(config);
            AddHandbackSteering(config);
            _handback?.Configure(config.Handback);
            Log.Reloaded(_logger, _configPath, config.Nat.Count, HelperNames(_catalog.Effective(config, dropUnknown: false)), connections);
        }
        catch (ConfigException e)
        {
            Log.ReloadFailed(_logger, _configPath, e.Message);
        }
    }

    /// <summary>
    /// In helpers mode the steering rules name the helpers' ports: after a reload or a plugin loaded, replaced or
    /// removed, they are rewritten for the helpers bound now. Only the helper ports change: the queues and the rest of
    /// the steering stay as they were when the queues were bound (a new steering section needs a restart).
    /// </summary>
    private void RefreshHelperSteering(OffloadConfig config)
    {
        if (!_rulesApplied || _runningSteering is not { Flows: SteeredFlows.Helpers })
        {
            return;
        }

        try
        {
            var effective = _catalog.Effective(config, dropUnknown: true) with { Steering = _runningSteering };
            SteeringApplier.Apply(effective, _catalog.Factory);
            var ports = SteeringRules.HelperPorts(effective, _catalog.Factory);
            Log.SteeringRefreshed(_logger, ports.Count == 0 ? "none" : string.Join(", ", ports.Select(p => new HelperPort(p.Protocol, p.Port).ToString())));
        }
        catch (InvalidOperationException e)
        {
            Log.SteeringRefreshFailed(_logger, e.Message);
        }
    }

    /// <summary>
    /// With flows: all the rules stay as they were applied at start, but a reload that switches hand-back on needs the
    /// hand-back set and the rules that let its flows past the queues: they are added then. Switched off, they stay, so
    /// that the flows the kernel has end there (the set empties as they do).
    /// </summary>
    private void AddHandbackSteering(OffloadConfig config)
    {
        if (!_rulesApplied || _handbackRulesApplied || _runningSteering is not { Flows: SteeredFlows.All } || !SteeringRules.HandsBack(config))
        {
            return;
        }

        try
        {
            SteeringApplier.Apply(_catalog.Effective(config, dropUnknown: true) with { Steering = _runningSteering }, _catalog.Factory);
            _handbackRulesApplied = true;
            Log.HandbackSteeringAdded(_logger);
        }
        catch (InvalidOperationException e)
        {
            Log.HandbackUnavailable(_logger, $"the steering rules ({e.Message}); apply them (offloadctl rules apply)");
        }
    }

    public void RequestStop(string signal)
    {
        Log.Stopping(_logger, signal);
        _systemd.Stopping($"stopping ({signal})");
        _stopped.Set();
    }

    public void WaitForStop() => _stopped.Wait();

    private void OnInterfacesChanged()
    {
        // Rules name interfaces; their indexes may have changed with the links.
        _helpers!.Rebind();
        int forgotten = 0;
        foreach (var shard in _shards)
        {
            lock (shard.Lock)
            {
                forgotten += shard.Engine.ForgetMasqueradedToGoneAddresses((index, family, address) => _interfaces.HasAddress(index, family, address));
            }
        }

        Log.InterfacesChanged(_logger, forgotten);
    }

    /// <summary>The helpers of a configuration for a log line: each with the protocols and ports it is bound at ("none" when there are none).</summary>
    private string HelperNames(OffloadConfig config) =>
        config.Helpers.Count == 0 ? "none" : string.Join(", ", config.Helpers.Select(h => $"{h.Name} ({BoundAt(h)})"));

    // An entry without ports: or protocol: takes the helper's own, which only the helper knows.
    private string BoundAt(HelperConfig entry) => _catalog.Create(entry) is { } helper
        ? string.Join(',', entry.ProtocolsOf(helper).SelectMany(protocol => entry.PortsOf(helper).Select(port => new HelperPort(protocol, port).ToString()))) is { Length: > 0 } ports ? ports : "no ports"
        : "not loaded";

    /// <summary>Answers a control-socket request.</summary>
    private string Answer(string request)
    {
        var text = new StringBuilder();
        switch (request)
        {
            case "conntrack list":
            {
                // Copied under each shard's lock, formatted after it: the queues wait for the copy only, never for the text.
                foreach (var shard in _shards)
                {
                    List<ConnectionView> connections;
                    long now;
                    lock (shard.Lock)
                    {
                        now = shard.Engine.Clock.NowNanoseconds;
                        connections = new List<ConnectionView>(shard.Engine.Connections.Count);
                        foreach (var connection in shard.Engine.Connections.Entries())
                        {
                            connections.Add(ConnectionView.Of(connection));
                        }
                    }

                    foreach (var connection in connections)
                    {
                        text.Append(ConnectionFormatter.Format(connection, now)).Append('\n');
                    }
                }

                return text.ToString();
            }

            case "expect list":
                // As conntrack -L expect: the seconds left first, then the master's helper (ctnetlink's
                // CTA_EXPECT_HELP_NAME: the helper that announced it), its class (its name when that helper declared
                // classes, as /proc/net/nf_conntrack_expect's "sip/audio"), and last the helper the expected connection
                // will get, when it gets one (attach=h245: an H.245 connection that h323 announced).
                text.Append("TIMEOUT PROTO EXPECTED MASTER HELPER\n");
                foreach (var shard in _shards)
                {
                    lock (shard.Lock)
                    {
                        long now = shard.Engine.Clock.NowNanoseconds;
                        foreach (var e in shard.Engine.Expectations.Entries())
                        {
                            long seconds = Math.Max(0, (e.ExpiresAt - now) / 1_000_000_000L);
                            text.Append(CultureInfo.InvariantCulture, $"{seconds} proto={e.Tuple.Protocol} {e} helper={e.Master.Helper?.Name ?? "-"} class={e.Master.Helper?.ClassName(e.Class) ?? e.Class.ToString(CultureInfo.InvariantCulture)}");
                            if (e.Helper is not null)
                            {
                                text.Append(" attach=").Append(e.Helper.Name);
                            }

                            text.Append('\n');
                        }
                    }
                }

                return text.ToString();

            case "stats":
                return Statistics();

            case "state save":
                return _state is { } state
                    ? (state.Save("on request") ? state.Statistics() : throw new InvalidOperationException("the snapshot could not be written (see the log)"))
                    : throw new InvalidOperationException("offloadd runs without --state: nothing is saved");

            case "helper list":
                return PluginSetup.Answer(_helpers!, request, _logger);

            case var replication when replication.StartsWith("replication ", StringComparison.Ordinal):
                return _replication?.Answer(replication) ?? throw new InvalidOperationException("offloadd runs without a replication: section");

            case var helper when helper.StartsWith("helper ", StringComparison.Ordinal):
                string answer = PluginSetup.Answer(_helpers!, helper, _logger);
                RefreshHelperSteering(_config);
                return answer;

            default:
                throw new ArgumentException($"unknown request '{request}' (conntrack list, expect list, stats, state save, helper list|load|unload|reload, replication status|role)");
        }
    }

    private string Statistics()
    {
        var text = new StringBuilder();
        foreach (var w in _workers)
        {
            var s = w.Statistics;
            var c = w.Counters;
            text.Append(CultureInfo.InvariantCulture, $"queue {w.QueueNumber} ({w.Role} routing): packets {s.Packets}, accepted {s.Accepted}, accepted changed {s.AcceptedChanged}, dropped {s.Dropped} (truncated {s.Truncated}, engine faults {s.EngineErrors}), batches {s.Batches} (lookups staged {s.StagedBatches})");
            if (_shards.Length > 1)
            {
                text.Append(CultureInfo.InvariantCulture, $", shard {w.Shard}, handed to another shard {s.HandedOver}");
            }

            text.Append('\n');
            text.Append(CultureInfo.InvariantCulture, $"  netlink: datagrams {c.Datagrams}, sends {c.Sends}, verdict messages {c.VerdictMessages}, batch verdicts {c.BatchVerdictMessages}, ENOBUFS {c.NoBufferEvents}, malformed {c.Malformed}, verdict errors {c.VerdictErrors}\n");
        }

        foreach (var line in KernelQueueCounters())
        {
            text.Append("  kernel: ").Append(line).Append('\n');
        }

        text.Append(CultureInfo.InvariantCulture, $"plugins: {_catalog.Plugins.Count} loaded, {_catalog.Modes.Refusals} refused by strict modes (owner or mode of the file or a directory above it)\n");
        if (_control is { } control)
        {
            text.Append(CultureInfo.InvariantCulture, $"control: {control.Served} requests answered, {control.RefusedPeers} clients refused (not root or the daemon's user), {control.BadRequests} bad requests (too long, malformed, too slow, or too many at once)\n");
        }

        if (_state is { } keeper)
        {
            text.Append(keeper.Statistics());
        }

        // The table and counters of all shards together, and with several shards each one's share.
        var totals = new long[Enum.GetValues<EngineCounter>().Length];
        int connections = 0, capacity = 0, expectations = 0;
        long entryBytes = 0;
        var perShard = new StringBuilder();
        foreach (var shard in _shards)
        {
            lock (shard.Lock)
            {
                var engine = shard.Engine;
                connections += engine.Connections.Count;
                capacity += engine.Connections.Capacity;
                entryBytes += engine.Connections.EntryBytes;
                expectations += engine.Expectations.Count;
                var counters = engine.Counters;
                for (int i = 0; i < totals.Length && i < counters.Length; i++)
                {
                    totals[i] += counters[i];
                }

                perShard.Append(CultureInfo.InvariantCulture, $"shard {shard.Index}: {engine.Connections.Count} connections of {engine.Connections.Capacity}, {engine.Expectations.Count} expectations, packets in {engine[EngineCounter.PacketsIn]}, handed in by other shards {shard.HandedIn}\n");
            }
        }

        text.Append(CultureInfo.InvariantCulture, $"table: {connections} connections of {capacity}, {expectations} expectations, {entryBytes / 1e6:0.#} MB of entries\n");
        if (_directory is { } directory)
        {
            text.Append(CultureInfo.InvariantCulture, $"shards: {_shards.Length}; directory: {directory.PublishedTuples} tuples, {directory.PublishedExpectations} expectations published\n");
            text.Append(perShard);
        }

        if (_ipset is { } ipset)
        {
            lock (_engineLock)
            {
                text.Append(CultureInfo.InvariantCulture, $"ipset: {ipset.Steered} flows steered by entry, entries added {ipset.Added}, deleted {ipset.Deleted}, failed {ipset.Failed}\n");
            }
        }

        text.Append(_handback?.Statistics());
        foreach (var counter in Enum.GetValues<EngineCounter>())
        {
            long value = totals[(int)counter];
            if (value != 0)
            {
                text.Append(CultureInfo.InvariantCulture, $"  {counter,-34} {value}\n");
            }
        }

        return text.ToString();
    }

    /// <summary>The kernel's own counters for our queues, from /proc/net/netfilter/nfnetlink_queue, with their columns named.</summary>
    private IEnumerable<string> KernelQueueCounters()
    {
        const string path = "/proc/net/netfilter/nfnetlink_queue";
        string[] lines;
        bool readable = true;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (IOException)
        {
            yield break;
        }
        catch (UnauthorizedAccessException)
        {
            // The kernel makes it root's alone (0440): a daemon run as a user of its own cannot see its queues' drops.
            lines = [];
            readable = false;
        }

        if (!readable)
        {
            yield return $"counters unreadable ({path} is root's only)";
            yield break;
        }

        foreach (var line in lines)
        {
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 8 && _workers.Any(w => w.QueueNumber.ToString(CultureInfo.InvariantCulture) == f[0]))
            {
                yield return $"queue {f[0]}: waiting {f[2]}, dropped (queue full) {f[5]}, dropped (socket full) {f[6]}, last id {f[7]}";
            }
        }
    }

    public void Dispose()
    {
        foreach (var w in _workers)
        {
            w.Stop();
        }

        foreach (var w in _workers)
        {
            w.Dispose();
        }

        _control?.Dispose();
        _replication?.Dispose();
        _handback?.Dispose();

        // The queues read nothing more: no packet changes the state after this snapshot.
        if (_state is { } state)
        {
            state.Dispose();
            if (_started)
            {
                state.Save("stop");
            }
        }

        foreach (var shard in _shards)
        {
            lock (shard.Lock)
            {
                shard.Engine.Observer = null;
            }
        }

        lock (_engineLock)
        {
            _ipset?.Dispose();
        }

        if (_rulesApplied && _options.RemoveRulesOnStop)
        {
            try
            {
                SteeringApplier.Remove(_config.Steering?.SetPrefix ?? "offload");
                Log.SteeringRemoved(_logger);
            }
            catch (InvalidOperationException e)
            {
                Log.ControlError(_logger, e.Message);
            }
        }

        _interfaces.Dispose();
        _invoker?.Dispose();
        foreach (var invoker in _shardInvokers)
        {
            invoker.Dispose();
        }

        if (_shards.Length > 0)
        {
            Log.Stopped(_logger, _shards.Sum(s => s.Engine[EngineCounter.PacketsIn]), _shards.Sum(s => s.Engine.Connections.Count));
        }
    }
}
