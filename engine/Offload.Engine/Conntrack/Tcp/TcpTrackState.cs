using System.Runtime.InteropServices;

namespace Offload.Engine.Conntrack.Tcp;

/// <summary>
/// Flags kept per direction (and, for the last-segment record, in <see cref="TcpTrackState.LastFlags"/>).
/// The values are those of the kernel's IP_CT_TCP_FLAG_* / IP_CT_EXP_CHALLENGE_ACK /
/// IP_CT_TCP_SIMULTANEOUS_OPEN bits, so they can be reported over ctnetlink unchanged.
/// </summary>
[Flags]
public enum TcpTrackFlags : byte
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary>This side sent a window scale option.</summary>
    WindowScale = 0x01,

    /// <summary>This side sent SACK-permitted.</summary>
    SackPermitted = 0x02,

    /// <summary>This side sent the first FIN.</summary>
    CloseInit = 0x04,

    /// <summary>Window checks never reject this side's segments.</summary>
    BeLiberal = 0x08,

    /// <summary>This side sent data the other side has not acknowledged yet.</summary>
    DataUnacknowledged = 0x10,

    /// <summary><see cref="TcpDirectionWindow.MaxAck"/> holds a value.</summary>
    MaxAckSet = 0x20,

    /// <summary>(Last-segment record only) a SYN was let through in LAST_ACK, so the next ACK may be a challenge ACK.</summary>
    ChallengeAckExpected = 0x40,

    /// <summary>(Last-segment record only) the connection opened simultaneously from both ends.</summary>
    SimultaneousOpen = 0x80,
}

/// <summary>Facts about the connection that the kernel keeps in the conntrack status bits.</summary>
[Flags]
public enum TcpTrackStatus : byte
{
    /// <summary>Nothing yet.</summary>
    None = 0,

    /// <summary>An accepted segment was seen in the reply direction.</summary>
    SeenReply = 0x01,

    /// <summary>The connection reached ESTABLISHED after a reply was seen.</summary>
    Assured = 0x02,
}

/// <summary>
/// What the tracker knows about one direction's sequence space (the sender of that direction).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 2)]
public struct TcpDirectionWindow
{
    /// <summary>Highest sequence number this side has sent, plus its length (seq + len).</summary>
    public uint End;

    /// <summary>Highest sequence number this side may send: the peer's highest ack (or SACK) plus its window.</summary>
    public uint MaxEnd;

    /// <summary>Largest window (scaled) this side has advertised; 0 means nothing was seen from this side yet.</summary>
    public uint MaxWindow;

    /// <summary>Highest acknowledgment number this side has sent (valid with <see cref="TcpTrackFlags.MaxAckSet"/>).</summary>
    public uint MaxAck;

    /// <summary>Window scale shift applied to this side's window fields.</summary>
    public byte Scale;

    /// <summary>Per-direction flags.</summary>
    public TcpTrackFlags Flags;
}

/// <summary>
/// Everything the TCP tracker keeps for one connection. A plain value (no references, 58 bytes, packed so that an
/// entry of the connection table keeps to two cache lines) meant to be embedded in the engine's connection entry;
/// start it with <see cref="TcpTracker.TryStart"/> and feed every later segment to <see cref="TcpTracker.Process"/>.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 2)]
public struct TcpTrackState
{
    /// <summary>Window data of the original direction's sender.</summary>
    public TcpDirectionWindow Original;

    /// <summary>Window data of the reply direction's sender.</summary>
    public TcpDirectionWindow Reply;

    /// <summary>Sequence number of the last recorded segment (for retransmission and resync checks).</summary>
    public uint LastSeq;

    /// <summary>Acknowledgment number of the last recorded segment.</summary>
    public uint LastAck;

    /// <summary>seq + len of the last recorded segment.</summary>
    public uint LastEnd;

    /// <summary>Raw window field of the last recorded segment.</summary>
    public ushort LastWindow;

    /// <summary>Current state.</summary>
    public TcpConntrackState State;

    /// <summary>Direction of the last recorded segment.</summary>
    public TcpDirection LastDir;

    /// <summary>How many times in a row the same ACK segment was seen (saturates at 255).</summary>
    public byte Retrans;

    /// <summary>Kind of the last recorded segment.</summary>
    public TcpSegmentKind LastIndex;

    /// <summary>Window scale of a SYN that was let through while out of sync.</summary>
    public byte LastWindowScale;

    /// <summary>Options of that SYN, and the challenge-ACK / simultaneous-open markers.</summary>
    public TcpTrackFlags LastFlags;

    /// <summary>Seen-reply and assured bits.</summary>
    public TcpTrackStatus Status;

    /// <summary>An accepted segment was seen in the reply direction.</summary>
    public readonly bool SeenReply => (Status & TcpTrackStatus.SeenReply) != 0;

    /// <summary>The connection is assured (ESTABLISHED reached with traffic both ways).</summary>
    public readonly bool Assured => (Status & TcpTrackStatus.Assured) != 0;
}
