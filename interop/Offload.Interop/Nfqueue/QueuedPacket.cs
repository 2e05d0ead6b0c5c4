namespace Offload.Interop.Nfqueue;

/// <summary>
/// One packet the kernel queued to us, as read from NFQNL_MSG_PACKET. A value, not an object: a batch of these
/// lives in the caller's span, and <see cref="Payload"/> is a slice of the queue's receive buffer, not a copy.
/// </summary>
/// <remarks>
/// The payload stays valid (and writable, so a packet can be rewritten in place and returned with
/// <see cref="NfQueue.SetVerdict(uint, NfVerdict, ReadOnlySpan{byte})"/>) until the next
/// <see cref="NfQueue.ReceiveBatch"/> or <see cref="NfQueue.Dispose"/>; copy it to keep it longer.
/// </remarks>
public readonly struct QueuedPacket
{
    private readonly byte[]? _buffer;
    private readonly int _payloadOffset;
    private readonly int _payloadLength;

    internal QueuedPacket(byte[]? buffer, int payloadOffset, int payloadLength)
    {
        _buffer = buffer;
        _payloadOffset = payloadOffset;
        _payloadLength = payloadLength;
    }

    /// <summary>The id every verdict for this packet must name; ids of one queue increase by one per packet queued.</summary>
    public uint PacketId { get; internal init; }

    /// <summary>The netfilter family the packet was queued from (NFPROTO_IPV4 = 2, NFPROTO_IPV6 = 10).</summary>
    public byte Family { get; internal init; }

    /// <summary>The link-layer protocol in host order (0x0800 IPv4, 0x86DD IPv6).</summary>
    public ushort HwProtocol { get; internal init; }

    /// <summary>The hook the packet was queued at.</summary>
    public NfHook Hook { get; internal init; }

    /// <summary>The packet's mark (skb->mark); the kernel leaves the attribute out when the mark is 0.</summary>
    public uint Mark { get; internal init; }

    /// <summary>Index of the interface the packet came in on, 0 when none (locally generated).</summary>
    public uint InputInterface { get; internal init; }

    /// <summary>Index of the interface the packet will leave by, 0 when not yet routed (PREROUTING, INPUT).</summary>
    public uint OutputInterface { get; internal init; }

    /// <summary>The bridge port the packet came in on, 0 when not bridged.</summary>
    public uint PhysicalInputInterface { get; internal init; }

    /// <summary>The bridge port the packet will leave by, 0 when not bridged.</summary>
    public uint PhysicalOutputInterface { get; internal init; }

    /// <summary>True when the kernel sent a timestamp (only when something on the machine enabled skb timestamps).</summary>
    public bool HasTimestamp { get; internal init; }

    /// <summary>The packet's receive timestamp in microseconds since the Unix epoch; 0 without <see cref="HasTimestamp"/>.</summary>
    public long TimestampMicroseconds { get; internal init; }

    /// <summary>
    /// What the kernel says about the packet's checksum and segmentation: a CSUMNOTREADY packet carries only a
    /// pseudo-header checksum, a GSO packet may be larger than the MTU (both only with the queue's GSO flag).
    /// </summary>
    public NfqSkbInfo SkbInfo { get; internal init; }

    /// <summary>
    /// True when the kernel vouches for the packet's transport checksum, so a consumer need not verify it again: it
    /// marked neither CSUM_NOTVERIFIED nor CSUMNOTREADY. The kernel's nfnetlink_queue sets CSUM_NOTVERIFIED on a packet
    /// at PREROUTING, INPUT, FORWARD, or POSTROUTING without a local socket, unless the skb's checksum is known good
    /// (skb_csum_unnecessary: CHECKSUM_UNNECESSARY from the device, a validated CHECKSUM_COMPLETE); a locally sent
    /// packet's checksum is the stack's own, and a partial one (CSUMNOTREADY) has no sum yet to trust. NFQA_SKB_INFO
    /// comes with every bind, whatever the queue's flags (Linux 3.10 on); absent, it means none of its flags.
    /// </summary>
    public bool ChecksumVerified => (SkbInfo & (NfqSkbInfo.ChecksumNotVerified | NfqSkbInfo.ChecksumNotReady)) == 0;

    /// <summary>The packet's full length in the kernel; larger than <see cref="CapturedLength"/> when the copy range cut it.</summary>
    public int OriginalLength { get; internal init; }

    /// <summary>Bytes of the packet we received (the payload length).</summary>
    public int CapturedLength => _payloadLength;

    /// <summary>
    /// True when the payload is only the first <see cref="CapturedLength"/> bytes of the packet. A truncated packet
    /// must not be returned with a payload: the kernel would replace the whole packet with the shortened copy.
    /// </summary>
    public bool IsTruncated => OriginalLength > _payloadLength;

    /// <summary>The packet from its network header on (no link-layer header), in the queue's receive buffer.</summary>
    public Span<byte> Payload => _buffer is null ? default : _buffer.AsSpan(_payloadOffset, _payloadLength);
}

/// <summary>The netfilter hooks of the inet families, by the kernel's numbers.</summary>
public enum NfHook : byte
{
    /// <summary>NF_INET_PRE_ROUTING: arrived, not yet routed.</summary>
    PreRouting = 0,

    /// <summary>NF_INET_LOCAL_IN: addressed to this machine.</summary>
    LocalIn = 1,

    /// <summary>NF_INET_FORWARD: being forwarded.</summary>
    Forward = 2,

    /// <summary>NF_INET_LOCAL_OUT: sent by this machine.</summary>
    LocalOut = 3,

    /// <summary>NF_INET_POST_ROUTING: about to leave.</summary>
    PostRouting = 4,
}

/// <summary>NFQA_SKB_INFO flags: the packet's checksum and segmentation state.</summary>
[Flags]
public enum NfqSkbInfo : uint
{
    /// <summary>Nothing special: a complete packet whose checksums are final.</summary>
    None = 0,

    /// <summary>NFQA_SKB_CSUMNOTREADY: the transport checksum holds only the pseudo-header sum (offload pending).</summary>
    ChecksumNotReady = 1 << 0,

    /// <summary>NFQA_SKB_GSO: a segmentation-offload super-packet, possibly larger than the MTU.</summary>
    Gso = 1 << 1,

    /// <summary>
    /// NFQA_SKB_CSUM_NOTVERIFIED: nobody has verified the checksum yet (the absence of this flag on a received
    /// packet means the NIC or stack already did).
    /// </summary>
    ChecksumNotVerified = 1 << 2,
}

/// <summary>The verdicts a queue consumer may give, by the kernel's numbers.</summary>
public enum NfVerdict : uint
{
    /// <summary>NF_DROP: the packet is freed.</summary>
    Drop = 0,

    /// <summary>NF_ACCEPT: the packet continues with the next rule or hook.</summary>
    Accept = 1,

    /// <summary>NF_REPEAT: the packet goes through the same hook again (and may be queued again).</summary>
    Repeat = 4,
}
