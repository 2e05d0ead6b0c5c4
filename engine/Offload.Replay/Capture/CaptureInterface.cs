namespace Offload.Replay.Capture;

/// <summary>An interface described by a capture: the one implicit interface of a classic pcap file, or a pcapng Interface Description Block.</summary>
public sealed class CaptureInterface
{
    internal CaptureInterface(int id, string? name, ushort linkType, uint snaplen, TimestampResolution resolution, long timestampOffsetSeconds)
    {
        Id = id;
        Name = name;
        LinkType = linkType;
        Snaplen = snaplen;
        TimestampResolution = resolution;
        TimestampOffsetSeconds = timestampOffsetSeconds;
    }

    /// <summary>
    /// Index of this interface in <see cref="CaptureReader.Interfaces"/>, and the <see cref="CapturedPacket.InterfaceId"/>
    /// of its packets. It counts across all sections of a pcapng file, so it equals the file's own interface id
    /// only in the first section.
    /// </summary>
    public int Id { get; }

    /// <summary>The pcapng <c>if_name</c> option, or null when absent (always null for classic pcap).</summary>
    public string? Name { get; }

    /// <summary>The link type, a <c>LINKTYPE_</c> value (see <see cref="LinkLayer"/>).</summary>
    public ushort LinkType { get; }

    /// <summary>Maximum number of bytes captured per packet; 0 means no limit.</summary>
    public uint Snaplen { get; }

    /// <summary>The unit of the timestamps recorded in the file for this interface.</summary>
    public TimestampResolution TimestampResolution { get; }

    /// <summary>The pcapng <c>if_tsoffset</c> option: seconds added to every timestamp of the interface (0 when absent).</summary>
    public long TimestampOffsetSeconds { get; }

    public override string ToString() =>
        $"#{Id} {Name ?? "(unnamed)"} linktype {LinkType} snaplen {Snaplen} {TimestampResolution}";
}
