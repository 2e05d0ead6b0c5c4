using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using Offload.Interop.Netlink;
using static Offload.Interop.Ipset.IpsetConstants;
using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Ipset;

/// <summary>
/// Creates ipsets and adds and removes their entries over netlink, on a socket of its own: what the ipset tool
/// does, without a process per entry. The daemon keeps one entry per expected or offloaded flow this way, and a
/// single static iptables rule (<c>-m set --match-set NAME dst,dst,src</c>) steers those flows.
/// </summary>
/// <remarks>
/// <para>
/// Every request is sent without NLM_F_EXCL, which the kernel reads as the ipset tool's "-exist": creating a set
/// that exists with the same type and parameters, adding an entry that is present (its timeout is refreshed) and
/// deleting one that is absent all succeed.
/// </para>
/// <para>
/// <see cref="Apply"/> is the form for a packet thread: many adds and deletes in one send, each acknowledged on
/// its own, failures reported per operation and counted, no exception for a refused entry, no allocation.
/// The other methods are for setup and tests; they throw <see cref="NetlinkException"/> when the kernel refuses.
/// </para>
/// <para>Not thread-safe: one thread at a time (the socket's answers are matched to the requests in flight).</para>
/// </remarks>
public sealed class IpsetClient : IDisposable, INetlinkRequestOwner
{
    /// <summary>
    /// Most add/delete messages in one send. The kernel handles a whole send before it returns and queues every
    /// acknowledgement on our socket at once, so this bounds what the receive buffer must hold.
    /// </summary>
    public const int MaxOperationsPerSend = 256;

    private const int SendBufferBytes = 64 * 1024;
    private const int SocketReceiveBufferBytes = 1 << 20;
    private const int SocketSendBufferBytes = 256 * 1024;
    private const int ReceiveSlotCount = 64;

    // Acknowledgements are capped (NETLINK_CAP_ACK): 36 bytes, plus extended-ack text on errors.
    private const int ReceiveSlotSize = 1024;

    private readonly INetlinkTransport _socket;
    private readonly ReceiveSlots _slots;
    private readonly NetlinkRequestChannel _channel;
    private readonly byte[] _send;
    private readonly int _sendLimit;
    private readonly int[] _codes = new int[MaxOperationsPerSend];
    private readonly int[] _operationIndex = new int[MaxOperationsPerSend];
    private IpsetCounters _counters;
    private TimeSpan _ackTimeout = TimeSpan.FromSeconds(5);
    private bool _disposed;

    // The answer to the control request in flight: the reply message it waits for (0: an acknowledgement).
    private byte _replyCommand;
    private string? _kernelMessage;
    private bool _replySeen;
    private byte _replyProtocol;
    private byte _replyMin;
    private byte _replyRevision;

    private IpsetClient(INetlinkTransport socket, int grantedSendBuffer)
    {
        _socket = socket;
        _slots = new ReceiveSlots(ReceiveSlotCount, ReceiveSlotSize);
        _channel = new NetlinkRequestChannel(socket, _slots);
        _send = GC.AllocateUninitializedArray<byte>(SendBufferBytes);

        // The kernel refuses a send longer than its send buffer less 32 bytes.
        _sendLimit = Math.Max(Math.Min(_send.Length, grantedSendBuffer - 64), IpsetMessages.MaxControlMessageSize);
        Protocol = IPSET_PROTOCOL;
    }

    /// <summary>The ipset protocol version our requests carry: ours (7), or the kernel's when older.</summary>
    public byte Protocol { get; private set; }

    /// <summary>Our netlink port.</summary>
    public uint PortId => _socket.PortId;

    /// <summary>A snapshot of what happened so far.</summary>
    public IpsetCounters Counters
    {
        get
        {
            // What the shared request channel met while waiting for answers belongs to ipset's numbers.
            var counters = _counters;
            var channel = _channel.Counters;
            counters.Unanswered += channel.Unanswered;
            counters.NoBufferEvents += channel.NoBufferEvents;
            counters.StaleAnswers += channel.StaleAnswers;
            return counters;
        }
    }

    /// <summary>How long to wait for the kernel's answers before counting them lost (default 5 s).</summary>
    public TimeSpan AckTimeout
    {
        get => _ackTimeout;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(value, TimeSpan.Zero);
            _socket.ReceiveTimeout = value;
            _channel.AckTimeout = value;
            _ackTimeout = value;
        }
    }

    /// <summary>
    /// Opens a NETLINK_NETFILTER socket of our own and asks the kernel which ipset protocol it speaks.
    /// </summary>
    /// <exception cref="NetlinkException">
    /// The socket could not be opened, or the kernel did not answer as ipset does (EPROTONOSUPPORT when its
    /// protocol is older than we can speak).
    /// </exception>
    public static IpsetClient Open()
    {
        NetlinkSocket socket = NetlinkSocket.Open(NETLINK_NETFILTER);
        try
        {
            socket.SetCapAck(true);
            socket.SetExtendedAck(true);
            socket.SetReceiveBufferSize(SocketReceiveBufferBytes);
            int granted = socket.SetSendBufferSize(SocketSendBufferBytes);
            return Open(socket, granted);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Opens over any transport (tests replay recorded kernel answers through a fake one).</summary>
    internal static IpsetClient Open(INetlinkTransport transport, int grantedSendBuffer)
    {
        var client = new IpsetClient(transport, grantedSendBuffer);
        client.AckTimeout = client._ackTimeout;
        client.Handshake();
        return client;
    }

    /// <summary>
    /// Creates set <paramref name="name"/>, or does nothing when a set of that name exists with the same type and
    /// parameters.
    /// </summary>
    /// <param name="name">The set's name: 1 to 31 bytes of UTF-8.</param>
    /// <param name="type">hash:ip,port,ip or hash:ip,port.</param>
    /// <param name="family"><see cref="IpsetFamily.IPv4"/> or <see cref="IpsetFamily.IPv6"/>: a set holds one family.</param>
    /// <param name="defaultTimeoutSeconds">
    /// Null: entries never expire and take no timeout. Otherwise entries may carry a timeout, and one added
    /// without takes this one (0: permanent).
    /// </param>
    /// <param name="maxElements">The most entries the set holds; adds beyond it fail with <see cref="IpsetErrors.HashFull"/>.</param>
    /// <exception cref="ArgumentException">A bad name, type or family, or <paramref name="maxElements"/> 0.</exception>
    /// <exception cref="NetlinkException">
    /// The kernel refused: EEXIST when a set of that name exists with another type, timeout or maxelem.
    /// </exception>
    public void Create(string name, IpsetType type, byte family, uint? defaultTimeoutSeconds, uint maxElements)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Span<byte> encoded = stackalloc byte[IPSET_MAXNAMELEN];
        ReadOnlySpan<byte> setName = EncodeName(name, encoded);
        _ = IpsetMessages.TypeName(type);
        if (IpsetFamily.AddressLength(family) == 0)
        {
            throw new ArgumentException($"Family {family} is neither IpsetFamily.IPv4 (2) nor IpsetFamily.IPv6 (10).", nameof(family));
        }

        ArgumentOutOfRangeException.ThrowIfZero(maxElements);

        // Ask the kernel which revisions of the type it has, and take the newest we both know.
        uint sequence = NextSequences(1);
        var w = new NetlinkMessageWriter(_send);
        IpsetMessages.WriteTypeRequest(ref w, sequence, Protocol, type, family);
        string typeText = System.Text.Encoding.ASCII.GetString(IpsetMessages.TypeName(type)[..^1]);
        int code = Request(w.WrittenSpan, sequence, IPSET_CMD_TYPE, $"look up ipset type {typeText}");
        ThrowIfFailed(code, $"look up ipset type {typeText}");
        byte revision = Math.Min(IpsetMessages.NewestKnownRevision(type), _replyRevision);
        if (revision < _replyMin)
        {
            throw new NetlinkException(
                IpsetErrors.FindType, $"create ipset {name}", hint: $"The kernel offers {typeText} revisions {_replyMin} to {_replyRevision} only; we know up to {IpsetMessages.NewestKnownRevision(type)}");
        }

        sequence = NextSequences(1);
        w = new NetlinkMessageWriter(_send);
        IpsetMessages.WriteCreate(ref w, sequence, Protocol, setName, type, revision, family, defaultTimeoutSeconds, maxElements);
        string operation = $"create ipset {name} ({typeText})";
        code = Request(w.WrittenSpan, sequence, 0, operation);
        if (code == -(int)Errno.EEXIST)
        {
            throw new NetlinkException(
                Errno.EEXIST, operation, _kernelMessage, "A set of this name exists with another type, timeout or maxelem (or is of another kind altogether)");
        }

        ThrowIfFailed(code, operation);
    }

    /// <summary>Destroys set <paramref name="name"/>; a missing set is not an error.</summary>
    /// <exception cref="NetlinkException">The kernel refused: <see cref="IpsetErrors.Busy"/> while an iptables rule refers to the set.</exception>
    public void Destroy(string name)
    {
        int code = SetCommand(IPSET_CMD_DESTROY, name, out string operation);
        if (code != -(int)Errno.ENOENT)
        {
            ThrowIfFailed(code, operation);
        }
    }

    /// <summary>Removes every entry of set <paramref name="name"/>.</summary>
    /// <exception cref="NetlinkException">The kernel refused (ENOENT: no such set).</exception>
    public void Flush(string name) => ThrowIfFailed(SetCommand(IPSET_CMD_FLUSH, name, out string operation), operation);

    /// <summary>
    /// Swaps sets <paramref name="name"/> and <paramref name="name2"/> atomically: a rule that matches one of them
    /// sees the other's entries from one packet to the next, never an empty set in between.
    /// </summary>
    /// <exception cref="NetlinkException">
    /// The kernel refused: ENOENT when the first set is missing, <see cref="IpsetErrors.SecondSet"/> when the second
    /// is, <see cref="IpsetErrors.TypeMismatch"/> when their types or families differ.
    /// </exception>
    public void Swap(string name, string name2)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Span<byte> encoded = stackalloc byte[IPSET_MAXNAMELEN];
        Span<byte> encoded2 = stackalloc byte[IPSET_MAXNAMELEN];
        ReadOnlySpan<byte> setName = EncodeName(name, encoded);
        ReadOnlySpan<byte> setName2 = EncodeName(name2, encoded2);
        uint sequence = NextSequences(1);
        var w = new NetlinkMessageWriter(_send);
        IpsetMessages.WriteSwap(ref w, sequence, Protocol, setName, setName2);
        string operation = $"swap ipsets {name} and {name2}";
        ThrowIfFailed(Request(w.WrittenSpan, sequence, 0, operation), operation);
    }

    /// <summary>
    /// Adds <paramref name="entry"/>, or refreshes it (timeout included) when present. One request and its
    /// acknowledgement; a packet thread should gather operations for <see cref="Apply"/> instead.
    /// </summary>
    /// <param name="name">The set.</param>
    /// <param name="entry">The entry; it must suit the set (family, second address for hash:ip,port,ip).</param>
    /// <param name="timeoutSeconds">Seconds until the kernel removes it; null for the set's default; 0 for never.</param>
    /// <exception cref="NetlinkException">The kernel refused (the errno or ipset code, see <see cref="IpsetErrors"/>).</exception>
    public void Add(string name, in IpsetEntry entry, uint? timeoutSeconds = null)
    {
        IpsetOperation op = IpsetOperation.Add(name, entry, timeoutSeconds);
        ApplyOne(op, "add");
    }

    /// <summary>Deletes <paramref name="entry"/>; an absent entry is not an error.</summary>
    /// <exception cref="NetlinkException">The kernel refused (ENOENT: no such set).</exception>
    public void Delete(string name, in IpsetEntry entry)
    {
        IpsetOperation op = IpsetOperation.Delete(name, entry);
        ApplyOne(op, "delete");
    }

    /// <summary>True when set <paramref name="name"/> holds <paramref name="entry"/> (and it has not timed out).</summary>
    /// <exception cref="NetlinkException">The kernel refused the question (ENOENT: no such set).</exception>
    public bool Test(string name, in IpsetEntry entry)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckEntry(entry);
        Span<byte> encoded = stackalloc byte[IPSET_MAXNAMELEN];
        ReadOnlySpan<byte> setName = EncodeName(name, encoded);
        uint sequence = NextSequences(1);
        var w = new NetlinkMessageWriter(_send);
        IpsetMessages.WriteEntryCommand(ref w, IPSET_CMD_TEST, sequence, Protocol, setName, entry, null);
        string operation = $"test ipset {name} for {entry}";
        int code = Request(w.WrittenSpan, sequence, 0, operation);
        if (code == -IPSET_ERR_EXIST)
        {
            return false;
        }

        ThrowIfFailed(code, operation);
        return true;
    }

    /// <summary>
    /// Applies <paramref name="operations"/> in order: up to <see cref="MaxOperationsPerSend"/> add/delete
    /// messages leave in one send, each with its own sequence number and acknowledgement. A refused operation
    /// fails alone; the others take effect.
    /// </summary>
    /// <param name="operations">The adds and deletes.</param>
    /// <param name="results">
    /// Optional, at least as long as <paramref name="operations"/>: receives <see cref="Errno.None"/> for each
    /// operation that took effect, otherwise its errno or ipset code (<see cref="IpsetErrors"/>; EINVAL for a bad
    /// set name or a default entry, never sent; ENOBUFS or ETIMEDOUT when the answer was lost).
    /// </param>
    /// <returns>How many operations failed.</returns>
    /// <remarks>Allocates nothing; counts everything in <see cref="Counters"/>.</remarks>
    /// <exception cref="ArgumentException"><paramref name="results"/> is shorter than <paramref name="operations"/>.</exception>
    public int Apply(ReadOnlySpan<IpsetOperation> operations, Span<Errno> results = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!results.IsEmpty && results.Length < operations.Length)
        {
            throw new ArgumentException($"results holds {results.Length} places for {operations.Length} operations.", nameof(results));
        }

        Span<byte> name = stackalloc byte[IPSET_MAXNAMELEN];
        int failed = 0;
        int next = 0;
        while (next < operations.Length)
        {
            uint first = NextSequences(MaxOperationsPerSend);
            var w = new NetlinkMessageWriter(_send.AsSpan(0, _sendLimit));
            int messages = 0;
            while (next < operations.Length && messages < MaxOperationsPerSend && _sendLimit - w.Length >= IpsetMessages.MaxEntryMessageSize)
            {
                ref readonly IpsetOperation op = ref operations[next];
                if (op.SetName is null || op.Entry.Family == 0 || !IpsetMessages.TryEncodeName(op.SetName, name, out int nameLength))
                {
                    // A caller's mistake, not the kernel's answer: fail it here rather than send what it would refuse.
                    _counters.Operations++;
                    Record(next, -(int)Errno.EINVAL, results, ref failed);
                    next++;
                    continue;
                }

                bool add = op.Kind == IpsetOperationKind.Add;
                IpsetMessages.WriteEntryCommand(
                    ref w, add ? IPSET_CMD_ADD : IPSET_CMD_DEL, first + (uint)messages, Protocol, name[..nameLength], op.Entry, add ? op.TimeoutSeconds : null);
                _operationIndex[messages] = next;
                messages++;
                next++;
            }

            if (messages > 0)
            {
                SendAndCollect(w.WrittenSpan, first, messages);
                for (int k = 0; k < messages; k++)
                {
                    Record(_operationIndex[k], _codes[k], results, ref failed);
                }
            }
        }

        return failed;
    }

    /// <summary>Closes the socket. Sets and their entries stay in the kernel.</summary>
    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _socket.Dispose();
        }
    }

    private void Handshake()
    {
        uint sequence = NextSequences(1);
        var w = new NetlinkMessageWriter(_send);
        IpsetMessages.WriteProtocolRequest(ref w, sequence);
        const string operation = "ask the kernel's ipset protocol";
        int code = Request(w.WrittenSpan, sequence, IPSET_CMD_PROTOCOL, operation);
        ThrowIfFailed(code, operation);
        if (!_replySeen || _replyProtocol < IPSET_PROTOCOL_MIN)
        {
            throw new NetlinkException(Errno.EPROTONOSUPPORT, operation, hint: $"The kernel speaks ipset protocol {_replyProtocol}; we need {IPSET_PROTOCOL_MIN} or later");
        }

        Protocol = Math.Min(IPSET_PROTOCOL, _replyProtocol);
    }

    private void ApplyOne(in IpsetOperation op, string verb)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckEntry(op.Entry);
        Span<byte> encoded = stackalloc byte[IPSET_MAXNAMELEN];
        _ = EncodeName(op.SetName, encoded);
        Span<Errno> result = stackalloc Errno[1];
        if (Apply(new ReadOnlySpan<IpsetOperation>(in op), result) != 0)
        {
            string operation = $"{verb} {op.Entry} {(verb == "add" ? "to" : "from")} ipset {op.SetName}";
            throw new NetlinkException(result[0], operation, _channel.KernelMessage, IpsetErrors.Hint(result[0]));
        }
    }

    private int SetCommand(byte command, string name, out string operation)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Span<byte> encoded = stackalloc byte[IPSET_MAXNAMELEN];
        ReadOnlySpan<byte> setName = EncodeName(name, encoded);
        uint sequence = NextSequences(1);
        var w = new NetlinkMessageWriter(_send);
        IpsetMessages.WriteSetCommand(ref w, command, sequence, Protocol, setName);
        operation = $"{(command == IPSET_CMD_DESTROY ? "destroy" : "flush")} ipset {name}";
        return Request(w.WrittenSpan, sequence, 0, operation);
    }

    private uint NextSequences(int count) => _channel.NextSequences(count);

    private void Record(int operation, int code, Span<Errno> results, ref int failed)
    {
        Errno errno = code == 0 ? Errno.None : (Errno)(-code);
        if (!results.IsEmpty)
        {
            results[operation] = errno;
        }

        if (errno != Errno.None)
        {
            failed++;
            _counters.Failed++;
            _counters.LastError = errno;
        }
    }

    /// <summary>
    /// Sends a run of add/delete messages numbered from <paramref name="first"/> and collects their answers into
    /// <see cref="_codes"/>; what never comes is marked ENOBUFS (lost in an overrun) or ETIMEDOUT.
    /// </summary>
    private void SendAndCollect(ReadOnlySpan<byte> messages, uint first, int count)
    {
        _counters.Operations += count;
        _replyCommand = 0;
        if (_channel.Exchange(messages, first, _codes.AsSpan(0, count), this))
        {
            _counters.Sends++;
        }
    }

    int INetlinkRequestOwner.FreeSlot() => 0;

    int INetlinkRequestOwner.FreeSlots => _slots.Count;

    /// <summary>
    /// A datagram with more than acknowledgements: the reply a control request waits for, or something to count
    /// (a foreign sender, a truncated datagram, a message nobody asked for).
    /// </summary>
    void INetlinkRequestOwner.TakeDatagram(int slot, NetlinkRequestChannel channel)
    {
        if (_slots.SenderPortId(slot) != 0 || _slots.IsTruncated(slot))
        {
            _counters.Malformed++;
            return;
        }

        var reader = new NetlinkMessageReader(_slots.Stored(slot));
        while (reader.TryRead(out NetlinkMessage m))
        {
            if (m.IsError)
            {
                if (!m.TryGetError(out _))
                {
                    _counters.Malformed++;
                }

                continue; // The channel has matched (or counted) every readable answer.
            }

            if (_replyCommand != 0 && m.Type == MessageType(_replyCommand))
            {
                // The answer to a query (the channel counts one it did not wait for).
                if (channel.Answer(m.Sequence, 0))
                {
                    ReadReply(m);
                }
            }
            else
            {
                _counters.StaleAnswers++;
            }
        }

        if (reader.IsMalformed)
        {
            _counters.Malformed++;
        }
    }

    /// <summary>
    /// Sends one control request and waits for its answer: the acknowledgement, or for a request without
    /// NLM_F_ACK (protocol and type queries) the reply message of <paramref name="replyCommand"/> or an error.
    /// </summary>
    /// <returns>0, or the kernel's negative error code (-ETIMEDOUT when nothing came).</returns>
    private int Request(ReadOnlySpan<byte> message, uint sequence, byte replyCommand, string operation)
    {
        _replySeen = false;
        _replyProtocol = _replyMin = _replyRevision = 0;
        _replyCommand = replyCommand;
        Span<int> code = stackalloc int[1];
        bool sent = _channel.Exchange(message, sequence, code, this);
        _kernelMessage = _channel.KernelMessage;
        if (!sent)
        {
            throw new NetlinkException((Errno)(-code[0]), operation);
        }

        return code[0];
    }

    // The answers to IPSET_CMD_PROTOCOL (PROTOCOL, PROTOCOL_MIN) and IPSET_CMD_TYPE (REVISION, REVISION_MIN).
    private void ReadReply(NetlinkMessage m)
    {
        _replySeen = true;
        AttributeReader r = m.GetAttributes(KernelLayout.NfGenMsg.Size);
        while (r.TryRead(out NetlinkAttribute a))
        {
            if (!a.TryGetU8(out byte value))
            {
                continue;
            }

            switch (a.Type)
            {
                case IPSET_ATTR_PROTOCOL:
                    _replyProtocol = value;
                    break;
                case IPSET_ATTR_PROTOCOL_MIN:
                    _replyMin = value;
                    break;
                case IPSET_ATTR_REVISION:
                    _replyRevision = value;
                    break;
                default:
                    break;
            }
        }
    }

    private void ThrowIfFailed(int code, string operation)
    {
        if (code == 0)
        {
            return;
        }

        var errno = (Errno)(-code);
        string? hint = errno == Errno.ETIMEDOUT ? "The kernel did not answer; is ip_set available?" : IpsetErrors.Hint(errno);
        throw new NetlinkException(errno, operation, _kernelMessage, hint);
    }

    private static ReadOnlySpan<byte> EncodeName(string name, Span<byte> buffer)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!IpsetMessages.TryEncodeName(name, buffer, out int length))
        {
            ThrowBadName(name);
        }

        return buffer[..length];
    }

    private static void CheckEntry(in IpsetEntry entry)
    {
        if (entry.Family == 0)
        {
            throw new ArgumentException("The entry is default(IpsetEntry); construct one.", nameof(entry));
        }
    }

    [DoesNotReturn]
    private static void ThrowBadName(string name) =>
        throw new ArgumentException($"An ipset name is 1 to {IpsetMessages.MaxNameBytes} bytes of UTF-8 without NUL; \"{name}\" is not.", nameof(name));
}
