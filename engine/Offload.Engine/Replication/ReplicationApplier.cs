using Offload.Engine.Conntrack;
using Offload.Engine.Snapshot;

namespace Offload.Engine.Replication;

/// <summary>
/// Applies the records a standby receives (<see cref="ReplicationBatch"/>) to its own engine, so that when the
/// addresses move to it, the first packets find their connections with the same NAT bindings. Called under the engine lock.
/// </summary>
/// <remarks>
/// A connection is found by its original tuple and updated in place (its expectations and expected connections keep
/// pointing at it), or inserted. TCP connections are tracked liberally, as after a checkpoint and as conntrackd's
/// injected entries are: the active node's sequence numbers moved on while the standby saw none of its packets. The
/// sender's slots name masters; the applier keeps which local connection each slot was last given to.
/// </remarks>
public sealed class ReplicationApplier
{
    private readonly ConntrackEngine _engine;
    private readonly Dictionary<int, Connection> _byPeerSlot = [];

    /// <param name="engine">The standby's engine.</param>
    public ReplicationApplier(ConntrackEngine engine)
    {
        ArgumentNullException.ThrowIfNull(engine);
        _engine = engine;
    }

    /// <summary>Connections inserted or updated.</summary>
    public long Connections { get; private set; }

    /// <summary>Connections removed because the active node's went.</summary>
    public long ConnectionsGone { get; private set; }

    /// <summary>Expectations put in place.</summary>
    public long Expectations { get; private set; }

    /// <summary>Expectations removed.</summary>
    public long ExpectationsGone { get; private set; }

    /// <summary>Records that did not fit (table or expectations full).</summary>
    public long TableFull { get; private set; }

    /// <summary>Local entries replaced because the active node's entry for the same tuple differs (another binding).</summary>
    public long Replaced { get; private set; }

    /// <summary>The sender started afresh (a new epoch): its slots mean nothing any more.</summary>
    public void ForgetPeer() => _byPeerSlot.Clear();

    /// <summary>
    /// Applies every record of one datagram's body, in order. Throws <see cref="SnapshotException"/> at a record that is
    /// not well formed; the records before it stay applied (each is whole state on its own).
    /// </summary>
    public int Apply(byte[] buffer, int offset, int count)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        using var stream = new MemoryStream(buffer, offset, count, writable: false);
        var reader = new SnapshotReader(stream, count, Math.Max(count, 1));
        long now = _engine.Clock.NowNanoseconds;
        int records = 0;
        while (reader.Left > 0)
        {
            byte kind = reader.ReadByte();
            switch (kind)
            {
                case ReplicationBatch.KindConnection:
                    ApplyConnection(reader, now);
                    break;
                case ReplicationBatch.KindConnectionGone:
                    ApplyConnectionGone(reader.ReadTuple());
                    break;
                case ReplicationBatch.KindExpectation:
                    ApplyExpectation(reader, now);
                    break;
                case ReplicationBatch.KindExpectationGone:
                    ApplyExpectationGone(reader.ReadInt32(), reader.ReadTuple());
                    break;
                default:
                    throw new SnapshotException(SnapshotRefusal.Corrupt, $"a replication record of kind {kind}");
            }

            records++;
        }

        return records;
    }

    private Connection? Resolve(int peerSlot) =>
        _byPeerSlot.TryGetValue(peerSlot, out var conn) && conn.IsInTable ? conn : null;

    private void ApplyConnection(SnapshotReader reader, long now)
    {
        int peerSlot = reader.ReadInt32();
        var parsed = new EngineSnapshot.Parsed(_engine, now, 0, liberal: true, Resolve);
        try
        {
            parsed.ReadConnection(reader);
            if (parsed.Connections.Count == 0)
            {
                return; // its time ran out on the way: the active node destroys it too
            }

            Apply(parsed, peerSlot);
        }
        finally
        {
            parsed.ReleaseLeftovers();
        }
    }

    private void Apply(EngineSnapshot.Parsed parsed, int peerSlot)
    {
        var fresh = parsed.Connections[0];
        fresh.StatusBits |= ConnStatus.Confirmed;
        if (fresh.Extras is { } extras)
        {
            extras.Master = parsed.Masters.Count > 0 ? Resolve(parsed.Masters[0].Master) : null;
        }

        var table = _engine.Connections;
        if (table.TryFind(fresh.OriginalTuple, out var existing, out var direction))
        {
            if (direction == ConnDirection.Original && existing.ReplyTuple == fresh.ReplyTuple)
            {
                Update(existing, fresh);
                _byPeerSlot[peerSlot] = existing;
                Connections++;
                return;
            }

            Replaced++;
            _engine.Destroy(existing);
        }

        if (table.TryFind(fresh.ReplyTuple, out var clash, out _))
        {
            Replaced++;
            _engine.Destroy(clash);
        }

        if (table.IsFull)
        {
            TableFull++;
            return;
        }

        table.Insert(fresh);
        _byPeerSlot[peerSlot] = fresh;
        Connections++;
    }

    /// <summary>Takes the active node's view of a connection the standby has already.</summary>
    private static void Update(Connection existing, Connection fresh)
    {
        existing.StatusBits = fresh.StatusBits;
        existing.MarkValue = fresh.MarkValue;
        existing.ExpiresAt = fresh.ExpiresAt;
        existing.MasqueradeInterface = fresh.MasqueradeInterface;
        if (existing.Protocol == IpProtocol.Tcp)
        {
            existing.Tcp = fresh.Tcp;
        }
        else
        {
            existing.StreamAt = fresh.StreamAt;
        }

        if (fresh.Extras is not { } from)
        {
            return;
        }

        var to = existing.EnsureExtras();
        to.Master = from.Master ?? to.Master;
        to.ExpectedAtTranslatedAddress = from.ExpectedAtTranslatedAddress;
        to.SeqAdjOriginal = from.SeqAdjOriginal;
        to.SeqAdjReply = from.SeqAdjReply;
        to.Helper = from.Helper;
        if (from.HelperState is not null || from.Helper is null)
        {
            to.HelperState = from.HelperState;
        }
    }

    private void ApplyConnectionGone(in ConnTuple original)
    {
        if (_engine.Connections.TryFind(original, out var conn, out var direction) && direction == ConnDirection.Original)
        {
            _engine.Destroy(conn);
            ConnectionsGone++;
        }
    }

    private void ApplyExpectation(SnapshotReader reader, long now)
    {
        var parsed = new EngineSnapshot.Parsed(_engine, now, 0, liberal: true, Resolve);
        parsed.ReadExpectation(reader);
        if (parsed.Expectations.Count == 0)
        {
            return; // lapsed, or its master is unknown here (it comes with the master's next update)
        }

        var expectation = parsed.Expectations[0];
        RemoveExpectation(expectation.Master, expectation.Tuple);
        if (_engine.Expectations.Count >= _engine.Expectations.MaxExpectations)
        {
            TableFull++;
            return;
        }

        _engine.Expectations.Restore(expectation);
        Expectations++;
    }

    private void ApplyExpectationGone(int masterSlot, in ConnTuple tuple)
    {
        if (Resolve(masterSlot) is { } master && RemoveExpectation(master, tuple))
        {
            ExpectationsGone++;
        }
    }

    private bool RemoveExpectation(Connection master, in ConnTuple tuple)
    {
        for (var e = master.Extras?.FirstExpectation; e is not null; e = e.NextOfMaster)
        {
            if (e.Tuple == tuple)
            {
                return _engine.Expectations.Remove(e);
            }
        }

        return false;
    }
}
