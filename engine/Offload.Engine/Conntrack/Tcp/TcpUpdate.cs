namespace Offload.Engine.Conntrack.Tcp;

/// <summary>What the engine should do with a segment the tracker has looked at.</summary>
public enum TcpVerdict : byte
{
    /// <summary>The segment fits the connection; its state and timeout were updated.</summary>
    Accept = 0,

    /// <summary>
    /// The segment is invalid (bad flags, out of window, impossible in this state). Count it
    /// (see <see cref="TcpUpdate.Reason"/>); the state is unchanged. Whether the packet still passes is policy.
    /// </summary>
    Invalid = 1,

    /// <summary>
    /// A SYN that reopens a connection which was closed (TIME_WAIT/CLOSE after a FIN, or aborted by RST):
    /// destroy this entry and create a new one from this same segment (with <see cref="TcpTracker.TryStart"/>,
    /// its direction becoming the new entry's original direction).
    /// </summary>
    Reopen = 2,

    /// <summary>
    /// The tracker may be out of sync with the endpoints, so the segment is let through without changing
    /// the state or the timeout (the endpoints will answer with a RST or a SYN/ACK the tracker can follow).
    /// </summary>
    Ignore = 3,
}

/// <summary>Why a segment was <see cref="TcpVerdict.Invalid"/> or <see cref="TcpVerdict.Ignore"/>, or why a start was refused.</summary>
public enum TcpInvalidReason : byte
{
    /// <summary>Not rejected.</summary>
    None = 0,

    /// <summary>An impossible combination of control bits (SYN+FIN, SYN+RST, FIN without ACK, no bits...).</summary>
    BadFlags,

    /// <summary>The flags make no sense in the current state (e.g. SYN/ACK from the client, data before the handshake).</summary>
    InvalidTransition,

    /// <summary>A non-SYN segment would start a connection, but <see cref="TcpTrackerSettings.Loose"/> is off.</summary>
    PickupDisabled,

    /// <summary>The sequence number lies beyond what the receiver's window allows.</summary>
    SeqOver,

    /// <summary>The segment acknowledges (or SACKs) data the other side has not sent yet.</summary>
    AckOver,

    /// <summary>(Ignore) The data lies wholly below the receiver's window: an already acknowledged retransmission.</summary>
    SeqUnder,

    /// <summary>(Ignore) The acknowledgment is too far behind: an overly delayed segment.</summary>
    AckUnder,

    /// <summary>(Ignore) The segment runs a little past the receiver's window; its end is remembered so the ACK for it is not rejected.</summary>
    WindowOvershoot,

    /// <summary>A RST whose sequence number lies below what the peer already acknowledged.</summary>
    InvalidRst,

    /// <summary>(Ignore) A SYN, SYN/ACK or ACK the state machine cannot place: the tracker may be out of sync.</summary>
    OutOfSync,

    /// <summary>(Ignore) An ACK answering a SYN sent in LAST_ACK (an RFC 5961 challenge ACK), not the last ACK.</summary>
    ChallengeAck,

    /// <summary>The stored state is not a known state value.</summary>
    CorruptState,
}

/// <summary>What the engine should do with the entry's expiry time.</summary>
public enum TcpTimeoutAction : byte
{
    /// <summary>Leave the expiry as it is.</summary>
    Keep = 0,

    /// <summary>Expire <see cref="TcpUpdate.TimeoutSeconds"/> from now.</summary>
    Set = 1,

    /// <summary>
    /// Only if the entry has at least 120 s left and more than <see cref="TcpUpdate.TimeoutSeconds"/>,
    /// make it expire <see cref="TcpUpdate.TimeoutSeconds"/> from now. Used when both ends sent FIN/RST
    /// the tracker found out of window: the entry is likely dead, but one close to expiry is left alone.
    /// Entries whose timeout the user fixed should ignore this.
    /// </summary>
    Shorten = 2,
}

/// <summary>The outcome of one call to <see cref="TcpTracker.TryStart"/> or <see cref="TcpTracker.Process"/>.</summary>
public struct TcpUpdate
{
    /// <summary>State before the segment.</summary>
    public TcpConntrackState OldState { get; internal set; }

    /// <summary>State after the segment.</summary>
    public TcpConntrackState NewState { get; internal set; }

    /// <summary>Why the segment was invalid or ignored; <see cref="TcpInvalidReason.None"/> on accept or reopen.</summary>
    public TcpInvalidReason Reason { get; internal set; }

    /// <summary>How to change the entry's expiry.</summary>
    public TcpTimeoutAction TimeoutAction { get; internal set; }

    /// <summary>Seconds for <see cref="TimeoutAction"/> (0 with <see cref="TcpTimeoutAction.Keep"/>).</summary>
    public int TimeoutSeconds { get; internal set; }

    /// <summary>The connection became assured with this segment.</summary>
    public bool BecameAssured { get; internal set; }

    /// <summary>The connection is assured (after this segment).</summary>
    public bool Assured { get; internal set; }

    /// <summary>A reply has been seen (after this segment).</summary>
    public bool SeenReply { get; internal set; }

    /// <summary>
    /// A RST arrived before any reply: the connection never got going, so delete the entry now
    /// (the segment itself is accepted).
    /// </summary>
    public bool Kill { get; internal set; }

    /// <summary>The state changed.</summary>
    public readonly bool StateChanged => OldState != NewState;
}
