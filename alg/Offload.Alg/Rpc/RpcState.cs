using System.Buffers;
using System.Buffers.Binary;

namespace Offload.Alg.Rpc;

/// <summary>
/// What the helper remembers of one portmapper connection: the lookups asked and not yet forgotten (so that an answer
/// is read only when its XID matches a call, and read as the call asked), and for TCP where each direction's next
/// record mark lies. Made once per connection; a packet allocates nothing.
/// </summary>
internal sealed class RpcState
{
    /// <summary>Lookups remembered per connection; a newer call takes the oldest one's place.</summary>
    public const int MaxPending = 8;

    private readonly RpcCall[] _calls = new RpcCall[MaxPending];
    private int _count;
    private int _next;

    /// <summary>The client's side of a TCP connection (calls).</summary>
    public RpcStream Original { get; private set; } = new();

    /// <summary>The server's side of a TCP connection (answers).</summary>
    public RpcStream Reply { get; private set; } = new();

    /// <summary>Remembers a lookup; the same XID again (a retransmitted call) replaces the earlier one.</summary>
    public void Remember(in RpcCall call)
    {
        for (int i = 0; i < _count; i++)
        {
            if (_calls[i].Xid == call.Xid)
            {
                _calls[i] = call;
                return;
            }
        }

        _calls[_next] = call;
        _next = (_next + 1) % MaxPending;
        _count = Math.Min(_count + 1, MaxPending);
    }

    /// <summary>
    /// The lookup an answer with this XID answers. It stays remembered: a retransmitted answer is read, expected and
    /// rewritten again, as the first one was.
    /// </summary>
    public bool TryFind(uint xid, out RpcCall call)
    {
        for (int i = 0; i < _count; i++)
        {
            if (_calls[i].Xid == xid)
            {
                call = _calls[i];
                return true;
            }
        }

        call = default;
        return false;
    }

    /// <summary>The bytes <see cref="Write"/> writes: the lookups and both streams.</summary>
    public const int SavedLength = 2 + (MaxPending * 6) + (2 * RpcStream.SavedLength);

    /// <summary>Writes the state for a snapshot of the daemon (<see cref="SavedLength"/> bytes).</summary>
    public void Write(IBufferWriter<byte> writer)
    {
        var span = writer.GetSpan(SavedLength)[..SavedLength];
        span[0] = (byte)_count;
        span[1] = (byte)_next;
        for (int i = 0; i < MaxPending; i++)
        {
            var slot = span.Slice(2 + (i * 6), 6);
            BinaryPrimitives.WriteUInt32BigEndian(slot, _calls[i].Xid);
            slot[4] = (byte)_calls[i].Lookup;
            slot[5] = _calls[i].Protocol;
        }

        Original.Write(span.Slice(2 + (MaxPending * 6), RpcStream.SavedLength));
        Reply.Write(span.Slice(2 + (MaxPending * 6) + RpcStream.SavedLength, RpcStream.SavedLength));
        writer.Advance(SavedLength);
    }

    /// <summary>The state <see cref="Write"/> wrote, or null when the bytes are not such a state.</summary>
    public static RpcState? Read(ReadOnlySpan<byte> data)
    {
        if (data.Length != SavedLength || data[0] > MaxPending || data[1] >= MaxPending)
        {
            return null;
        }

        var state = new RpcState { _count = data[0], _next = data[1] };
        for (int i = 0; i < state._count; i++)
        {
            var slot = data.Slice(2 + (i * 6), 6);
            var lookup = (RpcLookup)slot[4];
            if (lookup is not (RpcLookup.GetPort or RpcLookup.GetAddr) || slot[5] is not (6 or 17))
            {
                return null;
            }

            state._calls[i] = new RpcCall(BinaryPrimitives.ReadUInt32BigEndian(slot), lookup, slot[5]);
        }

        var original = RpcStream.Read(data.Slice(2 + (MaxPending * 6), RpcStream.SavedLength));
        var reply = RpcStream.Read(data.Slice(2 + (MaxPending * 6) + RpcStream.SavedLength, RpcStream.SavedLength));
        if (original is null || reply is null)
        {
            return null;
        }

        state.Original = original;
        state.Reply = reply;
        return state;
    }
}

/// <summary>
/// Where one direction of a TCP connection stands in RFC 5531's record marking, in the sender's sequence numbers:
/// where the next fragment header starts, whether the fragments up to the end of the current record are skipped (the
/// record was cut by a segment boundary, or is too large to be a lookup), and where the last few segments read started
/// and stood, so that a retransmitted one is read as it was the first time (the kernel's FTP helper remembers two).
/// </summary>
internal sealed class RpcStream
{
    /// <summary>Segments remembered for their retransmissions.</summary>
    public const int Recalled = 4;

    private readonly uint[] _starts = new uint[Recalled];
    private readonly uint[] _headers = new uint[Recalled];
    private readonly bool[] _skips = new bool[Recalled];
    private int _count;
    private int _next;

    /// <summary>False until the first segment, and after the stream lost its place (a record mark cut in two, a gap).</summary>
    public bool Known { get; set; }

    /// <summary>The sequence number of the next fragment header.</summary>
    public uint NextHeader { get; set; }

    /// <summary>The fragments until the current record's last one are skipped.</summary>
    public bool SkipRecord { get; set; }

    /// <summary>Remembers where a new segment started and where the stream stood at its start.</summary>
    public void Remember(uint start, uint header, bool skip)
    {
        _starts[_next] = start;
        _headers[_next] = header;
        _skips[_next] = skip;
        _next = (_next + 1) % Recalled;
        _count = Math.Min(_count + 1, Recalled);
    }

    /// <summary>Where the stream stood when a segment starting at <paramref name="start"/> was read, if it is remembered.</summary>
    public bool TryRecall(uint start, out uint header, out bool skip)
    {
        for (int i = 0; i < _count; i++)
        {
            if (_starts[i] == start)
            {
                header = _headers[i];
                skip = _skips[i];
                return true;
            }
        }

        header = 0;
        skip = false;
        return false;
    }

    /// <summary>The bytes <see cref="Write"/> writes.</summary>
    public const int SavedLength = 7 + (Recalled * 9);

    public void Write(Span<byte> destination)
    {
        destination[0] = (byte)((Known ? 1 : 0) | (SkipRecord ? 2 : 0));
        BinaryPrimitives.WriteUInt32BigEndian(destination[1..], NextHeader);
        destination[5] = (byte)_count;
        destination[6] = (byte)_next;
        for (int i = 0; i < Recalled; i++)
        {
            var slot = destination.Slice(7 + (i * 9), 9);
            BinaryPrimitives.WriteUInt32BigEndian(slot, _starts[i]);
            BinaryPrimitives.WriteUInt32BigEndian(slot[4..], _headers[i]);
            slot[8] = _skips[i] ? (byte)1 : (byte)0;
        }
    }

    public static RpcStream? Read(ReadOnlySpan<byte> data)
    {
        if (data.Length != SavedLength || data[0] > 3 || data[5] > Recalled || data[6] >= Recalled)
        {
            return null;
        }

        var stream = new RpcStream
        {
            Known = (data[0] & 1) != 0,
            SkipRecord = (data[0] & 2) != 0,
            NextHeader = BinaryPrimitives.ReadUInt32BigEndian(data[1..]),
            _count = data[5],
            _next = data[6],
        };
        for (int i = 0; i < Recalled; i++)
        {
            var slot = data.Slice(7 + (i * 9), 9);
            if (slot[8] > 1)
            {
                return null;
            }

            stream._starts[i] = BinaryPrimitives.ReadUInt32BigEndian(slot);
            stream._headers[i] = BinaryPrimitives.ReadUInt32BigEndian(slot[4..]);
            stream._skips[i] = slot[8] == 1;
        }

        return stream;
    }
}

/// <summary>Where one record-marking fragment lies: its header and body in the segment's payload, and its place in the record.</summary>
/// <param name="HeaderOffset">The fragment header's offset in the payload; -1 for a datagram, which has none.</param>
/// <param name="BodyOffset">The body's offset in the payload.</param>
/// <param name="Length">The body's length.</param>
/// <param name="RecordOffset">Where the body starts in the reassembled record.</param>
/// <param name="Last">The record's last fragment.</param>
internal readonly record struct RpcFragment(int HeaderOffset, int BodyOffset, int Length, int RecordOffset, bool Last);
