namespace Offload.Engine.Conntrack.Tcp;

/// <summary>The TCP control bits, laid out as in byte 13 of the TCP header.</summary>
[Flags]
public enum TcpSegmentFlags : byte
{
    /// <summary>No bit set.</summary>
    None = 0,

    /// <summary>No more data from the sender.</summary>
    Fin = 0x01,

    /// <summary>Synchronise sequence numbers.</summary>
    Syn = 0x02,

    /// <summary>Reset the connection.</summary>
    Rst = 0x04,

    /// <summary>Push.</summary>
    Psh = 0x08,

    /// <summary>The acknowledgment field is significant.</summary>
    Ack = 0x10,

    /// <summary>The urgent pointer is significant.</summary>
    Urg = 0x20,

    /// <summary>ECN echo.</summary>
    Ece = 0x40,

    /// <summary>Congestion window reduced.</summary>
    Cwr = 0x80,
}

/// <summary>
/// What the tracker needs from one TCP segment. The caller fills it from headers it has already
/// parsed and bounds-checked; nothing here reads the packet again except <see cref="Options"/>.
/// </summary>
public readonly ref struct TcpSegment
{
    /// <summary>Creates a segment view.</summary>
    /// <param name="seq">Sequence number, host order.</param>
    /// <param name="ack">Acknowledgment number, host order (ignored by the tracker when ACK is not set).</param>
    /// <param name="flags">The control bits (byte 13 of the header).</param>
    /// <param name="window">The raw, unscaled 16-bit window field.</param>
    /// <param name="payloadLength">Bytes of payload after the TCP header (not counting SYN or FIN).</param>
    /// <param name="options">The option bytes between the fixed 20-byte header and the data offset; may be empty.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="payloadLength"/> is negative.</exception>
    public TcpSegment(uint seq, uint ack, TcpSegmentFlags flags, ushort window, int payloadLength, ReadOnlySpan<byte> options)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(payloadLength);
        Seq = seq;
        Ack = ack;
        Flags = flags;
        Window = window;
        PayloadLength = payloadLength;
        Options = options;
    }

    /// <summary>Sequence number.</summary>
    public uint Seq { get; }

    /// <summary>Acknowledgment number.</summary>
    public uint Ack { get; }

    /// <summary>Control bits.</summary>
    public TcpSegmentFlags Flags { get; }

    /// <summary>Raw window field, before any window scaling.</summary>
    public ushort Window { get; }

    /// <summary>Payload bytes.</summary>
    public int PayloadLength { get; }

    /// <summary>The TCP options area (possibly empty).</summary>
    public ReadOnlySpan<byte> Options { get; }

    /// <summary>True when every bit of <paramref name="flags"/> is set.</summary>
    public bool Has(TcpSegmentFlags flags) => (Flags & flags) == flags;

    /// <summary>
    /// The sequence number just past this segment: SYN and FIN each take one number, as the data bytes do.
    /// </summary>
    public uint End =>
        unchecked(Seq + (uint)PayloadLength
            + ((Flags & TcpSegmentFlags.Syn) != 0 ? 1u : 0u)
            + ((Flags & TcpSegmentFlags.Fin) != 0 ? 1u : 0u));
}
