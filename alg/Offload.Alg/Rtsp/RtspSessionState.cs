using System.Buffers;
using System.Buffers.Binary;

namespace Offload.Alg.Rtsp;

/// <summary>
/// What the helper remembers of one RTSP control connection: where each direction's next message starts when a body
/// or an interleaved frame runs past a segment (so that the next segment is read from there, and media bytes are
/// never taken for a request), and the transports of the SETUP requests not yet answered, so that the answer can be
/// translated back and its media paired. Fixed-size: one allocation per connection.
/// </summary>
internal sealed class RtspSessionState
{
    /// <summary>Transports of unanswered SETUPs remembered; an older one is forgotten when a new one needs room.</summary>
    public const int MaxPending = 16;

    private readonly PendingTransport[] _pending = new PendingTransport[MaxPending];
    private int _next;
    private uint _resumeOriginal, _resumeReply;
    private uint _fromOriginal, _fromReply;
    private bool _skippingOriginal, _skippingReply;

    /// <summary>
    /// Where to start reading a segment that starts at sequence number <paramref name="sequence"/>: 0 normally, the
    /// offset of the next message when an earlier body or frame runs into it, or -1 when the whole segment lies in one.
    /// </summary>
    public int StartOf(ConnDirection direction, uint sequence, int length)
    {
        ref bool skipping = ref direction == ConnDirection.Original ? ref _skippingOriginal : ref _skippingReply;
        uint resume = direction == ConnDirection.Original ? _resumeOriginal : _resumeReply;
        uint from = direction == ConnDirection.Original ? _fromOriginal : _fromReply;
        if (!skipping || (int)(sequence - from) <= 0)
        {
            // Nothing to skip; or the segment that started the body again (a retransmission, or an earlier one): it is
            // read from its start as the first time, so that its rewrites are made again.
            return 0;
        }

        int ahead = (int)(resume - sequence);
        if (ahead <= 0 || ahead > RtspParser.MaxContentLength + 4)
        {
            skipping = false; // we are past it (or out of step: read from here, as after a restart)
            return 0;
        }

        if (ahead >= length)
        {
            return -1; // a segment inside the body; or an old one retransmitted: nothing to read
        }

        skipping = false;
        return ahead;
    }

    /// <summary>The next message of this direction starts at <paramref name="sequence"/>, beyond the segment that starts at <paramref name="from"/>.</summary>
    public void ResumeAt(ConnDirection direction, uint from, uint sequence)
    {
        if (direction == ConnDirection.Original)
        {
            _fromOriginal = from;
            _resumeOriginal = sequence;
            _skippingOriginal = true;
        }
        else
        {
            _fromReply = from;
            _resumeReply = sequence;
            _skippingReply = true;
        }
    }

    /// <summary>Remembers one transport of a SETUP until its answer.</summary>
    public void Add(in PendingTransport transport)
    {
        _pending[_next] = transport;
        _next = (_next + 1) % MaxPending;
    }

    /// <summary>
    /// The transport of the SETUP <paramref name="cseq"/> (any when -1) that the server sees at the client's port
    /// <paramref name="announcedRtp"/> (its answer names that one).
    /// </summary>
    public bool TryFind(int cseq, ushort announcedRtp, out PendingTransport transport) => TryFind(cseq, announcedRtp, announced: true, out transport);

    /// <summary>The transport of the SETUP <paramref name="cseq"/> that the client offered at its own port <paramref name="rtp"/> (an earlier spec of the same header).</summary>
    public bool TryFindOffered(int cseq, ushort rtp, out PendingTransport transport) => TryFind(cseq, rtp, announced: false, out transport);

    private bool TryFind(int cseq, ushort port, bool announced, out PendingTransport transport)
    {
        foreach (var p in _pending)
        {
            if (p.Present && (announced ? p.AnnouncedRtp : p.Rtp) == port && (cseq < 0 || p.CSeq < 0 || p.CSeq == cseq))
            {
                transport = p;
                return true;
            }
        }

        transport = default;
        return false;
    }

    /// <summary>The transports remembered (those not <see cref="PendingTransport.Present"/> are free slots).</summary>
    public ReadOnlySpan<PendingTransport> Pending => _pending;

    /// <summary>The SETUP <paramref name="cseq"/> was answered (any unanswered one when -1): its transports are forgotten.</summary>
    public void Answered(int cseq)
    {
        for (int i = 0; i < _pending.Length; i++)
        {
            if (cseq < 0 || _pending[i].CSeq == cseq)
            {
                _pending[i] = default;
            }
        }
    }

    /// <summary>Forgets every unanswered SETUP (TEARDOWN).</summary>
    public void Clear() => Array.Clear(_pending);

    /// <summary>Bytes of one remembered transport in <see cref="Write"/>'s layout.</summary>
    private const int PendingSize = 12;

    /// <summary>
    /// Writes the state for a restart of the daemon: per direction whether a body is being skipped, from and to which
    /// sequence numbers (9 bytes each), then the count of unanswered transports and each one's CSeq and four ports.
    /// </summary>
    public void Write(IBufferWriter<byte> writer)
    {
        int count = 0;
        foreach (var p in _pending)
        {
            count += p.Present ? 1 : 0;
        }

        var span = writer.GetSpan(19 + (count * PendingSize));
        WriteDirection(span, _skippingOriginal, _fromOriginal, _resumeOriginal);
        WriteDirection(span[9..], _skippingReply, _fromReply, _resumeReply);
        span[18] = (byte)count;
        int at = 19;
        foreach (var p in _pending)
        {
            if (!p.Present)
            {
                continue;
            }

            BinaryPrimitives.WriteInt32BigEndian(span[at..], p.CSeq);
            BinaryPrimitives.WriteUInt16BigEndian(span[(at + 4)..], p.Rtp);
            BinaryPrimitives.WriteUInt16BigEndian(span[(at + 6)..], p.Rtcp);
            BinaryPrimitives.WriteUInt16BigEndian(span[(at + 8)..], p.AnnouncedRtp);
            BinaryPrimitives.WriteUInt16BigEndian(span[(at + 10)..], p.AnnouncedRtcp);
            at += PendingSize;
        }

        writer.Advance(at);
    }

    /// <summary>Reads what <see cref="Write"/> wrote; null when the bytes are not that (their length or a count is off).</summary>
    public static RtspSessionState? Read(ReadOnlySpan<byte> data)
    {
        if (data.Length < 19 || data[18] > MaxPending || data.Length != 19 + (data[18] * PendingSize) || data[0] > 1 || data[9] > 1)
        {
            return null;
        }

        var state = new RtspSessionState
        {
            _skippingOriginal = data[0] == 1,
            _fromOriginal = BinaryPrimitives.ReadUInt32BigEndian(data[1..]),
            _resumeOriginal = BinaryPrimitives.ReadUInt32BigEndian(data[5..]),
            _skippingReply = data[9] == 1,
            _fromReply = BinaryPrimitives.ReadUInt32BigEndian(data[10..]),
            _resumeReply = BinaryPrimitives.ReadUInt32BigEndian(data[14..]),
        };
        for (int i = 0, at = 19; i < data[18]; i++, at += PendingSize)
        {
            state.Add(new PendingTransport(
                true,
                BinaryPrimitives.ReadInt32BigEndian(data[at..]),
                BinaryPrimitives.ReadUInt16BigEndian(data[(at + 4)..]),
                BinaryPrimitives.ReadUInt16BigEndian(data[(at + 6)..]),
                BinaryPrimitives.ReadUInt16BigEndian(data[(at + 8)..]),
                BinaryPrimitives.ReadUInt16BigEndian(data[(at + 10)..])));
        }

        return state;
    }

    private static void WriteDirection(Span<byte> span, bool skipping, uint from, uint resume)
    {
        span[0] = skipping ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt32BigEndian(span[1..], from);
        BinaryPrimitives.WriteUInt32BigEndian(span[5..], resume);
    }
}

/// <summary>
/// One UDP transport of a SETUP as the client announced it (its ports) and as the server sees it (the router's ports
/// when the client is translated, the same otherwise).
/// </summary>
internal readonly record struct PendingTransport(bool Present, int CSeq, ushort Rtp, ushort Rtcp, ushort AnnouncedRtp, ushort AnnouncedRtcp);
