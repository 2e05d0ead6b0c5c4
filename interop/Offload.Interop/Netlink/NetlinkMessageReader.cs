using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Netlink;

/// <summary>
/// Walks the netlink messages of one received datagram. Every nlmsg_len is checked against what is left before
/// anything is read or skipped, so a lying header stops the walk (and sets <see cref="IsMalformed"/>) instead of
/// reading past the datagram or looping. Never throws.
/// </summary>
public ref struct NetlinkMessageReader
{
    private readonly ReadOnlySpan<byte> _datagram;
    private int _position;

    /// <summary>Reads the messages of <paramref name="datagram"/> from its start.</summary>
    public NetlinkMessageReader(ReadOnlySpan<byte> datagram)
        : this(datagram, 0)
    {
    }

    /// <summary>Resumes reading <paramref name="datagram"/> at <paramref name="position"/> (a previous <see cref="Position"/>).</summary>
    public NetlinkMessageReader(ReadOnlySpan<byte> datagram, int position)
    {
        _datagram = datagram;
        _position = Math.Clamp(position, 0, datagram.Length);
        IsMalformed = false;
    }

    /// <summary>Offset of the next message; lets a consumer stop mid-datagram and resume later.</summary>
    public readonly int Position => _position;

    /// <summary>True when a header was invalid; the rest of the datagram was abandoned.</summary>
    public bool IsMalformed { readonly get; private set; }

    /// <summary>Reads the next message; false at the end of the datagram or on a malformed header.</summary>
    public bool TryRead(out NetlinkMessage message)
    {
        message = default;
        if (IsMalformed)
        {
            return false;
        }

        int remaining = _datagram.Length - _position;
        if (remaining == 0)
        {
            return false;
        }

        if (remaining < NLMSG_HDRLEN)
        {
            IsMalformed = true;
            return false;
        }

        ReadOnlySpan<byte> rest = _datagram[_position..];
        uint length = HostOrder.ReadU32(rest[KernelLayout.NlMsgHdr.Length..]);
        if (length < NLMSG_HDRLEN || length > (uint)remaining)
        {
            IsMalformed = true;
            return false;
        }

        message = new NetlinkMessage(rest[..(int)length]);

        // The last message of a datagram may omit its padding (a packet payload of odd length): clamp.
        _position += Math.Min(Align((int)length), remaining);
        return true;
    }
}

/// <summary>One netlink message: its header fields and the bytes after the header, valid while the datagram is.</summary>
public readonly ref struct NetlinkMessage
{
    private readonly ReadOnlySpan<byte> _bytes;

    internal NetlinkMessage(ReadOnlySpan<byte> bytes) => _bytes = bytes;

    /// <summary>nlmsg_len: header plus payload, without trailing padding.</summary>
    public int Length => _bytes.Length;

    /// <summary>nlmsg_type; for nfnetlink the subsystem is the high byte and the message the low byte.</summary>
    public ushort Type => HostOrder.ReadU16(_bytes[KernelLayout.NlMsgHdr.Type..]);

    /// <summary>nlmsg_flags.</summary>
    public ushort Flags => HostOrder.ReadU16(_bytes[KernelLayout.NlMsgHdr.Flags..]);

    /// <summary>nlmsg_seq: the sequence of the request this answers (0 for unsolicited messages such as packets).</summary>
    public uint Sequence => HostOrder.ReadU32(_bytes[KernelLayout.NlMsgHdr.Sequence..]);

    /// <summary>nlmsg_pid: the sending port, 0 for the kernel.</summary>
    public uint PortId => HostOrder.ReadU32(_bytes[KernelLayout.NlMsgHdr.PortId..]);

    /// <summary>The bytes after the 16-byte header.</summary>
    public ReadOnlySpan<byte> Payload => _bytes[NLMSG_HDRLEN..];

    /// <summary>The whole message, header included.</summary>
    public ReadOnlySpan<byte> Bytes => _bytes;

    /// <summary>NLMSG_ERROR: an error, or an acknowledgement when its code is 0.</summary>
    public bool IsError => Type == NLMSG_ERROR;

    /// <summary>NLMSG_DONE: the end of a multi-part answer.</summary>
    public bool IsDone => Type == NLMSG_DONE;

    /// <summary>NLM_F_MULTI: one part of a multi-part answer, more follow until NLMSG_DONE.</summary>
    public bool IsMultipart => (Flags & NLM_F_MULTI) != 0;

    /// <summary>
    /// Attributes following a fixed family header of <paramref name="familyHeaderLength"/> bytes (4 for
    /// nfgenmsg); empty (and malformed) when the payload is shorter than that header.
    /// </summary>
    public AttributeReader GetAttributes(int familyHeaderLength)
    {
        int skip = Align(familyHeaderLength);
        ReadOnlySpan<byte> payload = Payload;
        if (familyHeaderLength < 0 || familyHeaderLength > payload.Length)
        {
            return AttributeReader.Malformed;
        }

        return new AttributeReader(payload[Math.Min(skip, payload.Length)..]);
    }

    /// <summary>
    /// Decodes an NLMSG_ERROR message: the error code, the header of the request it answers, and the extended-ack
    /// attributes. False when this is not an error message or it is too short to hold struct nlmsgerr.
    /// </summary>
    public bool TryGetError(out NetlinkError error)
    {
        error = default;
        ReadOnlySpan<byte> p = Payload;
        if (!IsError || p.Length < KernelLayout.NlMsgErr.Size)
        {
            return false;
        }

        int code = HostOrder.ReadI32(p[KernelLayout.NlMsgErr.Error..]);
        ReadOnlySpan<byte> request = p[KernelLayout.NlMsgErr.Message..];
        ushort requestType = HostOrder.ReadU16(request[KernelLayout.NlMsgHdr.Type..]);
        uint requestSequence = HostOrder.ReadU32(request[KernelLayout.NlMsgHdr.Sequence..]);

        ReadOnlySpan<byte> tlvs = default;
        if ((Flags & NLM_F_ACK_TLVS) != 0)
        {
            // Without NLM_F_CAPPED the whole request follows its header; the TLVs start after it, aligned.
            int echoed = NLMSG_HDRLEN;
            if ((Flags & NLM_F_CAPPED) == 0)
            {
                uint requestLength = HostOrder.ReadU32(request[KernelLayout.NlMsgHdr.Length..]);
                echoed = requestLength < NLMSG_HDRLEN || requestLength > (uint)request.Length ? request.Length : (int)requestLength;
            }

            int start = Align(KernelLayout.NlMsgErr.Message + echoed);
            if (start <= p.Length)
            {
                tlvs = p[start..];
            }
        }

        error = new NetlinkError(code, requestType, requestSequence, tlvs);
        return true;
    }

    /// <summary>The status a dump's NLMSG_DONE carries (0, or a negative errno); 0 when it carries none.</summary>
    public int GetDoneStatus() => IsDone && Payload.Length >= 4 ? HostOrder.ReadI32(Payload) : 0;
}

/// <summary>An NLMSG_ERROR decoded: the kernel's answer to one request.</summary>
public readonly ref struct NetlinkError
{
    private readonly ReadOnlySpan<byte> _extAck;

    internal NetlinkError(int code, ushort requestType, uint requestSequence, ReadOnlySpan<byte> extAck)
    {
        Code = code;
        RequestType = requestType;
        RequestSequence = requestSequence;
        _extAck = extAck;
    }

    /// <summary>0 for an acknowledgement, otherwise the negative errno the kernel returned.</summary>
    public int Code { get; }

    /// <summary>True for a positive acknowledgement (the request succeeded).</summary>
    public bool IsAck => Code == 0;

    /// <summary>The errno as a value (positive); <see cref="Errno.None"/> for an acknowledgement.</summary>
    public Errno Errno => (Errno)(-Code);

    /// <summary>nlmsg_type of the request answered.</summary>
    public ushort RequestType { get; }

    /// <summary>nlmsg_seq of the request answered.</summary>
    public uint RequestSequence { get; }

    /// <summary>The extended-ack attributes (NLMSGERR_ATTR_*), empty unless NETLINK_EXT_ACK is on and the kernel had something to say.</summary>
    public AttributeReader ExtendedAck => new(_extAck);

    /// <summary>The kernel's text explanation (NLMSGERR_ATTR_MSG) as bytes without its terminating NUL, empty if none.</summary>
    public ReadOnlySpan<byte> KernelMessage
    {
        get
        {
            AttributeReader r = ExtendedAck;
            while (r.TryRead(out NetlinkAttribute a))
            {
                if (a.Type == NLMSGERR_ATTR_MSG)
                {
                    ReadOnlySpan<byte> v = a.Value;
                    int nul = v.IndexOf((byte)0);
                    return nul >= 0 ? v[..nul] : v;
                }
            }

            return default;
        }
    }

    /// <summary>The kernel's explanation as text (allocates: for error paths only); null if none.</summary>
    public string? GetKernelMessageText()
    {
        ReadOnlySpan<byte> m = KernelMessage;
        return m.IsEmpty ? null : System.Text.Encoding.UTF8.GetString(m);
    }
}
