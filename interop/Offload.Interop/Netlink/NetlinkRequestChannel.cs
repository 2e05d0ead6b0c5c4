using System.Diagnostics;
using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Netlink;

/// <summary>
/// The request and acknowledgement half of a netlink socket, the same for every protocol we speak over one (NFQUEUE,
/// ipset; ctnetlink next): requests leave numbered, and each answer (an NLMSG_ERROR whose code is 0 for an
/// acknowledgement, a negative errno for a refusal) is matched to its request by sequence number until every request
/// is answered or the timeout has passed. What else arrives meanwhile belongs to the protocol (NFQUEUE's packets,
/// ipset's replies) and is handed to its <see cref="INetlinkRequestOwner"/>.
/// </summary>
/// <remarks>Not thread-safe: it belongs to the one socket and the one thread its protocol object does.</remarks>
internal sealed class NetlinkRequestChannel(INetlinkTransport socket, ReceiveSlots slots)
{
    /// <summary>A code no kernel answer carries: the answer is still awaited.</summary>
    internal const int Pending = int.MinValue;

    // After ENOBUFS whatever survived is queued already; look for it without waiting long.
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromMilliseconds(1);

    private uint _sequence;
    private uint _first;
    private int _count;
    private int _answered;
    private int[] _codes = [];
    private int _lost;
    private NetlinkChannelCounters _counters;

    /// <summary>How long to wait for the answers before counting them lost (default 5 s).</summary>
    internal TimeSpan AckTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>What the channel met so far.</summary>
    internal NetlinkChannelCounters Counters => _counters;

    /// <summary>The kernel's explanation (extended ack) of the first refusal of the last exchange, if it gave one.</summary>
    internal string? KernelMessage { get; private set; }

    /// <summary>Hands out <paramref name="count"/> consecutive sequence numbers, never crossing 0 (the kernel's own messages carry 0).</summary>
    internal uint NextSequences(int count)
    {
        if (_sequence > uint.MaxValue - (uint)count)
        {
            _sequence = 0;
        }

        uint first = _sequence + 1;
        _sequence += (uint)count;
        return first;
    }

    /// <summary>
    /// Sends <paramref name="messages"/>, numbered from <paramref name="first"/>, and waits for one answer to each of
    /// <paramref name="codes"/>'s length: 0, the kernel's negative errno, or, for what never came, -ENOBUFS (lost in an
    /// overrun) or -ETIMEDOUT. A send that fails fails every request with its errno.
    /// </summary>
    /// <returns>False when the send failed (nothing reached the kernel).</returns>
    internal bool Exchange(ReadOnlySpan<byte> messages, uint first, Span<int> codes, INetlinkRequestOwner owner)
    {
        KernelMessage = null;
        try
        {
            socket.SendBatch(messages);
        }
        catch (NetlinkException e)
        {
            // Nothing of this send reached the kernel: each of its requests failed with the send's error.
            codes.Fill(-(int)e.Errno);
            return false;
        }

        if (_codes.Length < codes.Length)
        {
            _codes = new int[codes.Length];
        }

        _first = first;
        _count = codes.Length;
        _answered = 0;
        _codes.AsSpan(0, _count).Fill(Pending);
        try
        {
            Await(owner);
        }
        finally
        {
            int lost = _lost;
            for (int k = 0; k < _count; k++)
            {
                if (_codes[k] == Pending)
                {
                    _codes[k] = lost;
                    _counters.Unanswered++;
                }
            }

            _codes.AsSpan(0, _count).CopyTo(codes);
            _count = 0;
        }

        return true;
    }

    /// <summary>
    /// Records the answer to request <paramref name="sequence"/> (an owner that found a reply message calls this);
    /// false when no request of the exchange waits for it (a stale answer, counted).
    /// </summary>
    internal bool Answer(uint sequence, int code)
    {
        if (Record(sequence, code))
        {
            return true;
        }

        _counters.StaleAnswers++;
        return false;
    }

    private bool Record(uint sequence, int code)
    {
        uint k = sequence - _first;
        if (k >= (uint)_count || _codes[k] != Pending)
        {
            return false;
        }

        _codes[k] = code == Pending ? -(int)Errno.EIO : code;
        _answered++;
        return true;
    }

    private void Await(INetlinkRequestOwner owner)
    {
        _lost = -(int)Errno.ETIMEDOUT;
        bool overrun = false;
        TimeSpan timeout = socket.ReceiveTimeout;
        long deadline = Stopwatch.GetTimestamp() + (long)(AckTimeout.TotalSeconds * Stopwatch.Frequency);
        try
        {
            while (_answered < _count && Stopwatch.GetTimestamp() <= deadline)
            {
                int slot = owner.FreeSlot();
                int n = slot == 0 ? socket.ReceiveMany(slots, owner.FreeSlots) : ReceiveOne(slot);
                if (n == NetlinkSocket.NoBuffers)
                {
                    _counters.NoBufferEvents++;
                    if (!overrun)
                    {
                        overrun = true;
                        _lost = -(int)Errno.ENOBUFS;
                        socket.ReceiveTimeout = DrainTimeout;
                    }

                    continue;
                }

                if (n == NetlinkSocket.TimedOut)
                {
                    if (overrun)
                    {
                        break; // What survived the overrun has been read: the rest is lost.
                    }

                    continue;
                }

                for (int i = slot; i < slot + n; i++)
                {
                    _counters.Datagrams++;
                    if (!TakeAnswers(i))
                    {
                        owner.TakeDatagram(i, this);
                    }
                }
            }
        }
        finally
        {
            if (overrun)
            {
                socket.ReceiveTimeout = timeout;
            }
        }
    }

    private int ReceiveOne(int slot)
    {
        int n = socket.Receive(slots.Whole(slot));
        if (n > 0)
        {
            slots.SetReceived(slot, n, truncated: n > slots.SlotSize);
            return 1;
        }

        return n;
    }

    /// <summary>
    /// Records the answers a datagram holds; true when it held nothing else (it is done with), false when the owner
    /// must see it (other messages, a foreign sender, or a truncated datagram, whose answer is salvaged if it was one).
    /// </summary>
    private bool TakeAnswers(int slot)
    {
        if (slots.SenderPortId(slot) != 0)
        {
            return false;
        }

        ReadOnlySpan<byte> datagram = slots.Stored(slot);
        if (slots.IsTruncated(slot))
        {
            // Only an error with a long explanation could outgrow a slot; its code and sequence come first.
            if (TryReadTruncatedError(datagram, out uint sequence, out int code))
            {
                Record(sequence, code);
            }

            return false;
        }

        bool onlyAnswers = true;
        var reader = new NetlinkMessageReader(datagram);
        while (reader.TryRead(out NetlinkMessage m))
        {
            if (!m.IsError || !m.TryGetError(out NetlinkError e))
            {
                onlyAnswers = false;
                continue;
            }

            if (!Record(m.Sequence, e.Code))
            {
                // An answer to no request of this exchange (stale, or to a verdict): the owner sees it too.
                _counters.StaleAnswers++;
                onlyAnswers = false;
            }
            else if (!e.IsAck)
            {
                KernelMessage ??= e.GetKernelMessageText();
            }
        }

        return onlyAnswers && !reader.IsMalformed;
    }

    private static bool TryReadTruncatedError(ReadOnlySpan<byte> datagram, out uint sequence, out int code)
    {
        sequence = 0;
        code = 0;
        if (datagram.Length < NLMSG_HDRLEN + KernelLayout.NlMsgErr.Size || HostOrder.ReadU16(datagram[KernelLayout.NlMsgHdr.Type..]) != NLMSG_ERROR)
        {
            return false;
        }

        sequence = HostOrder.ReadU32(datagram[KernelLayout.NlMsgHdr.Sequence..]);
        code = HostOrder.ReadI32(datagram[(NLMSG_HDRLEN + KernelLayout.NlMsgErr.Error)..]);
        return true;
    }
}

/// <summary>What a protocol on a <see cref="NetlinkRequestChannel"/> does with its socket while it waits for answers.</summary>
internal interface INetlinkRequestOwner
{
    /// <summary>
    /// The first receive slot the protocol can spare while it waits: 0 to receive a burst into slots from the first
    /// on (<see cref="FreeSlots"/> of them), any other to receive one datagram into that slot (NFQUEUE keeps the
    /// packets that arrive before the answer in the slots below it).
    /// </summary>
    int FreeSlot();

    /// <summary>How many slots a burst received into slot 0 may fill.</summary>
    int FreeSlots { get; }

    /// <summary>
    /// A datagram that held more than awaited answers (which the channel has recorded): other messages, replies
    /// (the owner may answer their request with <see cref="NetlinkRequestChannel.Answer"/>), an unawaited error, a
    /// foreign sender, or a truncated datagram. The owner keeps or reads it.
    /// </summary>
    void TakeDatagram(int slot, NetlinkRequestChannel channel);
}

/// <summary>What a <see cref="NetlinkRequestChannel"/> met.</summary>
internal struct NetlinkChannelCounters
{
    /// <summary>Datagrams received while waiting for answers.</summary>
    public long Datagrams;

    /// <summary>Overruns (ENOBUFS): the kernel dropped messages for us, answers perhaps among them.</summary>
    public long NoBufferEvents;

    /// <summary>Answers no request of the exchange waited for.</summary>
    public long StaleAnswers;

    /// <summary>Requests whose answer never came.</summary>
    public long Unanswered;
}
