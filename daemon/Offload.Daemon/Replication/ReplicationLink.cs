using System.Buffers.Binary;

namespace Offload.Daemon.Replication;

/// <summary>
/// One end of the replication link, without the socket: the FTFW shape of conntrackd (sequence numbers, cumulative
/// ACKs, NACK of a gap, a bounded resend queue, HELLO for a resync), with every datagram authenticated and every
/// refusal counted. Single-threaded: the replication thread calls everything.
/// </summary>
/// <remarks>
/// Replays: each node has an epoch (its start time); a peer's epoch is learnt from a HELLO, or from a HELLO reply
/// that echoes our own epoch (so an old reply cannot be replayed at a restarted node). Within an epoch, data sequence
/// numbers must come in order and control messages carry a counter of their own that must grow. A reflected datagram
/// (ours, sent back to us) carries our own sender id and is refused. The receiver applies data strictly in order
/// (records are whole state, but a destroy overtaken by an older update would bring a connection back).
/// </remarks>
internal sealed class ReplicationLink
{
    /// <summary>Datagrams kept for a resend until acknowledged.</summary>
    public const int ResendCapacity = 1024;

    /// <summary>How far beyond the expected sequence number a datagram may be and still be a gap (NACKed, not refused as garbage).</summary>
    public const int Window = 4 * ResendCapacity;

    /// <summary>A peer unheard for this long is down.</summary>
    public static readonly long PeerTimeout = 3_000_000_000L;

    private static readonly long HelloInterval = 1_000_000_000L;
    private static readonly long AliveInterval = 1_000_000_000L;
    private static readonly long ResendTimeout = 300_000_000L;
    private static readonly long AckDelay = 20_000_000L;
    private static readonly long NackDelay = 50_000_000L;

    private readonly byte[] _key;
    private readonly uint _localId;
    private readonly uint _peerId;
    private readonly Action<byte[], int> _send;
    private readonly Func<long> _now;
    private readonly FloodLimiter _limiter;
    private readonly byte[] _control = new byte[ReplicationWire.HeaderLength + 32 + ReplicationWire.MacLength];
    private readonly Queued[] _queue = new Queued[ResendCapacity];
    private readonly long[] _refused = new long[Enum.GetValues<Refusal>().Length];
    private int _queueHead;
    private int _queueCount;
    private uint _nextSeq = 1;
    private uint _controlSeq;

    private long _peerEpoch;
    private uint _peerControlSeq;
    private bool _receiving;
    private uint _expected;
    private int _unacked;
    private long _lastAckAt;
    private uint _lastNackFor;
    private long _lastNackAt = long.MinValue / 2;
    private long _lastHeard = long.MinValue / 2;
    private long _lastHelloAt = long.MinValue / 2;
    private long _lastAliveAt = long.MinValue / 2;
    private bool _answered;

    public ReplicationLink(byte[] key, uint localId, uint peerId, long epoch, Action<byte[], int> send, Func<long> now, FloodLimiter? limiter = null)
    {
        _key = key;
        _localId = localId;
        _peerId = peerId;
        Epoch = epoch;
        _send = send;
        _now = now;
        _limiter = limiter ?? new FloodLimiter(FloodLimiter.DefaultRate, FloodLimiter.DefaultBurst);
    }

    /// <summary>This node's epoch.</summary>
    public long Epoch { get; }

    /// <summary>True on the active node: data received is not applied (counted), and the service sends.</summary>
    public bool Active { get; set; }

    /// <summary>Applies one in-order data body (the standby's engine). Throws for a malformed body.</summary>
    public Action<byte[], int, int>? Apply { get; set; }

    /// <summary>The peer asked for everything (a HELLO), or lost what the resend queue no longer holds.</summary>
    public Action? ResyncRequested { get; set; }

    /// <summary>The peer has a new epoch: what its old slots named is forgotten.</summary>
    public Action? PeerRestarted { get; set; }

    public long DataSent { get; private set; }

    public long Acked { get; private set; }

    public long Resent { get; private set; }

    public long DataReceived { get; private set; }

    public long IgnoredAsActive { get; private set; }

    public long HellosReceived { get; private set; }

    public long Lost { get; private set; }

    /// <summary>The peer's last announced role (from ALIVE): null before the first.</summary>
    public bool? PeerActive { get; private set; }

    public long PeerEpoch => _peerEpoch;

    public uint NextSeq => _nextSeq;

    public uint ExpectedSeq => _expected;

    public int Unacknowledged => _queueCount;

    public long Refused(Refusal reason) => _refused[(int)reason];

    public long RefusedTotal => _refused.Sum();

    /// <summary>Heard from within <see cref="PeerTimeout"/>.</summary>
    public bool PeerUp => _now() - _lastHeard < PeerTimeout;

    /// <summary>The peer knows where our data stream is (it answered... or asked): data may be sent, and there is room to keep it.</summary>
    public bool CanSend => PeerUp && _queueCount < ResendCapacity;

    public int Room => ResendCapacity - _queueCount;

    /// <summary>Sends one datagram of records (at most <see cref="ReplicationWire.MaxBody"/> bytes), kept until acknowledged.</summary>
    public void SendData(ReadOnlySpan<byte> records)
    {
        if (_queueCount == ResendCapacity)
        {
            throw new InvalidOperationException("the resend queue is full: check CanSend first");
        }

        ref var slot = ref _queue[(_queueHead + _queueCount) % ResendCapacity];
        slot.Datagram ??= new byte[ReplicationWire.MaxDatagram];
        records.CopyTo(slot.Datagram.AsSpan(ReplicationWire.HeaderLength));
        slot.Seq = _nextSeq++;
        slot.Length = ReplicationWire.Seal(slot.Datagram, _key, MessageType.Data, _localId, Epoch, slot.Seq, records.Length);
        slot.SentAt = _now();
        _queueCount++;
        DataSent++;
        _send(slot.Datagram, slot.Length);
    }

    /// <summary>Timers: HELLO until answered, ALIVE, resends of what was not acknowledged, delayed ACKs.</summary>
    public void Tick()
    {
        long now = _now();
        if (!_answered && now - _lastHelloAt >= HelloInterval)
        {
            SendHello();
        }

        if (now - _lastAliveAt >= AliveInterval)
        {
            _lastAliveAt = now;
            Span<byte> body = stackalloc byte[17];
            BinaryPrimitives.WriteInt64BigEndian(body, _peerEpoch);
            BinaryPrimitives.WriteUInt32BigEndian(body.Slice(8), _queueCount > 0 ? _queue[_queueHead].Seq : _nextSeq);
            BinaryPrimitives.WriteUInt32BigEndian(body.Slice(12), _nextSeq);
            body[16] = Active ? (byte)1 : (byte)0;
            SendControl(MessageType.Alive, body);
        }

        if (_queueCount > 0 && now - _queue[_queueHead].SentAt >= ResendTimeout)
        {
            ResendFrom(_queue[_queueHead].Seq);
        }

        if (_unacked > 0 && now - _lastAckAt >= AckDelay)
        {
            SendAck();
        }
    }

    /// <summary>Handles one received datagram. Returns why it was refused, or <see cref="Refusal.None"/>.</summary>
    public Refusal Receive(byte[] buffer, int length)
    {
        var refusal = Handle(buffer, length);
        if (refusal != Refusal.None)
        {
            _refused[(int)refusal]++;
        }

        return refusal;
    }

    private Refusal Handle(byte[] buffer, int length)
    {
        long now = _now();
        if (!_limiter.TryTake(now))
        {
            return Refusal.RateLimited; // before the MAC: a flood costs a counter, not a hash
        }

        var refusal = ReplicationWire.Open(buffer.AsSpan(0, length), _key, out var header);
        if (refusal != Refusal.None)
        {
            return refusal;
        }

        if (header.Sender != _peerId)
        {
            return Refusal.WrongSender;
        }

        var body = buffer.AsSpan(ReplicationWire.HeaderLength, header.BodyLength);
        switch (header.Type)
        {
            case MessageType.Hello:
                return OnHello(header);
            case MessageType.HelloReply:
                return OnHelloReply(header, body);
        }

        if (header.Epoch != _peerEpoch || _peerEpoch == 0)
        {
            if (header.Epoch < _peerEpoch)
            {
                return Refusal.Replayed;
            }

            SendHelloSoon(now);
            return Refusal.Unsynced;
        }

        if (header.Type == MessageType.Data)
        {
            return OnData(header, buffer, now);
        }

        if (!TakeControlSeq(header))
        {
            return Refusal.Replayed;
        }

        _lastHeard = now;
        switch (header.Type)
        {
            case MessageType.Ack when body.Length == 12:
                return BinaryPrimitives.ReadInt64BigEndian(body) == Epoch ? OnAck(BinaryPrimitives.ReadUInt32BigEndian(body.Slice(8))) : Refusal.Replayed;
            case MessageType.Nack when body.Length == 12:
                return BinaryPrimitives.ReadInt64BigEndian(body) == Epoch ? OnNack(BinaryPrimitives.ReadUInt32BigEndian(body.Slice(8))) : Refusal.Replayed;
            case MessageType.Alive when body.Length == 17:
                OnAlive(BinaryPrimitives.ReadUInt32BigEndian(body.Slice(8)), BinaryPrimitives.ReadUInt32BigEndian(body.Slice(12)), body[16] != 0, now);
                return Refusal.None;
            default:
                return Refusal.Malformed;
        }
    }

    private bool TakeControlSeq(in ReplicationWire.Header header)
    {
        if (header.Epoch == _peerEpoch && (int)(header.Seq - _peerControlSeq) <= 0)
        {
            return false;
        }

        _peerControlSeq = header.Seq;
        return true;
    }

    private Refusal OnHello(in ReplicationWire.Header header)
    {
        if (header.Epoch < _peerEpoch || !TakeControlSeq(header))
        {
            return Refusal.Replayed;
        }

        HellosReceived++;
        bool restarted = header.Epoch > _peerEpoch;
        if (restarted)
        {
            _peerEpoch = header.Epoch;
            _receiving = false;
            _answered = false; // the restarted peer has not heard our epoch: it needs our HELLO answered too
            PeerRestarted?.Invoke();
        }

        _lastHeard = _now();
        _peerControlSeq = header.Seq;

        // It starts from nothing: what we kept for its former self is of no use; it gets everything instead.
        _queueCount = 0;
        Span<byte> body = stackalloc byte[12];
        BinaryPrimitives.WriteInt64BigEndian(body, header.Epoch);
        BinaryPrimitives.WriteUInt32BigEndian(body.Slice(8), _nextSeq);
        SendControl(MessageType.HelloReply, body);
        ResyncRequested?.Invoke();
        if (restarted)
        {
            SendHello(); // ours may have gone to its former self
        }
        else if (!_receiving)
        {
            SendHelloSoon(_now()); // unless ours crossed it on the way
        }

        return Refusal.None;
    }

    private Refusal OnHelloReply(in ReplicationWire.Header header, ReadOnlySpan<byte> body)
    {
        if (body.Length != 12)
        {
            return Refusal.Malformed;
        }

        if (BinaryPrimitives.ReadInt64BigEndian(body) != Epoch || header.Epoch < _peerEpoch || !TakeControlSeq(header))
        {
            return Refusal.Replayed; // an answer to a HELLO of an earlier run of ours, or one already taken
        }

        if (header.Epoch > _peerEpoch)
        {
            _peerEpoch = header.Epoch;
            PeerRestarted?.Invoke();
        }

        _peerControlSeq = header.Seq;
        _expected = BinaryPrimitives.ReadUInt32BigEndian(body.Slice(8));
        _receiving = true;
        _answered = true;
        _lastHeard = _now();
        return Refusal.None;
    }

    private Refusal OnData(in ReplicationWire.Header header, byte[] buffer, long now)
    {
        if (!_receiving)
        {
            SendHelloSoon(now);
            return Refusal.Unsynced;
        }

        int ahead = (int)(header.Seq - _expected);
        if (ahead < 0)
        {
            _unacked++; // its ACK was lost, or this is a replay: either way the sender may drop it
            return Refusal.Replayed;
        }

        if (ahead > Window)
        {
            return Refusal.OutOfWindow;
        }

        _lastHeard = now;
        if (ahead > 0)
        {
            if (_expected != _lastNackFor || now - _lastNackAt >= NackDelay)
            {
                _lastNackFor = _expected;
                _lastNackAt = now;
                SendSeq(MessageType.Nack, _expected);
            }

            return Refusal.OutOfOrder;
        }

        _expected++;
        _unacked++;
        DataReceived++;
        if (_unacked >= 32)
        {
            SendAck();
        }

        if (Active)
        {
            IgnoredAsActive++;
            return Refusal.None;
        }

        try
        {
            Apply?.Invoke(buffer, ReplicationWire.HeaderLength, header.BodyLength);
        }
        catch (Engine.Snapshot.SnapshotException)
        {
            // Authenticated but not understood (a peer of another build): resending it would not help.
            return Refusal.Malformed;
        }

        return Refusal.None;
    }

    private Refusal OnAck(uint upTo)
    {
        while (_queueCount > 0 && (int)(_queue[_queueHead].Seq - upTo) <= 0)
        {
            _queueHead = (_queueHead + 1) % ResendCapacity;
            _queueCount--;
            Acked++;
        }

        return Refusal.None;
    }

    private Refusal OnNack(uint from)
    {
        if ((int)(from - _nextSeq) >= 0)
        {
            return Refusal.Malformed; // a gap in what was never sent
        }

        if (_queueCount == 0 || (int)(from - _queue[_queueHead].Seq) < 0)
        {
            // Gone from the resend queue: the peer gets everything again, and skips what it cannot have.
            Lost++;
            _queueCount = 0;
            _lastAliveAt = long.MinValue / 2;
            ResyncRequested?.Invoke();
            return Refusal.None;
        }

        OnAck(from - 1);
        ResendFrom(from);
        return Refusal.None;
    }

    private void OnAlive(uint oldest, uint next, bool active, long now)
    {
        PeerActive = active;
        if (!_receiving)
        {
            return;
        }

        if ((int)(_expected - oldest) < 0)
        {
            // What we miss is no longer held: take the stream from where it is; the HELLO asks for a resync.
            Lost++;
            _expected = oldest;
            SendHello();
        }

        if ((int)(next - _expected) > 0 && (_expected != _lastNackFor || now - _lastNackAt >= NackDelay))
        {
            _lastNackFor = _expected;
            _lastNackAt = now;
            SendSeq(MessageType.Nack, _expected);
        }
    }

    private void ResendFrom(uint from)
    {
        long now = _now();
        for (int i = 0; i < _queueCount; i++)
        {
            ref var slot = ref _queue[(_queueHead + i) % ResendCapacity];
            if ((int)(slot.Seq - from) >= 0)
            {
                slot.SentAt = now;
                Resent++;
                _send(slot.Datagram!, slot.Length);
            }
        }
    }

    private void SendAck()
    {
        _unacked = 0;
        _lastAckAt = _now();
        SendSeq(MessageType.Ack, _expected - 1);
    }

    private void SendSeq(MessageType type, uint seq)
    {
        Span<byte> body = stackalloc byte[12];
        BinaryPrimitives.WriteInt64BigEndian(body, _peerEpoch);
        BinaryPrimitives.WriteUInt32BigEndian(body.Slice(8), seq);
        SendControl(type, body);
    }

    private void SendHelloSoon(long now)
    {
        if (now - _lastHelloAt >= HelloInterval / 4)
        {
            SendHello();
        }
    }

    private void SendHello()
    {
        _lastHelloAt = _now();
        SendControl(MessageType.Hello, []);
    }

    private void SendControl(MessageType type, ReadOnlySpan<byte> body)
    {
        body.CopyTo(_control.AsSpan(ReplicationWire.HeaderLength));
        int length = ReplicationWire.Seal(_control, _key, type, _localId, Epoch, ++_controlSeq, body.Length);
        _send(_control, length);
    }

    private struct Queued
    {
        public byte[]? Datagram;
        public int Length;
        public uint Seq;
        public long SentAt;
    }
}
