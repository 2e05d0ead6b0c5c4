namespace Offload.Replay.Capture;

/// <summary>One packet read from a capture.</summary>
/// <remarks>
/// When returned by <see cref="CaptureReader.TryRead"/>, <see cref="Data"/> points into the reader's
/// reusable buffer: it stays valid only until the next call to <see cref="CaptureReader.TryRead"/> or
/// <see cref="CaptureReader.Dispose"/>. Copy the bytes to keep them longer.
/// </remarks>
public readonly struct CapturedPacket
{
    public CapturedPacket(
        long timestampNanoseconds,
        int interfaceId,
        ushort linkType,
        PacketDirection direction,
        uint originalLength,
        ReadOnlyMemory<byte> data)
    {
        TimestampNanoseconds = timestampNanoseconds;
        InterfaceId = interfaceId;
        LinkType = linkType;
        Direction = direction;
        OriginalLength = originalLength;
        Data = data;
    }

    /// <summary>When the packet was captured, in nanoseconds since the Unix epoch (UTC).</summary>
    public long TimestampNanoseconds { get; }

    /// <summary>Index into <see cref="CaptureReader.Interfaces"/> of the interface the packet was seen on.</summary>
    public int InterfaceId { get; }

    /// <summary>The interface's link type, a <c>LINKTYPE_</c> value (see <see cref="LinkLayer"/>).</summary>
    public ushort LinkType { get; }

    /// <summary>Which way the packet went, when the capture records it.</summary>
    public PacketDirection Direction { get; }

    /// <summary>Length of the packet on the wire; larger than <see cref="Data"/> when the capture cut it short.</summary>
    public uint OriginalLength { get; }

    /// <summary>The captured bytes, starting with the link-layer header.</summary>
    public ReadOnlyMemory<byte> Data { get; }

    /// <summary>True when fewer bytes were captured than the packet had on the wire.</summary>
    public bool IsTruncated => OriginalLength > (uint)Data.Length;
}
