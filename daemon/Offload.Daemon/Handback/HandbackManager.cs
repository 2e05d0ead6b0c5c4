using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Expectations;
using Offload.Interop;
using Offload.Interop.Ctnetlink;
using Offload.Interop.Ipset;
using Offload.Rules;

namespace Offload.Daemon.Handback;

/// <summary>
/// Hands established expected connections of chosen helpers (an FTP data connection, say) to the kernel's conntrack:
/// the kernel gets an entry with offloadd's NAT over ctnetlink, then the flow leaves offloadd's steering, so that the
/// rest of it is forwarded and translated by the kernel at kernel speed. The helpers' control connections stay here.
/// </summary>
/// <remarks>
/// <para>
/// Order is what keeps every packet translated: the kernel's entry is created and acknowledged first (until then the
/// flow's packets still come to offloadd, which translates them); only then are its packets from outside let past the
/// NAT-replies queue rules (the hand-back set) and, in helpers mode, its steering entry deleted; with <c>flows: all</c>
/// its packets from the LAN are let past the rules that untrack and queue every flow by a second entry of the same
/// set. A packet already queued meanwhile is translated by offloadd as before, with the same NAT as the kernel's entry:
/// nothing is lost and nothing leaves untranslated in between.
/// </para>
/// <para>
/// offloadd keeps its own entry, marked handed back, until the kernel's goes (its destroy event; after lost events, a
/// look-up), then removes it. That entry translates the stragglers and keeps the NAT port taken, so that no new flow
/// of offloadd's gets the port while the kernel still uses it.
/// </para>
/// <para>
/// Threads: <see cref="Saw"/> and the observer methods run on the queue workers under the engine's lock and only note;
/// <see cref="Flush"/> (the workers, after each burst, outside that lock) speaks to the kernel; the events thread
/// waits for destroy events and takes the engine's lock to remove an entry.
/// </para>
/// </remarks>
internal sealed class HandbackManager : IConntrackObserver, IDisposable
{
    /// <summary>
    /// How long offloadd's entry of a handed-back flow is kept past now, renewed every <see cref="RenewEvery"/> while the
    /// kernel has the flow: its packets no longer pass here to keep it alive, and it must not expire (and free its NAT
    /// port and its way past the queue rules) while the kernel still forwards the flow.
    /// </summary>
    private static readonly TimeSpan KeepFor = TimeSpan.FromMinutes(2);

    private static readonly TimeSpan RenewEvery = TimeSpan.FromSeconds(20);

    /// <summary>How often every handed-back flow is looked up in the kernel's table, should a destroy event have gone missing unnoticed.</summary>
    private static readonly TimeSpan AuditEvery = TimeSpan.FromMinutes(1);

    private readonly IConntrackObserver? _inner;
    private readonly IpsetSteering? _steering; // helpers mode's; null with flows: all
    private readonly bool _allFlows;
    private readonly ConntrackEngine _engine;
    private readonly object _engineLock;
    private readonly ILogger _logger;
    private readonly string _set4;
    private readonly string _set6;
    private readonly Func<IHandbackKernel> _openKernel;
    private readonly Lock _gate = new();
    private readonly Lock _sendOrder = new();

    private readonly Dictionary<Connection, FlowState> _flows = [];
    private readonly Dictionary<CtnlTuple, Connection> _byKernelTuple = [];
    private readonly List<Connection> _pending = [];
    private readonly List<IpsetOperation> _setOperations = [];
    private IpsetOperation[] _sending = new IpsetOperation[16];
    private Errno[] _results = new Errno[16];

    private volatile Settings _settings = Settings.Off;
    private IHandbackKernel? _kernel;
    private Thread? _eventThread;
    private volatile bool _stopping;
    private volatile bool _auditDue;

    /// <param name="inner">The observer the engine's events go on to.</param>
    /// <param name="steering">Helpers mode's per-flow steering; null with <c>flows: all</c>, where the hand-back set alone lets a flow's packets past the rules.</param>
    /// <param name="steeringConfig">The running steering section (its set prefix).</param>
    /// <param name="engine">The one engine shard (hand-back runs in one).</param>
    /// <param name="engineLock">That engine's lock.</param>
    /// <param name="logger">The daemon's logger.</param>
    public HandbackManager(IConntrackObserver? inner, IpsetSteering? steering, SteeringConfig steeringConfig, ConntrackEngine engine, object engineLock, ILogger logger)
        : this(inner, steering, steeringConfig, engine, engineLock, logger, static () => new HandbackKernel())
    {
    }

    internal HandbackManager(IConntrackObserver? inner, IpsetSteering? steering, SteeringConfig steeringConfig, ConntrackEngine engine, object engineLock, ILogger logger, Func<IHandbackKernel> openKernel)
    {
        _inner = inner;
        _steering = steering;
        _allFlows = steering is null;
        _engine = engine;
        _engineLock = engineLock;
        _logger = logger;
        _set4 = SteeringRules.HandbackSetName(steeringConfig, 4);
        _set6 = SteeringRules.HandbackSetName(steeringConfig, 6);
        _openKernel = openKernel;
    }

    /// <summary>Flows handed to the kernel so far.</summary>
    public long HandedBack { get; private set; }

    /// <summary>Of those, how many found an equal kernel entry there already.</summary>
    public long AlreadyThere { get; private set; }

    /// <summary>Of those, how many replaced a kernel entry with another NAT.</summary>
    public long Replaced { get; private set; }

    /// <summary>Hand-backs the kernel refused (the flow stayed with offloadd).</summary>
    public long Failed { get; private set; }

    /// <summary>Flows kept with offloadd because their entry from the LAN would take their master's packets too (flows: all).</summary>
    public long KeptShared { get; private set; }

    /// <summary>offloadd's entries removed because the kernel's went.</summary>
    public long Withdrawn { get; private set; }

    /// <summary>Flows the kernel has now, whose entries offloadd keeps until it lets them go.</summary>
    public int InKernel
    {
        get
        {
            lock (_gate)
            {
                return _byKernelTuple.Count;
            }
        }
    }

    /// <summary>
    /// Takes a (re)loaded configuration: which helpers' expected connections go to the kernel, after what. Opens the
    /// kernel's sockets and starts the events thread the first time hand-back is on, and empties the hand-back sets
    /// then: at start no flow is the kernel's (the table restored from a snapshot is steered to offloadd again).
    /// </summary>
    public void Configure(HandbackConfig? config)
    {
        var settings = config is { Enabled: true } ? new Settings(true, [.. config.Helpers], config.AfterPackets, config.AfterBytes) : Settings.Off;
        if (settings.Enabled && _kernel is null && !TryOpen())
        {
            settings = Settings.Off;
        }

        bool was = _settings.Enabled;
        _settings = settings;
        if (settings.Enabled)
        {
            Log.HandbackConfigured(_logger, string.Join(", ", settings.Helpers), settings.AfterPackets, settings.AfterBytes);
        }
        else if (was)
        {
            Log.HandbackOff(_logger);
        }
    }

    /// <summary>Opens the sockets and starts the events thread; false (logged) when the kernel refuses, and hand-back stays off.</summary>
    private bool TryOpen()
    {
        try
        {
            _kernel = _openKernel();
            foreach (string set in new[] { _set4, _set6 })
            {
                try
                {
                    _kernel.Flush(set);
                }
                catch (NetlinkException e)
                {
                    // Rules applied by hand for a configuration without hand-back: nothing is handed back until they are.
                    Log.HandbackUnavailable(_logger, $"the set {set} ({e.Message}); apply the rules of this configuration (offloadctl rules apply)");
                }
            }

            _eventThread = new Thread(ReadEvents) { IsBackground = true, Name = "handback-events" };
            _eventThread.Start();
            return true;
        }
        catch (NetlinkException e)
        {
            Log.HandbackUnavailable(_logger, $"ctnetlink ({e.Message}); nothing is handed back");
            _kernel?.Dispose();
            _kernel = null;
            return false;
        }
    }

    /// <summary>
    /// Called for each packet offloadd accepted, on the worker under the engine's lock: counts the packets of an
    /// established expected connection of a chosen helper, and notes it for hand-back once past the threshold.
    /// Cheap for every other packet (a status test).
    /// </summary>
    public void Saw(ref PacketContext ctx)
    {
        if (ctx.Connection is not { } connection || (connection.Status & ConnStatus.Expected) == 0)
        {
            return;
        }

        Settings settings = _settings;
        if (!settings.Enabled || !IsCandidate(connection, settings))
        {
            return;
        }

        lock (_gate)
        {
            ref FlowState state = ref CollectionsMarshal.GetValueRefOrAddDefault(_flows, connection, out _);
            if (state.Stage != Stage.Counting)
            {
                return;
            }

            state.Packets++;
            state.Bytes += ctx.Length;
            if (state.Packets >= settings.AfterPackets && state.Bytes >= settings.AfterBytes)
            {
                state.Entry = EntryOf(connection, _engine.Clock.NowNanoseconds);
                if (_allFlows && connection.Master is { } master && SharesLanEntry(state.Entry, EntryOf(master, _engine.Clock.NowNanoseconds)))
                {
                    state.Stage = Stage.Refused; // stays with offloadd for good
                    KeptShared++;
                    return;
                }

                state.Stage = Stage.Pending;
                _pending.Add(connection);
            }
        }
    }

    /// <summary>
    /// Hands the noted flows to the kernel, and sends what the sets need; called by the workers after each burst,
    /// outside the engine's lock. Never throws: a failure leaves its flow with offloadd, counted and logged.
    /// </summary>
    public void Flush()
    {
        IHandbackKernel? kernel = _kernel;
        if (kernel is null)
        {
            return;
        }

        List<(Connection Connection, CtnlEntry Entry)>? work = null;
        lock (_gate)
        {
            if (_pending.Count > 0)
            {
                work = new List<(Connection, CtnlEntry)>(_pending.Count);
                foreach (var connection in _pending)
                {
                    work.Add((connection, _flows[connection].Entry));
                }

                _pending.Clear();
            }
        }

        if (work is not null)
        {
            foreach (var (connection, entry) in work)
            {
                HandBack(kernel, connection, entry);
            }
        }

        SendSetOperations(kernel);

        // The steering deletes of the flows just handed back, after their way past the NAT-replies rules is open.
        _steering?.Flush();
    }

    private void HandBack(IHandbackKernel kernel, Connection connection, in CtnlEntry entry)
    {
        CtnlCommitResult result;
        Errno error;
        try
        {
            result = kernel.Commit(entry, out error);
        }
        catch (Exception e) when (e is NetlinkException or IOException)
        {
            result = CtnlCommitResult.Failed;
            error = Errno.EIO;
        }

        lock (_gate)
        {
            ref FlowState state = ref CollectionsMarshal.GetValueRefOrNullRef(_flows, connection);
            bool alive = !Unsafe.IsNullRef(ref state) && state.Stage == Stage.Pending;
            if (result == CtnlCommitResult.Failed)
            {
                if (alive)
                {
                    state.Stage = Stage.Refused; // stays with offloadd for good
                }

                if (Failed++ < 10)
                {
                    Log.HandbackFailed(_logger, entry.Original.ToString(), error.ToString(), null);
                }

                return;
            }

            if (!alive)
            {
                // offloadd dropped the connection while the kernel was asked (a reset, say): the kernel's entry goes too.
                _ = kernel.Delete(entry.Original);
                return;
            }

            state.Stage = Stage.InKernel;
            _byKernelTuple[entry.Original] = connection;
            HandedBack++;
            AlreadyThere += result == CtnlCommitResult.AlreadyThere ? 1 : 0;
            Replaced += result == CtnlCommitResult.Replaced ? 1 : 0;
            foreach (var operation in ExceptionEntries(entry, add: true))
            {
                _setOperations.Add(operation);
            }
        }

        // Its packets from the LAN side are the kernel's once the steering entry goes (with this flush's batch), or with
        // flows: all once the set has its LAN-side entry (the same batch as the one from outside).
        _steering?.Unsteer(connection);
        lock (_engineLock)
        {
            if (!connection.IsAlive)
            {
                return; // ended here since (its destroy took the hand-back entries back); its slot may hold another now
            }

            if (_steering is not null)
            {
                WithdrawExpectationsMet(connection);
            }

            _engine.KeepUntil(connection, _engine.Clock.NowNanoseconds + (long)KeepFor.TotalNanoseconds);

            // A segment that still comes here (queued before the steering changed) is far ahead of what this entry saw.
            ConntrackEngine.TrackLiberally(connection);
        }
    }

    /// <summary>
    /// Removes the expectations of a handed-back flow's master that the flow's own packets match, under the engine's
    /// lock. No packet can take one while the flow lives (its packets find the flow first), but in helpers mode its
    /// steering entry, the flow's own, would keep the flow's packets from the LAN coming to offloadd: SIP's expectation
    /// of the phone's media from its port to the peer's, when the peer's media opened the flow (symmetric media).
    /// </summary>
    private void WithdrawExpectationsMet(Connection connection)
    {
        if (connection.Master is not { } master)
        {
            return;
        }

        List<Expectation>? met = null;
        foreach (var expectation in _engine.Expectations.Entries())
        {
            if (expectation.Master == master && !expectation.AtTranslatedAddress &&
                (expectation.Matches(connection.Original) || expectation.Matches(connection.Reply)))
            {
                (met ??= []).Add(expectation);
            }
        }

        foreach (var expectation in met ?? [])
        {
            _engine.Expectations.Remove(expectation);
        }
    }

    /// <summary>
    /// The hand-back set entries of a flow: (address, port, peer) of the packets that arrive from outside at a translated
    /// address (the router's, in the NAT ports), which the NAT-replies rules would queue (matched <c>dst,dst,src</c>).
    /// In helpers mode routed flows need none: their steering entry alone took them. With <c>flows: all</c> also (host,
    /// port, peer) of the packets that arrive from the LAN (matched <c>src,src,dst</c> on the <c>from</c> interfaces),
    /// which the rules of every flow would untrack; a routed flow's one entry of that kind serves both directions.
    /// </summary>
    private IEnumerable<IpsetOperation> ExceptionEntries(CtnlEntry entry, bool add)
    {
        string set = entry.Original.Family == CtnlTuple.Inet ? _set4 : _set6;
        if (entry.IsSourceNat)
        {
            // The replies: from the peer to the address and port offloadd translated the source to.
            yield return Operation(set, entry.Reply, fromInside: false, add);
        }

        if (entry.IsDestinationNat)
        {
            // The original direction arrived at the translated address (an expected connection placed at the router).
            yield return Operation(set, entry.Original, fromInside: false, add);
        }

        if (!_allFlows)
        {
            yield break;
        }

        foreach (CtnlTuple fromLan in FromLan(entry))
        {
            yield return Operation(set, fromLan, fromInside: true, add);
        }
    }

    /// <summary>
    /// The directions of a flow whose packets arrive from the LAN, as they arrive: none for hairpin (both arrive at the
    /// router's addresses, which the entries from outside take); the original of a source-NAT flow (the LAN host opened
    /// it); the reply of a destination-NAT flow (placed at a LAN host: FTP active data to the client); both of a routed
    /// flow, which may have begun on either side (each also matches, as dst,dst,src, the other direction as it arrives
    /// from outside).
    /// </summary>
    private static IEnumerable<CtnlTuple> FromLan(CtnlEntry entry)
    {
        if (entry.IsSourceNat && entry.IsDestinationNat)
        {
            yield break;
        }

        if (entry.IsSourceNat || !entry.IsDestinationNat)
        {
            yield return entry.Original;
        }

        if (entry.IsDestinationNat || !entry.IsSourceNat)
        {
            yield return entry.Reply;
        }
    }

    /// <summary>
    /// Whether a flow's entry from the LAN (host, port, peer) would take packets of its master too: the control
    /// connection from the same LAN address and port to the same server (Linux may pick one source port for both, as
    /// they go to different server ports). Its packets must stay with offloadd, so such a flow is not handed back.
    /// </summary>
    private static bool SharesLanEntry(CtnlEntry entry, CtnlEntry master)
    {
        foreach (CtnlTuple mine in FromLan(entry))
        {
            foreach (CtnlTuple its in FromLan(master))
            {
                if (mine.Protocol == its.Protocol && mine.Source == its.Source && mine.SourcePort == its.SourcePort && mine.Destination == its.Destination)
                {
                    return true;
                }
            }
        }

        return false;
    }

    /// <summary>
    /// A set operation on (destination, port, source) of a packet that arrives from outside, or (source, port,
    /// destination) of one that arrives from the LAN (<paramref name="fromInside"/>).
    /// </summary>
    private static IpsetOperation Operation(string set, in CtnlTuple arriving, bool fromInside, bool add)
    {
        Span<byte> first = stackalloc byte[16];
        Span<byte> peer = stackalloc byte[16];
        int length = arriving.Write(fromInside ? arriving.Source : arriving.Destination, first);
        arriving.Write(fromInside ? arriving.Destination : arriving.Source, peer);
        ushort port = fromInside ? arriving.SourcePort : arriving.DestinationPort;
        var entry = new IpsetEntry(arriving.Family == CtnlTuple.Inet ? IpsetFamily.IPv4 : IpsetFamily.IPv6, arriving.Protocol, first[..length], port, peer[..length]);
        return add ? IpsetOperation.Add(set, entry) : IpsetOperation.Delete(set, entry);
    }

    private void SendSetOperations(IHandbackKernel kernel)
    {
        // The workers and the events thread send; one batch at a time, in the order they were taken (a delete never
        // overtakes the add it undoes), through the one pair of arrays.
        lock (_sendOrder)
        {
            SendSetOperationsInOrder(kernel);
        }
    }

    private void SendSetOperationsInOrder(IHandbackKernel kernel)
    {
        int count;
        lock (_gate)
        {
            count = _setOperations.Count;
            if (count == 0)
            {
                return;
            }

            if (_sending.Length < count)
            {
                _sending = new IpsetOperation[Math.Max(count, _sending.Length * 2)];
                _results = new Errno[_sending.Length];
            }

            _setOperations.CopyTo(_sending);
            _setOperations.Clear();
        }

        try
        {
            kernel.Apply(_sending.AsSpan(0, count), _results.AsSpan(0, count));
        }
        catch (Exception e) when (e is NetlinkException or IOException)
        {
            _results.AsSpan(0, count).Fill(Errno.EIO);
        }

        for (int i = 0; i < count; i++)
        {
            // Deleting an absent entry is what a delete is for; a failed add leaves the replies queued to offloadd, which
            // still translates them (slower, not wrong).
            if (_results[i] != Errno.None && !(_sending[i].Kind == IpsetOperationKind.Delete && _results[i] == IpsetErrors.Exist))
            {
                Log.HandbackFailed(_logger, _sending[i].Entry.ToString(), _results[i].ToString(), null);
            }
        }
    }

    public void ExpectationAdded(Expectation expectation) => _inner?.ExpectationAdded(expectation);

    public void ExpectationRemoved(Expectation expectation) => _inner?.ExpectationRemoved(expectation);

    public void ExpectationFulfilled(Expectation expectation, Connection connection) => _inner?.ExpectationFulfilled(expectation, connection);

    public void ConnectionConfirmed(Connection connection) => _inner?.ConnectionConfirmed(connection);

    public void HelperDisabled(Offload.Sdk.ConntrackHelper helper, Exception error) => _inner?.HelperDisabled(helper, error);

    public void HelperLogged(Offload.Sdk.ConntrackHelper helper, Offload.Sdk.HelperLogLevel level, string message) => _inner?.HelperLogged(helper, level, message);

    /// <summary>offloadd's entry went (the kernel's ended, or it expired here): forget it, and close its way past the queue rules.</summary>
    public void ConnectionDestroyed(Connection connection)
    {
        lock (_gate)
        {
            if (_flows.Remove(connection, out FlowState state) && state.Stage == Stage.InKernel)
            {
                _byKernelTuple.Remove(state.Entry.Original);
                foreach (var operation in ExceptionEntries(state.Entry, add: false))
                {
                    _setOperations.Add(operation);
                }
            }
        }

        _inner?.ConnectionDestroyed(connection);
    }

    /// <summary>The events thread: the kernel's entries that end take offloadd's with them.</summary>
    private void ReadEvents()
    {
        var destroyed = new CtnlTuple[64];
        var gone = new List<Connection>();
        long renewed = Stopwatch.GetTimestamp(), audited = renewed;
        while (!_stopping)
        {
            if (Stopwatch.GetElapsedTime(renewed) >= RenewEvery)
            {
                renewed = Stopwatch.GetTimestamp();
                Renew();
            }

            if (Stopwatch.GetElapsedTime(audited) >= AuditEvery)
            {
                audited = Stopwatch.GetTimestamp();
                _auditDue = true;
            }

            int n;
            try
            {
                n = _kernel!.ReceiveDestroyed(destroyed);
            }
            catch (Exception e) when (e is NetlinkException or ObjectDisposedException)
            {
                if (_stopping)
                {
                    return;
                }

                Log.HandbackUnavailable(_logger, $"conntrack events ({e.Message})");
                Thread.Sleep(HandbackKernel.EventWait);
                continue;
            }

            if (n == CtnlDestroyEvents.Overrun)
            {
                // Events were lost, a destroy of ours perhaps among them: look each handed-back flow up.
                _auditDue = true;
                n = 0;
            }

            gone.Clear();
            lock (_gate)
            {
                for (int i = 0; i < n; i++)
                {
                    if (_byKernelTuple.Remove(destroyed[i], out Connection connection))
                    {
                        gone.Add(connection);
                    }
                }
            }

            if (_auditDue)
            {
                _auditDue = false;
                int before = gone.Count;
                Audit(gone);
                if (gone.Count > before)
                {
                    Log.HandbackFoundGone(_logger, gone.Count - before);
                }
            }

            if (gone.Count > 0)
            {
                Withdraw(gone);
            }
        }
    }

    /// <summary>Keeps offloadd's entries of the flows the kernel has from expiring (see <see cref="KeepFor"/>).</summary>
    private void Renew()
    {
        List<Connection> flows;
        lock (_gate)
        {
            if (_byKernelTuple.Count == 0)
            {
                return;
            }

            flows = [.. _byKernelTuple.Values];
        }

        lock (_engineLock)
        {
            long until = _engine.Clock.NowNanoseconds + (long)KeepFor.TotalNanoseconds;
            foreach (var connection in flows)
            {
                _engine.KeepUntil(connection, until);
            }
        }
    }

    /// <summary>Adds to <paramref name="gone"/> the handed-back flows whose kernel entry is no more.</summary>
    private void Audit(List<Connection> gone)
    {
        List<(CtnlTuple Tuple, Connection Connection)> flows;
        lock (_gate)
        {
            flows = [.. _byKernelTuple.Select(p => (p.Key, p.Value))];
        }

        foreach (var (tuple, connection) in flows)
        {
            Errno found;
            try
            {
                found = _kernel!.Get(tuple);
            }
            catch (Exception e) when (e is NetlinkException or IOException)
            {
                continue;
            }

            if (found == Errno.ENOENT)
            {
                lock (_gate)
                {
                    if (_byKernelTuple.Remove(tuple))
                    {
                        gone.Add(connection);
                    }
                }
            }
        }
    }

    /// <summary>Removes offloadd's entries of flows the kernel has ended.</summary>
    private void Withdraw(List<Connection> gone)
    {
        lock (_engineLock)
        {
            foreach (var connection in gone)
            {
                // A handle whose connection went meanwhile (expired here first) names nothing: Destroy passes it by.
                _engine.Destroy(connection);
            }
        }

        lock (_gate)
        {
            Withdrawn += gone.Count;
        }

        // The hand-back set deletes the observer noted, and whatever the steering has to send.
        if (_kernel is { } kernel)
        {
            SendSetOperations(kernel);
        }

        _steering?.Flush();
        Log.HandbackWithdrawn(_logger, gone.Count);
    }

    /// <summary>One line for offloadctl stats.</summary>
    public string Statistics()
    {
        lock (_gate)
        {
            return string.Create(CultureInfo.InvariantCulture, $"handback: {(_settings.Enabled ? string.Join(",", _settings.Helpers) : "off")}, {_byKernelTuple.Count} flows in the kernel now, handed back {HandedBack} (already there {AlreadyThere}, replaced {Replaced}), refused {Failed}, withdrawn after the kernel's end {Withdrawn}, kept for a LAN port shared with their master {KeptShared}\n");
        }
    }

    /// <summary>Stops the events thread and closes the sockets; the kernel's entries and the sets stay.</summary>
    public void Dispose()
    {
        _stopping = true;
        _eventThread?.Join(TimeSpan.FromSeconds(2));
        _kernel?.Dispose();
    }

    /// <summary>
    /// An expected connection of a chosen helper, established (TCP after its handshake; UDP once answered), of a
    /// protocol with ports, with nothing that only offloadd can do for it: no helper of its own, no sequence adjustment.
    /// </summary>
    private static bool IsCandidate(Connection connection, Settings settings)
    {
        if (connection.Master?.Helper is not { } masterHelper || !settings.Helpers.Contains(masterHelper.Name) ||
            connection.Helper is not null || (connection.Status & (ConnStatus.SeqAdjust | ConnStatus.Dying)) != 0)
        {
            return false;
        }

        return connection.Original.Protocol switch
        {
            IpProtocol.Tcp => connection.TcpState == TcpConntrackState.Established,
            IpProtocol.Udp => connection.HasStatus(ConnStatus.SeenReply),
            _ => false,
        };
    }

    private static CtnlEntry EntryOf(Connection connection, long now)
    {
        // The kernel's entry lives as long as offloadd's would have until its next packet; the kernel's own timeouts then apply.
        long left = (connection.ExpiresAtNanoseconds - now) / 1_000_000_000L;
        uint timeout = (uint)Math.Clamp(left, 30, 5 * 24 * 3600);
        byte? scaleOriginal = null, scaleReply = null;
        if (connection.Original.Protocol == IpProtocol.Tcp)
        {
            ref readonly TcpTrackState tcp = ref connection.TcpTracking;
            if ((tcp.Original.Flags & TcpTrackFlags.WindowScale) != 0 && (tcp.Reply.Flags & TcpTrackFlags.WindowScale) != 0)
            {
                scaleOriginal = tcp.Original.Scale;
                scaleReply = tcp.Reply.Scale;
            }
        }

        return new CtnlEntry(Tuple(connection.Original), Tuple(connection.Reply), timeout, scaleOriginal, scaleReply);
    }

    private static CtnlTuple Tuple(in Offload.Sdk.ConnTuple tuple)
    {
        Span<byte> source = stackalloc byte[16];
        Span<byte> destination = stackalloc byte[16];
        int length = Offload.Sdk.InetAddress.Length(tuple.Family);
        tuple.Source.Write(tuple.Family, source);
        tuple.Destination.Write(tuple.Family, destination);
        return CtnlTuple.Of(tuple.Family == 4 ? CtnlTuple.Inet : CtnlTuple.Inet6, tuple.Protocol, source[..length], destination[..length], tuple.SourcePort, tuple.DestinationPort);
    }

    private enum Stage : byte
    {
        Counting,
        Pending,
        InKernel,
        Refused,
    }

    private struct FlowState
    {
        public Stage Stage;
        public long Packets;
        public long Bytes;
        public CtnlEntry Entry;
    }

    private sealed record Settings(bool Enabled, HashSet<string> Helpers, int AfterPackets, int AfterBytes)
    {
        public static readonly Settings Off = new(false, [], 0, 0);
    }
}
