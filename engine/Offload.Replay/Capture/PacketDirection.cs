namespace Offload.Replay.Capture;

/// <summary>Which way a packet crossed its interface, as recorded in the capture.</summary>
public enum PacketDirection
{
    /// <summary>The capture does not say (classic pcap, or pcapng without the <c>epb_flags</c> option).</summary>
    Unknown = 0,

    /// <summary>Received on the interface.</summary>
    Inbound = 1,

    /// <summary>Sent on the interface.</summary>
    Outbound = 2,
}
