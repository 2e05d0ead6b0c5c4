using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Snapshot;

namespace Offload.Engine.Replication;

/// <summary>
/// Changes of an engine's state encoded as replication records, filled under the engine lock by
/// <see cref="ChangeTracker.Collect"/> and cut into datagrams outside it (never inside a record).
/// </summary>
/// <remarks>
/// A record is a kind byte, then its fields, little-endian like the snapshot, whose record encoding it reuses:
/// <code>
/// 1 connection          i32 sender's slot, then a snapshot connection record (tuples, status, mark, remaining
///                       timeouts, TCP tracking, NAT interface; with extras: seqadj, master, helper and its state)
/// 2 connection gone     the original tuple
/// 3 expectation         a snapshot expectation record (its master by the sender's slot)
/// 4 expectation gone    i32 master's slot at the sender, the expectation's tuple
/// </code>
/// Records carry whole state, never deltas: applying one twice, or an update after a lost one, leaves the same entry.
/// </remarks>
public sealed class ReplicationBatch : IDisposable
{
    internal const byte KindConnection = 1;
    internal const byte KindConnectionGone = 2;
    internal const byte KindExpectation = 3;
    internal const byte KindExpectationGone = 4;

    private readonly List<int> _ends = [];
    private SnapshotBuffer _body = new();
    private byte[] _flat = [];

    /// <summary>Records in the batch.</summary>
    public int Records => _ends.Count;

    /// <summary>Bytes of all records.</summary>
    public long Length => _body.Length;

    /// <summary>Connections written whose helper saved its state.</summary>
    public int HelperStates { get; internal set; }

    internal SnapshotBuffer Body => _body;

    internal void WriteConnection(Connection conn, long now, System.Buffers.ArrayBufferWriter<byte> scratch)
    {
        _body.WriteByte(KindConnection);
        _body.WriteInt32(conn.Slot);
        int states = 0;
        EngineSnapshot.WriteConnection(_body, conn, now, scratch, ref states);
        HelperStates += states;
        End();
    }

    internal void WriteConnectionGone(in ConnTuple original)
    {
        _body.WriteByte(KindConnectionGone);
        _body.WriteTuple(original);
        End();
    }

    internal void WriteExpectation(Expectation expectation, long now)
    {
        _body.WriteByte(KindExpectation);
        EngineSnapshot.WriteExpectation(_body, expectation, now);
        End();
    }

    internal void WriteExpectationGone(int masterSlot, in ConnTuple tuple)
    {
        _body.WriteByte(KindExpectationGone);
        _body.WriteInt32(masterSlot);
        _body.WriteTuple(tuple);
        End();
    }

    private void End() => _ends.Add(checked((int)_body.Length));

    /// <summary>
    /// Cuts the records into pieces of at most <paramref name="maxBytes"/> each, whole records only, in order. A record
    /// longer than that on its own (a helper's state too large for a datagram) is left out and counted in
    /// <paramref name="tooLarge"/>. Call once, outside the engine lock.
    /// </summary>
    public IEnumerable<ReadOnlyMemory<byte>> Pieces(int maxBytes, Action<int>? tooLarge = null)
    {
        if (_flat.Length < _body.Length)
        {
            _flat = new byte[_body.Length];
        }

        int at = 0;
        foreach (var segment in _body.Segments())
        {
            segment.Span.CopyTo(_flat.AsSpan(at));
            at += segment.Length;
        }

        int start = 0, last = 0;
        foreach (int end in _ends)
        {
            if (end - last > maxBytes)
            {
                if (last > start)
                {
                    yield return _flat.AsMemory(start, last - start);
                }

                tooLarge?.Invoke(end - last);
                start = last = end;
                continue;
            }

            if (end - start > maxBytes)
            {
                yield return _flat.AsMemory(start, last - start);
                start = last;
            }

            last = end;
        }

        if (last > start)
        {
            yield return _flat.AsMemory(start, last - start);
        }
    }

    /// <summary>Empties the batch for the next round, keeping its buffers.</summary>
    public void Clear()
    {
        _body.Dispose();
        _body = new SnapshotBuffer();
        _ends.Clear();
        HelperStates = 0;
    }

    /// <summary>Returns the buffers to the pool.</summary>
    public void Dispose() => _body.Dispose();
}
