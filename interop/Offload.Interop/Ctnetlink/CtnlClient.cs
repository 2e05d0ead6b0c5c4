using Offload.Interop.Netlink;
using static Offload.Interop.Ctnetlink.CtnlConstants;
using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Ctnetlink;

/// <summary>What <see cref="CtnlClient.Commit"/> did.</summary>
public enum CtnlCommitResult
{
    /// <summary>The kernel created the entry.</summary>
    Created,

    /// <summary>An entry of that original tuple was there with the same translated reply: it does what ours would.</summary>
    AlreadyThere,

    /// <summary>An entry of that original tuple was there with another reply (another NAT): it was deleted and ours created.</summary>
    Replaced,

    /// <summary>The kernel refused (see the errno).</summary>
    Failed,
}

/// <summary>
/// Creates, reads and deletes entries of the kernel's conntrack table over ctnetlink, on a NETLINK_NETFILTER socket of
/// its own: what conntrackd does when it commits a flow, one request and its answer at a time.
/// </summary>
/// <remarks>Not thread-safe: one thread at a time (answers are matched to the request in flight).</remarks>
public sealed class CtnlClient : IDisposable, INetlinkRequestOwner
{
    private const int ReceiveSlotCount = 8;

    // An entry message (a GET's answer) is a few hundred bytes; an error carries the request back, capped.
    private const int ReceiveSlotSize = 4096;

    private readonly INetlinkTransport _socket;
    private readonly ReceiveSlots _slots;
    private readonly NetlinkRequestChannel _channel;
    private readonly byte[] _send = GC.AllocateUninitializedArray<byte>(CtnlMessages.MaxMessageSize);
    private bool _disposed;

    // The answer of the GET in flight.
    private uint _getSequence;
    private CtnlTuple _gotReply;

    private CtnlClient(INetlinkTransport socket)
    {
        _socket = socket;
        _slots = new ReceiveSlots(ReceiveSlotCount, ReceiveSlotSize);
        _channel = new NetlinkRequestChannel(socket, _slots);
        AckTimeout = TimeSpan.FromSeconds(2);
    }

    /// <summary>How long to wait for the kernel's answer (default 2 s).</summary>
    public TimeSpan AckTimeout
    {
        get => _channel.AckTimeout;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(value, TimeSpan.Zero);
            _socket.ReceiveTimeout = value;
            _channel.AckTimeout = value;
        }
    }

    /// <summary>The kernel's explanation (extended ack) of its last refusal, if it gave one.</summary>
    public string? KernelMessage { get; private set; }

    /// <summary>Opens a NETLINK_NETFILTER socket of our own for ctnetlink requests.</summary>
    /// <exception cref="NetlinkException">The socket could not be opened.</exception>
    public static CtnlClient Open()
    {
        NetlinkSocket socket = NetlinkSocket.Open(NETLINK_NETFILTER);
        try
        {
            socket.SetCapAck(true);
            socket.SetExtendedAck(true);
            return new CtnlClient(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Opens over any transport (tests replay kernel answers through a fake one).</summary>
    internal static CtnlClient Open(INetlinkTransport transport) => new(transport);

    /// <summary>Creates <paramref name="entry"/> (NLM_F_CREATE|NLM_F_EXCL).</summary>
    /// <returns><see cref="Errno.None"/>, EEXIST when a tuple of it is in the table, or the kernel's other errno.</returns>
    public Errno Create(in CtnlEntry entry)
    {
        CheckEntry(entry);
        uint sequence = _channel.NextSequences(1);
        var w = new NetlinkMessageWriter(_send);
        CtnlMessages.WriteNew(ref w, sequence, entry);
        return Request(w.WrittenSpan, sequence);
    }

    /// <summary>Deletes the entry of <paramref name="original"/>.</summary>
    /// <returns><see cref="Errno.None"/>, ENOENT when there is none, or the kernel's other errno.</returns>
    public Errno Delete(in CtnlTuple original)
    {
        CheckTuple(original);
        uint sequence = _channel.NextSequences(1);
        var w = new NetlinkMessageWriter(_send);
        CtnlMessages.WriteDelete(ref w, sequence, original);
        return Request(w.WrittenSpan, sequence);
    }

    /// <summary>Reads the reply tuple of the entry of <paramref name="original"/>.</summary>
    /// <returns><see cref="Errno.None"/> with <paramref name="reply"/> set, ENOENT when there is no such entry, or another errno.</returns>
    public Errno Get(in CtnlTuple original, out CtnlTuple reply)
    {
        CheckTuple(original);
        uint sequence = _channel.NextSequences(1);
        var w = new NetlinkMessageWriter(_send);
        CtnlMessages.WriteGet(ref w, sequence, original);
        _getSequence = sequence;
        _gotReply = default;
        Errno result = Request(w.WrittenSpan, sequence);
        _getSequence = 0;
        reply = _gotReply;
        return result == Errno.None && reply.Family == 0 ? Errno.EIO : result;
    }

    /// <summary>
    /// Creates <paramref name="entry"/>, settling an entry of the same original tuple that is there already: one with
    /// the same translated reply is as good as ours (a retried commit, say); one with another is deleted and ours
    /// created, since the kernel cannot change an entry's NAT in place.
    /// </summary>
    /// <param name="entry">The entry.</param>
    /// <param name="error">The kernel's errno when the result is <see cref="CtnlCommitResult.Failed"/>.</param>
    public CtnlCommitResult Commit(in CtnlEntry entry, out Errno error)
    {
        error = Create(entry);
        if (error == Errno.None)
        {
            return CtnlCommitResult.Created;
        }

        if (error != Errno.EEXIST)
        {
            return CtnlCommitResult.Failed;
        }

        // EEXIST also comes when only the translated reply clashes with another flow's entry: then there is nothing of
        // ours to find by the original tuple, and the flow stays where it is.
        Errno found = Get(entry.Original, out CtnlTuple reply);
        if (found != Errno.None)
        {
            error = Errno.EEXIST;
            return CtnlCommitResult.Failed;
        }

        if (reply == entry.Reply)
        {
            error = Errno.None;
            return CtnlCommitResult.AlreadyThere;
        }

        Errno deleted = Delete(entry.Original);
        if (deleted is not (Errno.None or Errno.ENOENT))
        {
            error = deleted;
            return CtnlCommitResult.Failed;
        }

        error = Create(entry);
        return error == Errno.None ? CtnlCommitResult.Replaced : CtnlCommitResult.Failed;
    }

    /// <summary>Closes the socket; the entries stay in the kernel.</summary>
    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _socket.Dispose();
        }
    }

    int INetlinkRequestOwner.FreeSlot() => 0;

    int INetlinkRequestOwner.FreeSlots => _slots.Count;

    /// <summary>A datagram that held more than acknowledgements: the entry a GET asked for (anything else is ignored).</summary>
    void INetlinkRequestOwner.TakeDatagram(int slot, NetlinkRequestChannel channel)
    {
        if (_slots.SenderPortId(slot) != 0 || _slots.IsTruncated(slot) || _getSequence == 0)
        {
            return;
        }

        var reader = new NetlinkMessageReader(_slots.Stored(slot));
        while (reader.TryRead(out NetlinkMessage m))
        {
            if (m.Type == CtnlMessages.MessageType(IPCTNL_MSG_CT_NEW) && m.Sequence == _getSequence &&
                CtnlMessages.TryReadEntry(m, out _, out CtnlTuple reply, out _) && channel.Answer(m.Sequence, 0))
            {
                _gotReply = reply;
            }
        }
    }

    private Errno Request(ReadOnlySpan<byte> message, uint sequence)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Span<int> code = stackalloc int[1];
        _channel.Exchange(message, sequence, code, this);
        KernelMessage = _channel.KernelMessage;
        return code[0] == 0 ? Errno.None : (Errno)(-code[0]);
    }

    private static void CheckEntry(in CtnlEntry entry)
    {
        CheckTuple(entry.Original);
        CheckTuple(entry.Reply);
        if (entry.Original.Family != entry.Reply.Family || entry.Original.Protocol != entry.Reply.Protocol)
        {
            throw new ArgumentException("The original and reply tuples differ in family or protocol.", nameof(entry));
        }
    }

    private static void CheckTuple(in CtnlTuple tuple)
    {
        if (tuple.Family is not (CtnlTuple.Inet or CtnlTuple.Inet6) || tuple.Protocol is not (6 or 17))
        {
            throw new ArgumentException($"A tuple of family AF_INET or AF_INET6 and protocol TCP or UDP is needed; not family {tuple.Family}, protocol {tuple.Protocol}.", nameof(tuple));
        }
    }
}
