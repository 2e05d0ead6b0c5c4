using System.Buffers;
using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;

namespace Offload.Engine.Replication;

/// <summary>
/// Finds what changed in an engine for replication, at no cost to a packet beyond the observer calls the engine makes
/// anyway: new and destroyed connections, added and removed expectations are noted as they happen (a struct appended
/// to an array); everything else that changes a connection (its TCP state, status, mark, seqadj, a timeout pushed on)
/// is found by a sweep over a slice of the table per round, against a digest of what was last sent for each slot.
/// </summary>
/// <remarks>
/// conntrackd learns the same from the kernel's conntrack events; our engine has no event per update, and a flag set
/// on every packet would cost the hot path a write to each connection. The sweep's price is a read of every slot once
/// per cycle (<see cref="SweepCycleRounds"/> rounds), on the replication thread, under the engine lock, between bursts.
/// A full resync is the same sweep with the digests forgotten. Every member is called under the engine lock.
/// </remarks>
public sealed class ChangeTracker : IConntrackObserver
{
    /// <summary>Rounds (calls of <see cref="Collect"/>) in which the sweep visits every slot once.</summary>
    public const int SweepCycleRounds = 40;

    /// <summary>Changes noted between two rounds before the tracker gives up on them and resyncs instead.</summary>
    public const int MaxPending = 65536;

    /// <summary>A connection whose timeout moved on by more than this since it was last sent is sent again.</summary>
    public static readonly long RefreshNanoseconds = 10_000_000_000L;

    private readonly ConntrackEngine _engine;
    private readonly uint[] _sentDigest;
    private readonly long[] _sentExpires;
    private readonly ArrayBufferWriter<byte> _scratch = new(256);
    // Sized for a busy round (16,384 changes in 50 ms: over 300,000 new connections a second), so that noting a change
    // allocates nothing on the packet path; a larger burst grows it once, up to MaxPending.
    private Change[] _pending = new Change[16384];
    private int _pendingCount;
    private int _cursor;
    private long _resyncLeft;
    private bool _recording;

    /// <param name="engine">The engine whose table is tracked.</param>
    /// <param name="inner">The observer the engine's events are passed on to.</param>
    public ChangeTracker(ConntrackEngine engine, IConntrackObserver? inner)
    {
        ArgumentNullException.ThrowIfNull(engine);
        _engine = engine;
        Inner = inner;
        _sentDigest = new uint[engine.Connections.SlotCount];
        _sentExpires = new long[engine.Connections.SlotCount];
    }

    /// <summary>The observer every event is passed on to.</summary>
    public IConntrackObserver? Inner { get; set; }

    /// <summary>
    /// True on the active node: changes are noted and collected. Switching it on starts a full resync (the standby
    /// knows nothing of what this node did while it was not sending); switching it off forgets what was noted.
    /// </summary>
    public bool Recording
    {
        get => _recording;
        set
        {
            if (value && !_recording)
            {
                RequestResync();
            }

            _recording = value;
            _pendingCount = 0;
        }
    }

    /// <summary>Times the noted changes overflowed <see cref="MaxPending"/> and a resync took their place.</summary>
    public long Overflows { get; private set; }

    /// <summary>Full resyncs finished (every slot swept since one was asked for).</summary>
    public long ResyncsCompleted { get; private set; }

    /// <summary>True while a resync has slots left to sweep.</summary>
    public bool Resyncing => _resyncLeft > 0;

    /// <summary>Sends the whole table again, over the next sweep cycle (a peer said HELLO, or lost what it cannot get back).</summary>
    public void RequestResync()
    {
        Array.Clear(_sentDigest);
        _resyncLeft = _sentDigest.Length;
        _pendingCount = 0; // the sweep sends all of it; expectations are sent with their masters below
    }

    /// <summary>
    /// Encodes the changes noted since the last round, then sweeps the next slice of the table, into
    /// <paramref name="batch"/>, until it holds about <paramref name="maxBytes"/>. Returns the records added.
    /// </summary>
    public int Collect(ReplicationBatch batch, long maxBytes)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (!_recording)
        {
            return 0;
        }

        int before = batch.Records;
        long now = _engine.Clock.NowNanoseconds;
        for (int i = 0; i < _pendingCount; i++)
        {
            ref var change = ref _pending[i];
            switch (change.Kind)
            {
                case ChangeKind.Connection when change.Connection is { IsInTable: true, IsDying: false } conn:
                    Send(batch, conn, now);
                    break;
                case ChangeKind.ConnectionGone:
                    batch.WriteConnectionGone(change.Tuple);
                    break;
                case ChangeKind.Expectation when change.Expectation!.Linked && change.Expectation.Master.IsInTable:
                    batch.WriteExpectation(change.Expectation, now);
                    break;
                case ChangeKind.ExpectationGone when change.Slot >= 0:
                    batch.WriteExpectationGone(change.Slot, change.Tuple);
                    break;
            }

            change = default; // no reference kept to a connection that goes
        }

        _pendingCount = 0;
        Sweep(batch, now, maxBytes);
        return batch.Records - before;
    }

    private void Sweep(ReplicationBatch batch, long now, long maxBytes)
    {
        var table = _engine.Connections;
        int slots = Math.Max(1024, (table.SlotCount + SweepCycleRounds - 1) / SweepCycleRounds);
        for (int n = 0; n < slots && batch.Length < maxBytes; n++)
        {
            int slot = _cursor;
            _cursor = _cursor + 1 == table.SlotCount ? 0 : _cursor + 1;
            if (_resyncLeft > 0 && --_resyncLeft == 0)
            {
                ResyncsCompleted++;
            }

            if (table.AtSlot(slot) is not { IsDying: false } conn)
            {
                _sentDigest[slot] = 0;
                continue;
            }

            uint sent = _sentDigest[slot];
            if (sent != Digest(conn) || conn.ExpiresAt - _sentExpires[slot] > RefreshNanoseconds)
            {
                Send(batch, conn, now);
                if (sent == 0 || conn.Extras?.FirstExpectation is not null)
                {
                    // A resync, or a master: its expectations go with it (an expectation names its master).
                    for (var e = conn.Extras?.FirstExpectation; e is not null; e = e.NextOfMaster)
                    {
                        batch.WriteExpectation(e, now);
                    }
                }
            }
        }
    }

    private void Send(ReplicationBatch batch, Connection conn, long now)
    {
        batch.WriteConnection(conn, now, _scratch);
        _sentDigest[conn.Slot] = Digest(conn);
        _sentExpires[conn.Slot] = conn.ExpiresAt;
    }

    /// <summary>What, of a connection, a standby must hear about when it changes; never 0 (0 is "nothing sent").</summary>
    private static uint Digest(Connection conn)
    {
        var hash = default(HashCode);
        hash.Add(conn.StatusBits);
        hash.Add(conn.MarkValue);
        hash.Add(conn.TcpState);
        hash.Add(conn.ReplyTuple.GetHashCode());
        if (conn.Extras is { } extras)
        {
            hash.Add(extras.SeqAdjOriginal.CorrectionPosition);
            hash.Add(extras.SeqAdjOriginal.OffsetAfter);
            hash.Add(extras.SeqAdjReply.CorrectionPosition);
            hash.Add(extras.SeqAdjReply.OffsetAfter);
            hash.Add(extras.Helper?.Name);
            hash.Add(extras.ExpectationCount);
        }

        return (uint)hash.ToHashCode() | 1;
    }

    private void Note(ChangeKind kind, Connection? connection, Expectation? expectation, in ConnTuple tuple, int slot)
    {
        if (!_recording)
        {
            return;
        }

        if (_pendingCount == MaxPending)
        {
            // The peer cannot keep up (or the link is down): the sweep carries everything instead.
            Overflows++;
            RequestResync();
            return;
        }

        if (_pendingCount == _pending.Length)
        {
            Array.Resize(ref _pending, _pending.Length * 2);
        }

        _pending[_pendingCount++] = new Change { Kind = kind, Connection = connection, Expectation = expectation, Tuple = tuple, Slot = slot };
    }

    void IConntrackObserver.ConnectionConfirmed(Connection connection)
    {
        Note(ChangeKind.Connection, connection, null, default, 0);
        Inner?.ConnectionConfirmed(connection);
    }

    void IConntrackObserver.ConnectionDestroyed(Connection connection)
    {
        if (connection.HasStatus(ConnStatus.Confirmed))
        {
            Note(ChangeKind.ConnectionGone, null, null, connection.OriginalTuple, 0);
        }

        Inner?.ConnectionDestroyed(connection);
    }

    void IConntrackObserver.ExpectationAdded(Expectation expectation)
    {
        // The master changed too (its helper announced something, a rewrite moved its seqadj): it goes first.
        Note(ChangeKind.Connection, expectation.Master, null, default, 0);
        Note(ChangeKind.Expectation, null, expectation, default, 0);
        Inner?.ExpectationAdded(expectation);
    }

    void IConntrackObserver.ExpectationRemoved(Expectation expectation)
    {
        Note(ChangeKind.ExpectationGone, null, null, expectation.Tuple, expectation.Master.Slot);
        Inner?.ExpectationRemoved(expectation);
    }

    void IConntrackObserver.ExpectationFulfilled(Expectation expectation, Connection connection) => Inner?.ExpectationFulfilled(expectation, connection);

    void IConntrackObserver.HelperDisabled(ConntrackHelper helper, Exception error) => Inner?.HelperDisabled(helper, error);

    void IConntrackObserver.HelperLogged(ConntrackHelper helper, HelperLogLevel level, string message) => Inner?.HelperLogged(helper, level, message);

    private enum ChangeKind : byte
    {
        Connection,
        ConnectionGone,
        Expectation,
        ExpectationGone,
    }

    private struct Change
    {
        public ChangeKind Kind;
        public Connection? Connection;
        public Expectation? Expectation;
        public ConnTuple Tuple;
        public int Slot;
    }
}
