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
    public RpcStream Original;

    /// <summary>The server's side of a TCP connection (answers).</summary>
    public RpcStream Reply;

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
}

/// <summary>
/// Where one direction of a TCP connection stands in RFC 5531's record marking, in the sender's sequence numbers:
/// where the next fragment header starts, and whether the fragments up to the end of the current record are skipped
/// (the record was cut by a segment boundary, or is too large to be a lookup).
/// </summary>
internal struct RpcStream
{
    /// <summary>False until the first segment, and after the stream lost its place (a record mark cut in two, a gap).</summary>
    public bool Known;

    /// <summary>The sequence number of the next fragment header.</summary>
    public uint NextHeader;

    /// <summary>The fragments until the current record's last one are skipped.</summary>
    public bool SkipRecord;

    /// <summary>The last segment read: its first sequence number, and where it stood then (to read a retransmission alike).</summary>
    public uint LastStart;

    /// <inheritdoc cref="LastStart"/>
    public uint LastHeader;

    /// <inheritdoc cref="LastStart"/>
    public bool LastSkip;
}

/// <summary>Where one record-marking fragment lies: its header and body in the segment's payload, and its place in the record.</summary>
/// <param name="HeaderOffset">The fragment header's offset in the payload; -1 for a datagram, which has none.</param>
/// <param name="BodyOffset">The body's offset in the payload.</param>
/// <param name="Length">The body's length.</param>
/// <param name="RecordOffset">Where the body starts in the reassembled record.</param>
/// <param name="Last">The record's last fragment.</param>
internal readonly record struct RpcFragment(int HeaderOffset, int BodyOffset, int Length, int RecordOffset, bool Last);
