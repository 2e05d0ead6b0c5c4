using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Packets;
using Offload.Interop;
using Offload.Interop.Ipset;
using Offload.Rules;

namespace Offload.Daemon;

/// <summary>
/// In helpers mode, keeps the ipset sets of individually steered flows in step with the engine: a connection a
/// helper expects is put in the set before its first packet comes from the LAN side, kept while it lives, and
/// taken out when it (or its unused expectation) goes. Entries are (destination, port, source) of the packets the
/// LAN side sends, which the steering rules match with <c>dst,dst,src</c>.
/// </summary>
/// <remarks>
/// <para>
/// Told of events on the packet thread, under the engine's lock, for rare events only (never per packet); it only
/// notes what the sets need there. The adds and deletes of a burst leave together, as one netlink batch, when the
/// worker calls <see cref="Flush"/> after the burst, outside the engine's lock and before the burst's verdicts: an
/// expected connection's entry is in the set before the packet that announced it is let go.
/// </para>
/// <para>
/// An entry that outlives what it was for would steer unrelated later connections of the same addresses and port
/// away from the kernel, so none may: an entry only an expectation needs carries the expectation's timeout, and the
/// kernel removes it even if its removal is never sent; one a connection needs has none and goes with the
/// connection; a delete that fails is retried with the next batch; and at start the sets get exactly what the
/// engine's table needs (see <see cref="Reconcile"/>).
/// </para>
/// <para>
/// The entries stay when the daemon stops, as the steering rules do: the packets of a flow it translates keep going
/// to its queue, where they wait or are dropped until the next start (fail closed), instead of reaching the kernel,
/// which would forward them untranslated. Removing the rules destroys the sets.
/// </para>
/// </remarks>
internal sealed class IpsetSteering : IConntrackObserver, IDisposable
{
    /// <summary>Added to an expectation's timeout for an entry's: the kernel must not remove it before the engine's expectation lapses.</summary>
    internal static readonly TimeSpan ExpectationGrace = TimeSpan.FromSeconds(2);

    /// <summary>Failed deletes kept for retrying; past this, the oldest are given up (and counted).</summary>
    private const int MaxPendingDeletes = 4096;

    private readonly ISteeringSets _sets;
    private readonly string _live4;
    private readonly string _live6;

    // Where adds and deletes go: the live sets, or the scratch sets while Reconcile fills them.
    private string _set4;
    private string _set6;
    private readonly ILogger _logger;

    // An entry is (destination, port, source) without the source port: several flows may share one (e.g. the
    // active-mode data connections of one client, all from the server's port 20), so entries are counted.
    private readonly Dictionary<EntryKey, EntryState> _entries = [];
    private readonly Dictionary<Connection, EntryKey> _byConnection = [];
    private readonly HashSet<EntryKey> _pendingDeletes = [];

    // What the next batch will send (noted under the engine's lock), and what the batch being sent holds.
    private List<(IpsetOperation Operation, EntryKey Key)> _batch = [];
    private List<(IpsetOperation Operation, EntryKey Key)> _sending = [];
    private IpsetOperation[] _operations = new IpsetOperation[64];
    private Errno[] _results = new Errno[64];

    // _gate guards the bookkeeping (events and flushes come from both workers and the control thread); _sendOrder keeps
    // batches in the order they were taken, so a delete never overtakes the add it undoes.
    private readonly Lock _gate = new();
    private readonly Lock _sendOrder = new();
    private bool _setsWithoutTimeouts;
    private bool _disposed;

    public IpsetSteering(string set4, string set6, ILogger logger)
        : this(new ClientSets(IpsetClient.Open()), set4, set6, logger)
    {
    }

    internal IpsetSteering(ISteeringSets sets, string set4, string set6, ILogger logger)
    {
        _sets = sets;
        _set4 = _live4 = set4;
        _set6 = _live6 = set6;
        _logger = logger;
    }

    public long Added { get; private set; }

    public long Deleted { get; private set; }

    public long Failed { get; private set; }

    /// <summary>Connections steered by an entry.</summary>
    public int Steered => _byConnection.Count;

    /// <summary>Entries in the sets now, as far as the daemon knows (those waiting for a retried delete included).</summary>
    public int Entries => _entries.Count + _pendingDeletes.Count;

    /// <summary>
    /// Gives the sets exactly what <paramref name="engine"/>'s table needs (its outstanding expectations and the
    /// expected connections that live: none for a fresh table), replacing what an earlier run left there. Call it
    /// once, before the queues are read.
    /// </summary>
    /// <remarks>
    /// The sets may hold entries of connections that live on in a table restored from a snapshot, beside entries of
    /// flows that ended while the daemon was down. Flushing them first would leave a moment in which the living flows
    /// are not steered and the kernel forwards their packets untranslated; so the new contents are built in scratch
    /// sets and swapped in at once. Where that cannot be done (sets made by hand with another type) they are flushed
    /// and refilled, and the gap is logged.
    /// </remarks>
    public void Reconcile(ConntrackEngine engine)
    {
        if (TryRefillAtomically(engine))
        {
            return;
        }

        _sets.Flush(_live4);
        _sets.Flush(_live6);
        Fill(engine);
        Flush();
    }

    /// <summary>Fills scratch sets and swaps them in; false (nothing kept of the attempt) when the kernel refuses a step.</summary>
    private bool TryRefillAtomically(ConntrackEngine engine)
    {
        string scratch4 = _live4 + ScratchSuffix;
        string scratch6 = _live6 + ScratchSuffix;
        try
        {
            _sets.Recreate(scratch4, 4);
            _sets.Recreate(scratch6, 6);
            (_set4, _set6) = (scratch4, scratch6);
            Fill(engine);
            Flush();
            (_set4, _set6) = (_live4, _live6);
            _sets.Swap(_live4, scratch4);
            _sets.Swap(_live6, scratch6);
            _sets.Destroy(scratch4);
            _sets.Destroy(scratch6);
            return true;
        }
        catch (Exception e) when (e is NetlinkException or IOException or ArgumentException)
        {
            (_set4, _set6) = (_live4, _live6);
            Log.SteeringEntryFailed(_logger, $"an atomic start with scratch sets ({e.Message}); flushing {_live4} and {_live6} and refilling them instead");
            try
            {
                _sets.Destroy(scratch4);
                _sets.Destroy(scratch6);
            }
            catch (Exception again) when (again is NetlinkException or IOException or ArgumentException)
            {
                // Left for the next start's Recreate, which destroys them first.
            }

            lock (_gate)
            {
                _entries.Clear();
                _byConnection.Clear();
                _pendingDeletes.Clear();
                _batch.Clear();
            }

            return false;
        }
    }

    /// <summary>Appended to a set's name for the scratch set <see cref="Reconcile"/> fills (set prefixes leave room for it).</summary>
    internal const string ScratchSuffix = "-n";

    private void Fill(ConntrackEngine engine)
    {
        foreach (var expectation in engine.Expectations.Entries())
        {
            ExpectationAdded(expectation);
        }

        foreach (var connection in engine.Connections.Entries())
        {
            if (connection.HasStatus(ConnStatus.Expected))
            {
                Steer(connection, connection.ArrivedAtAnnouncedAddress);
            }
        }
    }

    public void ExpectationAdded(Expectation expectation)
    {
        // One that arrives at our own address and port range is steered by the range rule; the others (a server's
        // passive port) must be in the set before the client's first packet.
        if (!expectation.AtTranslatedAddress)
        {
            lock (_gate)
            {
                Acquire(EntryKey.Of(expectation.Tuple), ExpectationLifetime(expectation));
            }
        }
    }

    public void ExpectationRemoved(Expectation expectation)
    {
        if (!expectation.AtTranslatedAddress)
        {
            lock (_gate)
            {
                Release(EntryKey.Of(expectation.Tuple));
            }
        }
    }

    public void ExpectationFulfilled(Expectation expectation, Connection connection)
    {
        // The packets the LAN side sends: the original direction of a connection the LAN opened, or the replies
        // of one that arrived at our address.
        Steer(connection, expectation.AtTranslatedAddress);
    }

    private void Steer(Connection connection, bool atTranslatedAddress)
    {
        var key = EntryKey.Of(atTranslatedAddress ? connection.Reply : connection.Original);
        lock (_gate)
        {
            Acquire(key, lifetime: null);
            _byConnection[connection] = key;
        }
    }

    /// <summary>
    /// Takes a living connection out of the sets: it was handed to the kernel's conntrack, whose entry its packets must
    /// meet from now on. The entry goes with the next batch, unless another flow still needs it (then the connection's
    /// packets keep coming to offloadd, which translates them as before).
    /// </summary>
    public void Unsteer(Connection connection) => ConnectionDestroyed(connection);

    public void ConnectionDestroyed(Connection connection)
    {
        lock (_gate)
        {
            if (_byConnection.Remove(connection, out var key))
            {
                Release(key);
            }
        }
    }

    /// <summary>
    /// Sends what the sets need since the last call, as one batch (the failed deletes of earlier batches first), and
    /// settles the bookkeeping with the kernel's answers. Called by the workers after each burst, outside the engine's
    /// lock; never throws (a failure is counted and logged: the entries it concerned are given up or retried).
    /// </summary>
    public void Flush()
    {
        lock (_sendOrder)
        {
            int count;
            lock (_gate)
            {
                if (_disposed || (_batch.Count == 0 && _pendingDeletes.Count == 0))
                {
                    return;
                }

                foreach (var key in _pendingDeletes)
                {
                    _sending.Add((IpsetOperation.Delete(SetOf(key.Family), key.ToEntry()), key));
                }

                _pendingDeletes.Clear();
                _sending.AddRange(_batch);
                _batch.Clear();
                count = _sending.Count;
                if (_operations.Length < count)
                {
                    _operations = new IpsetOperation[Math.Max(count, _operations.Length * 2)];
                    _results = new Errno[_operations.Length];
                }

                for (int i = 0; i < count; i++)
                {
                    _operations[i] = _sending[i].Operation;
                }
            }

            Send(count);
            lock (_gate)
            {
                for (int i = 0; i < count; i++)
                {
                    Settle(_sending[i].Operation, _sending[i].Key, _results[i]);
                }

                _sending.Clear();
            }
        }
    }

    /// <summary>Operations still to be sent (for tests and statistics).</summary>
    internal int Unsent
    {
        get
        {
            lock (_gate)
            {
                return _batch.Count + _pendingDeletes.Count;
            }
        }
    }

    /// <summary>Closes the ipset client; the entries stay (see the remarks on the class: fail closed while down).</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        lock (_sendOrder)
        {
            lock (_gate)
            {
                _disposed = true;
                _entries.Clear();
                _byConnection.Clear();
                _pendingDeletes.Clear();
                _batch.Clear();
                _sets.Dispose();
            }
        }
    }

    /// <summary>How long the kernel keeps an expectation's entry by itself: its timeout (its class's, or its request's), and a little more.</summary>
    private static TimeSpan ExpectationLifetime(Expectation expectation) =>
        (expectation.Timeout > TimeSpan.Zero ? expectation.Timeout : expectation.Master.Helper?.PolicyOf(expectation.Class).Timeout ?? TimeSpan.FromMinutes(5)) + ExpectationGrace;

    /// <summary>
    /// Counts a user of <paramref name="key"/>, and notes an add of the entry, or of a longer timeout, when this user
    /// needs it longer: <paramref name="lifetime"/> for an expectation, null (no timeout) for a connection.
    /// </summary>
    private void Acquire(EntryKey key, TimeSpan? lifetime)
    {
        long deadline = lifetime is { } l ? Stopwatch.GetTimestamp() + (long)(l.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
        ref EntryState state = ref CollectionsMarshal.GetValueRefOrNullRef(_entries, key);
        if (!System.Runtime.CompilerServices.Unsafe.IsNullRef(ref state) && state.Deadline >= deadline)
        {
            state.Users++;
            return;
        }

        // New, or needed longer than the kernel will keep it: (re)add; an add of a present entry sets its timeout.
        uint? timeoutSeconds = _setsWithoutTimeouts ? null : lifetime is { } t ? (uint)Math.Ceiling(t.TotalSeconds) : 0;
        _pendingDeletes.Remove(key);
        _batch.Add((IpsetOperation.Add(SetOf(key.Family), key.ToEntry(), timeoutSeconds), key));
        if (_setsWithoutTimeouts)
        {
            deadline = long.MaxValue;
        }

        ref EntryState added = ref CollectionsMarshal.GetValueRefOrAddDefault(_entries, key, out _);
        added.Users++;
        added.Deadline = deadline;
    }

    private void Release(EntryKey key)
    {
        ref EntryState state = ref CollectionsMarshal.GetValueRefOrNullRef(_entries, key);
        if (System.Runtime.CompilerServices.Unsafe.IsNullRef(ref state))
        {
            return;
        }

        if (--state.Users > 0)
        {
            return;
        }

        _entries.Remove(key);
        _batch.Add((IpsetOperation.Delete(SetOf(key.Family), key.ToEntry()), key));
    }

    private string SetOf(byte family) => family == 4 ? _set4 : _set6;

    /// <summary>Sends the first <paramref name="count"/> operations; an add refused for its timeout goes again without one.</summary>
    private void Send(int count)
    {
        try
        {
            _sets.Apply(_operations.AsSpan(0, count), _results.AsSpan(0, count));
            for (int i = 0; i < count; i++)
            {
                if (_results[i] == IpsetErrors.Timeout && _operations[i].TimeoutSeconds is not null)
                {
                    // Sets made without timeout support (by hand, or by an older offloadd): entries live until deleted.
                    _setsWithoutTimeouts = true;
                    _operations[i] = IpsetOperation.Add(_operations[i].SetName, _operations[i].Entry);
                    _sets.Apply(_operations.AsSpan(i, 1), _results.AsSpan(i, 1));
                }
            }
        }
        catch (Exception e) when (e is NetlinkException or IOException)
        {
            _results.AsSpan(0, count).Fill(Errno.EIO);
            Log.SteeringEntryFailed(_logger, $"a batch of {count}: {e.Message}");
        }
    }

    /// <summary>Brings the bookkeeping in step with the kernel's answer to one operation.</summary>
    private void Settle(in IpsetOperation operation, EntryKey key, Errno result)
    {
        // Deleting what is not there (the kernel timed it out, or someone flushed the set) is what a delete is for.
        bool ok = result == Errno.None || (operation.Kind == IpsetOperationKind.Delete && result == IpsetErrors.Exist);
        if (ok)
        {
            if (operation.Kind == IpsetOperationKind.Add)
            {
                Added++;
            }
            else
            {
                Deleted++;
            }

            return;
        }

        if (Failed++ < 10)
        {
            Log.SteeringEntryFailed(_logger, operation.Entry.ToString());
        }

        if (operation.Kind == IpsetOperationKind.Add)
        {
            if (_batch.Exists(next => next.Key == key))
            {
                return; // Asked for again since: the next batch settles it.
            }

            // Not in the set: its users are not steered (their packets go the kernel's way), and none will delete it.
            _entries.Remove(key);
            foreach (var (connection, steeredBy) in _byConnection)
            {
                if (steeredBy == key)
                {
                    _byConnection.Remove(connection);
                }
            }
        }
        else if (!_entries.ContainsKey(key) && _pendingDeletes.Count < MaxPendingDeletes)
        {
            // Left in the kernel's set, an entry without timeout would steer unrelated connections for good: retried
            // with the next batch (unless the entry is wanted again meanwhile). Past the bound, given up (counted).
            _pendingDeletes.Add(key);
        }
    }

    /// <summary>How many users an entry has, and until when the kernel keeps it by itself (<see cref="long.MaxValue"/>: no timeout).</summary>
    private struct EntryState
    {
        public int Users;
        public long Deadline;
    }

    /// <summary>The set entry of the packets with this tuple: (destination, port, source) and the protocol.</summary>
    internal readonly record struct EntryKey(byte Family, byte Protocol, InetAddress Destination, ushort Port, InetAddress Source)
    {
        // GRE has no ports for ipset (the kernel takes port 0 for every protocol without ports): a PPTP call's GRE is
        // steered by its addresses, its call IDs are the engine's to tell apart.
        public static EntryKey Of(in ConnTuple tuple) =>
            new(tuple.Family, tuple.Protocol, tuple.Destination, tuple.Protocol == IpProtocol.Gre ? (ushort)0 : tuple.DestinationPort, tuple.Source);

        public IpsetEntry ToEntry()
        {
            Span<byte> destination = stackalloc byte[16];
            Span<byte> source = stackalloc byte[16];
            int length = InetAddress.Length(Family);
            Destination.Write(Family, destination);
            Source.Write(Family, source);
            return new IpsetEntry(Family == 4 ? IpsetFamily.IPv4 : IpsetFamily.IPv6, Protocol, destination.Slice(0, length), Port, source.Slice(0, length));
        }
    }

    /// <summary>The real sets, through one ipset netlink client.</summary>
    private sealed class ClientSets(IpsetClient client) : ISteeringSets
    {
        public void Apply(ReadOnlySpan<IpsetOperation> operations, Span<Errno> results) => client.Apply(operations, results);

        public void Flush(string set) => client.Flush(set);

        public void Recreate(string set, byte family)
        {
            client.Destroy(set);
            client.Create(set, IpsetType.HashIpPortIp, family == 4 ? IpsetFamily.IPv4 : IpsetFamily.IPv6, defaultTimeoutSeconds: 0, SteeringRules.SetMaxElements);
        }

        public void Swap(string set, string set2) => client.Swap(set, set2);

        public void Destroy(string set) => client.Destroy(set);

        public void Dispose() => client.Dispose();
    }
}

/// <summary>What <see cref="IpsetSteering"/> asks of ipset: the real client, or a test's record of it.</summary>
internal interface ISteeringSets : IDisposable
{
    /// <summary>
    /// Applies adds and deletes in order, as one batch; each result is <see cref="Errno.None"/> when its operation took
    /// effect, else the errno or ipset code.
    /// </summary>
    void Apply(ReadOnlySpan<IpsetOperation> operations, Span<Errno> results);

    /// <summary>Removes every entry of a set.</summary>
    void Flush(string set);

    /// <summary>Makes an empty set of the steering sets' type and <paramref name="family"/> (4 or 6), destroying one of that name first.</summary>
    void Recreate(string set, byte family);

    /// <summary>Exchanges the contents of two sets atomically.</summary>
    void Swap(string set, string set2);

    /// <summary>Destroys a set (nothing when it does not exist).</summary>
    void Destroy(string set);
}
