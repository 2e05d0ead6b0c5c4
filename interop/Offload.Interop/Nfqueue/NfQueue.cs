using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using Offload.Interop.Netlink;
using static Offload.Interop.Netlink.NetlinkConstants;
using static Offload.Interop.Nfqueue.NfqConstants;

namespace Offload.Interop.Nfqueue;

/// <summary>
/// One NFQUEUE queue bound to our own netlink socket: packets come in by the batch without a copy, verdicts go out
/// by the batch in one send. This is the daemon's only door to live traffic, so it is built to never stall a
/// packet: everything it receives either reaches the caller or gets a verdict itself, and nothing malformed
/// throws out of the receive loop (it is counted in <see cref="Counters"/>).
/// </summary>
/// <remarks>
/// <para>Not thread-safe: one worker owns a queue (scale out with several queues and --queue-balance).</para>
/// <para>
/// Verdicts are gathered in a send buffer and leave with <see cref="FlushVerdicts"/>, when the buffer fills, or
/// at the start of the next <see cref="ReceiveBatch"/> (which never blocks while verdicts wait).
/// </para>
/// <para>
/// Disposing unbinds the queue; packets still waiting for a verdict are then dropped by the kernel (even with
/// fail-open, which only covers a full queue or socket).
/// </para>
/// </remarks>
public sealed class NfQueue : IDisposable, INetlinkRequestOwner
{
    private readonly INetlinkTransport _socket;
    private readonly NfQueueOptions _options;
    private readonly ReceiveSlots _slots;
    private readonly byte[] _send;
    private readonly int _sendLimit;
    private readonly VerdictLedger _ledger;
    private NfQueueCounters _counters;
    private int _sendLength;
    private uint _sendSequence;

    // Datagrams received but not yet (fully) handed over: slots [_slotNext, _slotFilled), resuming at _slotOffset.
    private int _slotNext;
    private int _slotFilled;
    private int _slotOffset;

    // An open run of alike verdicts (verdict, mark or none) for the oldest undecided packets, to leave as one
    // batch message.
    private bool _runOpen;
    private uint _runVerdict;
    private bool _runHasMark;
    private uint _runMark;
    private uint _runMaxId;
    private int _runCount;

    // Configuration requests and their acknowledgements; the sequence of the last, whose answer may still turn up
    // among packets (then already taken into account).
    private readonly NetlinkRequestChannel _requests;
    private uint _lastRequestSequence;

    private bool _disposed;

    private NfQueue(INetlinkTransport socket, ushort queueNumber, NfQueueOptions options, int grantedSendBuffer)
    {
        _socket = socket;
        _options = options;
        QueueNumber = queueNumber;

        // Room for the biggest message the kernel sends us: the copied packet plus its attributes, which stay
        // well under a kilobyte without the conntrack and security-context flags (we never set them).
        int copy = Math.Min(options.CopyRange, MaxCopyRange);
        _slots = new ReceiveSlots(options.MaxBatch, copy + 1024);
        _requests = new NetlinkRequestChannel(socket, _slots) { AckTimeout = options.AckTimeout };
        _send = GC.AllocateUninitializedArray<byte>(options.SendBufferSize);

        // The kernel refuses a send longer than its send buffer less 32 bytes.
        _sendLimit = Math.Max(Math.Min(_send.Length, grantedSendBuffer - 64), NfqMessages.MaxVerdictSize);
        _ledger = new VerdictLedger(Math.Max((int)Math.Min(options.MaxQueueLength, 1u << 20), options.MaxBatch) * 2);
    }

    /// <summary>The queue number (iptables --queue-num).</summary>
    public ushort QueueNumber { get; }

    /// <summary>Our netlink port; /proc/net/netfilter/nfnetlink_queue lists it as the queue's peer.</summary>
    public uint PortId => _socket.PortId;

    /// <summary>A snapshot of what happened so far.</summary>
    public NfQueueCounters Counters
    {
        get
        {
            // Datagrams and overruns met while a request waited for its answer count as the queue's.
            var counters = _counters;
            var requests = _requests.Counters;
            counters.Datagrams += requests.Datagrams;
            counters.NoBufferEvents += requests.NoBufferEvents;
            return counters;
        }
    }

    /// <summary>Bytes of verdicts waiting for the next send.</summary>
    public int PendingVerdictBytes => _sendLength + (_runOpen ? NfqMessages.VerdictSize(_runHasMark, -1) : 0);

    /// <summary>How long <see cref="ReceiveBatch"/> waits for the first packet before returning 0.</summary>
    public TimeSpan ReceiveTimeout
    {
        get => _socket.ReceiveTimeout;
        set => _socket.ReceiveTimeout = value;
    }

    /// <summary>
    /// Binds queue <paramref name="queueNumber"/> on a new netlink socket and configures it in one request
    /// (copy mode, copy range, queue length, flags), waiting for the kernel's acknowledgement.
    /// </summary>
    /// <remarks>
    /// The obsolete NFQNL_CFG_CMD_PF_BIND/PF_UNBIND commands that older libraries send first are not sent: the
    /// kernel acknowledges them and does nothing else with that message.
    /// </remarks>
    /// <exception cref="NetlinkException">
    /// The kernel refused: EPERM when another socket holds the queue or the process lacks CAP_NET_ADMIN in this
    /// network namespace; EOPNOTSUPP for an unsupported flag; ETIMEDOUT when no acknowledgement came.
    /// </exception>
    public static NfQueue Open(ushort queueNumber, NfQueueOptions? options = null)
    {
        options ??= NfQueueOptions.Default;
        options.Validate();
        NetlinkSocket socket = NetlinkSocket.Open(NETLINK_NETFILTER);
        try
        {
            socket.SetCapAck(true);
            socket.SetExtendedAck(true);
            socket.SetNoEnobufs(options.NoEnobufs);
            socket.SetReceiveBufferSize(options.ReceiveBufferSize);
            int granted = socket.SetSendBufferSize(options.SendBufferSize);
            socket.ReceiveTimeout = options.ReceiveTimeout;
            return Open(socket, queueNumber, options, granted);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Binds over any transport (tests replay recorded kernel datagrams through a fake one).</summary>
    internal static NfQueue Open(INetlinkTransport transport, ushort queueNumber, NfQueueOptions options, int grantedSendBuffer)
    {
        options.Validate();
        var queue = new NfQueue(transport, queueNumber, options, grantedSendBuffer);
        queue.Bind();
        return queue;
    }

    /// <summary>
    /// Receives a burst of packets into <paramref name="packets"/>: waits up to <see cref="ReceiveTimeout"/> for
    /// the first, then takes whatever else is already waiting, up to the span's length, with one recvmmsg.
    /// Pending verdicts are sent first.
    /// </summary>
    /// <returns>Packets stored; 0 when none came in time (or only messages that were not packets).</returns>
    /// <remarks>Each returned packet's payload is valid until the next call; every packet needs a verdict.</remarks>
    public int ReceiveBatch(Span<QueuedPacket> packets)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (packets.IsEmpty)
        {
            return 0;
        }

        if (_slotNext >= _slotFilled)
        {
            FlushVerdicts();
            _slotNext = _slotFilled = _slotOffset = 0;
            while (true)
            {
                int n = _socket.ReceiveMany(_slots, Math.Min(packets.Length, _slots.Count));
                if (n == NetlinkSocket.NoBuffers)
                {
                    // Packets were lost (the kernel dropped or failed them open); what follows is still good.
                    _counters.NoBufferEvents++;
                    continue;
                }

                if (n == NetlinkSocket.TimedOut)
                {
                    return 0;
                }

                _counters.Datagrams += n;
                _slotFilled = n;
                break;
            }
        }

        return Drain(packets, deliver: true);
    }

    /// <summary>
    /// Gives <paramref name="verdict"/> to packet <paramref name="packetId"/>, with no mark or payload change.
    /// </summary>
    /// <remarks>
    /// A run of such verdicts, each for the oldest packet still undecided and all alike, leaves as one
    /// NFQNL_MSG_VERDICT_BATCH message: the kernel's batch verdict covers every packet it holds up to an id, so we
    /// merge only when we know no older packet is still waiting for a different answer. Answering packets in the
    /// order received gets the most merging; any order is correct.
    /// </remarks>
    public void SetVerdict(uint packetId, NfVerdict verdict)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ValidateVerdict(verdict);
        SetVerdictCoalescing(packetId, (uint)verdict, hasMark: false, 0);
    }

    /// <summary>Gives <paramref name="verdict"/> and sets the packet's mark (skb->mark) to <paramref name="mark"/>.</summary>
    /// <remarks>
    /// Merges like <see cref="SetVerdict(uint, NfVerdict)"/>: a run is alike when verdict and mark both are. The
    /// kernel's batch verdict sets the NFQA_MARK it carries on every packet it covers, and a batch without one
    /// leaves their marks alone, so a run of marked verdicts never merges with an unmarked one or another mark.
    /// </remarks>
    public void SetVerdict(uint packetId, NfVerdict verdict, uint mark)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ValidateVerdict(verdict);
        SetVerdictCoalescing(packetId, (uint)verdict, hasMark: true, mark);
    }

    /// <summary>
    /// Gives <paramref name="verdict"/> and replaces the whole packet (from the network header on) with
    /// <paramref name="payload"/>, which is copied into the send buffer at once.
    /// </summary>
    /// <remarks>
    /// The kernel takes the new packet's checksums as final: IPv4 header and TCP/UDP checksums must be correct.
    /// Never return a payload for a packet whose <see cref="QueuedPacket.IsTruncated"/> is true.
    /// </remarks>
    public void SetVerdict(uint packetId, NfVerdict verdict, ReadOnlySpan<byte> payload)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ValidateVerdict(verdict);
        ValidatePayload(payload);
        WriteSingle(packetId, (uint)verdict, hasMark: false, 0, payload, hasPayload: true);
    }

    /// <summary>Gives <paramref name="verdict"/>, replaces the packet with <paramref name="payload"/> and sets its mark.</summary>
    public void SetVerdict(uint packetId, NfVerdict verdict, ReadOnlySpan<byte> payload, uint mark)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ValidateVerdict(verdict);
        ValidatePayload(payload);
        WriteSingle(packetId, (uint)verdict, hasMark: true, mark, payload, hasPayload: true);
    }

    /// <summary>
    /// Sends one NFQNL_MSG_VERDICT_BATCH: the kernel gives <paramref name="verdict"/> to every packet it still
    /// holds for this queue whose id is not after <paramref name="maxPacketId"/>, including any the caller has
    /// not decided yet. Use it only when that is what is meant; <see cref="SetVerdict(uint, NfVerdict)"/> merges
    /// safe runs by itself.
    /// </summary>
    public void SetVerdictThrough(uint maxPacketId, NfVerdict verdict)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ValidateVerdict(verdict);
        CloseRun();
        WriteBatch(maxPacketId, (uint)verdict, hasMark: false, 0, packets: 1);
        _ledger.CompleteThrough(maxPacketId);
    }

    /// <summary>
    /// Called just before gathered verdicts leave (at the start of a receive, on a flush, or in the middle of a burst
    /// when the send buffer is full): whatever the kernel must have before these packets go on, such as the steering
    /// entry of a connection one of them announced, is sent from here. Runs on the caller's thread; must not throw.
    /// </summary>
    public Action? BeforeVerdictsSent { get; set; }

    /// <summary>Sends every gathered verdict now, in one sendmsg.</summary>
    /// <exception cref="NetlinkException">The send failed; the gathered verdicts are discarded.</exception>
    public void FlushVerdicts()
    {
        CloseRun();
        SendPending();
    }

    /// <summary>Sends pending verdicts, unbinds the queue and closes the socket.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        try
        {
            FlushVerdicts();
            var w = new NetlinkMessageWriter(_send);
            NfqMessages.WriteConfig(ref w, QueueNumber, _socket.NextSequence(), ack: false, NFQNL_CFG_CMD_UNBIND);
            _socket.SendBatch(w.WrittenSpan);
        }
        catch (NetlinkException)
        {
            // Closing the socket unbinds as well; an error here changes nothing.
        }
        finally
        {
            _disposed = true;
            _socket.Dispose();
        }
    }

    internal static void ValidateVerdict(NfVerdict verdict)
    {
        if (verdict is not (NfVerdict.Accept or NfVerdict.Drop or NfVerdict.Repeat))
        {
            ThrowBadVerdict(verdict);
        }
    }

    /// <summary>
    /// Sends one request on the queue's socket and waits for its acknowledgement; packets that arrive meanwhile
    /// are kept for the next <see cref="ReceiveBatch"/>. Used by Open, and by tests to send raw requests.
    /// </summary>
    internal void Request(ReadOnlySpan<byte> message, uint sequence, string operation, Func<Errno, string?>? hint = null)
    {
        SendPending();
        _lastRequestSequence = sequence;
        Span<int> code = stackalloc int[1];
        _requests.Exchange(message, sequence, code, this);
        if (code[0] != 0)
        {
            var errno = (Errno)(-code[0]);
            throw new NetlinkException(errno, operation, _requests.KernelMessage, hint?.Invoke(errno));
        }
    }

    internal uint NextSequence() => _socket.NextSequence();

    private void Bind()
    {
        uint flags = (_options.FailOpen ? NFQA_CFG_F_FAIL_OPEN : 0) | (_options.Gso ? NFQA_CFG_F_GSO : 0);

        // The mask names every flag we decide, so conntrack, uid/gid and secctx are switched off explicitly.
        const uint mask = NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_CONNTRACK | NFQA_CFG_F_GSO | NFQA_CFG_F_UID_GID | NFQA_CFG_F_SECCTX;
        uint sequence = _socket.NextSequence();
        Span<byte> message = stackalloc byte[128];
        var w = new NetlinkMessageWriter(message);
        NfqMessages.WriteConfig(
            ref w, QueueNumber, sequence, ack: true, NFQNL_CFG_CMD_BIND, NFQNL_COPY_PACKET,
            Math.Min(_options.CopyRange, MaxCopyRange), _options.MaxQueueLength, mask, flags);
        Request(w.WrittenSpan, sequence, $"bind NFQUEUE {QueueNumber}", BindHint);
    }

    private string? BindHint(Errno e) => e switch
    {
        Errno.EPERM => $"Another netlink socket (another process, or an NfQueue not yet disposed) holds queue {QueueNumber}, or this process lacks CAP_NET_ADMIN in its network namespace",
        Errno.EBUSY => $"This socket already holds queue {QueueNumber}",
        Errno.EOPNOTSUPP => "The kernel does not support one of the requested queue flags",
        Errno.ETIMEDOUT => "The kernel did not answer; is nfnetlink_queue available?",
        _ => null,
    };

    /// <summary>
    /// The slot for the next datagram while a request waits: packets may arrive before the acknowledgement (the queue
    /// is live the moment the kernel binds it), and stay in the slots below it for the first ReceiveBatch.
    /// </summary>
    int INetlinkRequestOwner.FreeSlot()
    {
        if (_slotFilled == _slots.Count)
        {
            // Every slot holds an undelivered packet: answer them ourselves rather than lose them.
            Drain(default, deliver: false);
            _slotNext = _slotFilled = _slotOffset = 0;
        }

        return _slotFilled;
    }

    int INetlinkRequestOwner.FreeSlots => 1;

    /// <summary>A datagram with more than the answer (packets, most likely): kept for the next ReceiveBatch.</summary>
    void INetlinkRequestOwner.TakeDatagram(int slot, NetlinkRequestChannel channel) => _slotFilled = slot + 1;

    /// <summary>
    /// Hands over the received datagrams' packets (or, with <paramref name="deliver"/> false, answers them with
    /// the unreadable verdict), resuming where the previous call stopped when the span was full.
    /// </summary>
    private int Drain(Span<QueuedPacket> packets, bool deliver)
    {
        int count = 0;
        while (_slotNext < _slotFilled && (!deliver || count < packets.Length))
        {
            int index = _slotNext;
            if (_slotOffset == 0)
            {
                if (_slots.SenderPortId(index) != 0)
                {
                    _counters.ForeignDatagrams++;
                    NextSlot();
                    continue;
                }

                if (_slots.IsTruncated(index))
                {
                    _counters.Truncated++;
                    Salvage(_slots.Stored(index));
                    NextSlot();
                    continue;
                }
            }

            ReadOnlySpan<byte> datagram = _slots.Stored(index);
            var reader = new NetlinkMessageReader(datagram, _slotOffset);
            while ((!deliver || count < packets.Length) && reader.TryRead(out NetlinkMessage message))
            {
                HandleMessage(message, packets, ref count, deliver);
            }

            if (reader.IsMalformed)
            {
                _counters.Malformed++;
                Salvage(datagram[reader.Position..]);
                NextSlot();
            }
            else if (reader.Position >= datagram.Length)
            {
                NextSlot();
            }
            else
            {
                _slotOffset = reader.Position;
            }
        }

        return count;
    }

    private void NextSlot()
    {
        _slotNext++;
        _slotOffset = 0;
    }

    private void HandleMessage(NetlinkMessage message, Span<QueuedPacket> packets, ref int count, bool deliver)
    {
        ushort type = message.Type;
        if (type == MessageType(NFQNL_MSG_PACKET))
        {
            PacketParseStatus status = NfqPacketParser.Parse(_slots.Buffer, message, out QueuedPacket packet);
            if (status == PacketParseStatus.Unreadable)
            {
                _counters.Malformed++;
                return;
            }

            if (!_ledger.Received(packet.PacketId))
            {
                _counters.LedgerOverflows++;
            }

            if (status == PacketParseStatus.Ok && deliver)
            {
                _counters.PacketsReceived++;
                packets[count++] = packet;
                return;
            }

            if (status == PacketParseStatus.MalformedWithId)
            {
                _counters.Malformed++;
            }

            _counters.AutomaticVerdicts++;
            SetVerdict(packet.PacketId, _options.UnreadableVerdict);
            return;
        }

        if (message.IsError)
        {
            if (!message.TryGetError(out NetlinkError e))
            {
                _counters.Malformed++;
            }
            else if (_lastRequestSequence != 0 && message.Sequence == _lastRequestSequence)
            {
                // The answer to our configuration request, which the request channel took when it arrived.
            }
            else if (!e.IsAck)
            {
                // We never ask verdicts to be acknowledged: an answer to one is always an error.
                _counters.VerdictErrors++;
                _counters.LastVerdictError = e.Errno;
            }

            return;
        }

        if (type is not (NLMSG_NOOP or NLMSG_DONE))
        {
            _counters.UnexpectedMessages++;
        }
    }

    // A packet message we cannot hand over still occupies a place in the kernel's queue until answered.
    private void Salvage(ReadOnlySpan<byte> messageStart)
    {
        if (NfqPacketParser.TryRecoverPacketId(messageStart, out uint id))
        {
            if (!_ledger.Received(id))
            {
                _counters.LedgerOverflows++;
            }

            _counters.AutomaticVerdicts++;
            SetVerdict(id, _options.UnreadableVerdict);
        }
    }

    private void SetVerdictCoalescing(uint packetId, uint verdict, bool hasMark, uint mark)
    {
        if (!_options.CoalesceVerdicts || !_ledger.IsOldest(packetId))
        {
            WriteSingle(packetId, verdict, hasMark, mark, default, hasPayload: false);
            return;
        }

        if (_runOpen && (_runVerdict != verdict || _runHasMark != hasMark || _runMark != mark))
        {
            CloseRun();
        }

        _ledger.Complete(packetId);
        if (!_runOpen)
        {
            _runOpen = true;
            _runVerdict = verdict;
            _runHasMark = hasMark;
            _runMark = mark;
            _runCount = 0;
        }

        _runMaxId = packetId;
        _runCount++;
    }

    private void WriteSingle(uint packetId, uint verdict, bool hasMark, uint mark, ReadOnlySpan<byte> payload, bool hasPayload)
    {
        CloseRun();
        EnsureRoom(NfqMessages.VerdictSize(hasMark, hasPayload ? payload.Length : -1));
        var w = new NetlinkMessageWriter(_send.AsSpan(_sendLength));
        NfqMessages.WriteVerdict(ref w, QueueNumber, _sendSequence, packetId, verdict, hasMark, mark, payload, hasPayload);
        _sendLength += w.Length;
        _counters.VerdictMessages++;
        _counters.PacketsVerdicted++;
        _ledger.Complete(packetId);
    }

    private void CloseRun()
    {
        if (!_runOpen)
        {
            return;
        }

        _runOpen = false;
        if (_runCount == 1)
        {
            // One packet: the plain message says exactly that, nothing more.
            EnsureRoom(NfqMessages.VerdictSize(_runHasMark, -1));
            var w = new NetlinkMessageWriter(_send.AsSpan(_sendLength));
            NfqMessages.WriteVerdict(ref w, QueueNumber, _sendSequence, _runMaxId, _runVerdict, _runHasMark, _runMark, default, false);
            _sendLength += w.Length;
            _counters.VerdictMessages++;
            _counters.PacketsVerdicted++;
            return;
        }

        WriteBatch(_runMaxId, _runVerdict, _runHasMark, _runMark, _runCount);
    }

    private void WriteBatch(uint maxPacketId, uint verdict, bool hasMark, uint mark, int packets)
    {
        EnsureRoom(NfqMessages.VerdictSize(hasMark, -1));
        var w = new NetlinkMessageWriter(_send.AsSpan(_sendLength));
        NfqMessages.WriteVerdictBatch(ref w, QueueNumber, _sendSequence, maxPacketId, verdict, hasMark, mark);
        _sendLength += w.Length;
        _counters.VerdictMessages++;
        _counters.BatchVerdictMessages++;
        _counters.PacketsVerdicted += packets;
    }

    private void EnsureRoom(int bytes)
    {
        if (_sendLength + bytes > _sendLimit)
        {
            SendPending();
        }

        if (_sendLength == 0)
        {
            _sendSequence = _socket.NextSequence();
        }
    }

    private void SendPending()
    {
        if (_sendLength == 0)
        {
            return;
        }

        try
        {
            BeforeVerdictsSent?.Invoke();
            _socket.SendBatch(_send.AsSpan(0, _sendLength));
            _counters.Sends++;
        }
        finally
        {
            _sendLength = 0;
        }
    }

    private static void ValidatePayload(ReadOnlySpan<byte> payload)
    {
        if (payload.IsEmpty || payload.Length > MaxCopyRange)
        {
            ThrowBadPayload(payload.Length);
        }
    }

    [DoesNotReturn]
    private static void ThrowBadVerdict(NfVerdict verdict) =>
        throw new ArgumentOutOfRangeException(nameof(verdict), verdict, "Only Accept, Drop and Repeat are verdicts a queue consumer may give.");

    [DoesNotReturn]
    private static void ThrowBadPayload(int length) =>
        throw new ArgumentOutOfRangeException("payload", length, $"A replacement packet must be 1 to {MaxCopyRange} bytes.");
}
