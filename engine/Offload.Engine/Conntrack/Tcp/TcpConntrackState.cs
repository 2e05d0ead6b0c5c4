namespace Offload.Engine.Conntrack.Tcp;

/// <summary>
/// The state of a tracked TCP connection as a middlebox sees it. The numbering matches the
/// kernel's <c>enum tcp_conntrack</c> (and so the value ctnetlink reports in CTA_PROTOINFO_TCP_STATE).
/// </summary>
public enum TcpConntrackState : byte
{
    /// <summary>Nothing seen yet.</summary>
    None = 0,

    /// <summary>A SYN was seen in the original direction.</summary>
    SynSent = 1,

    /// <summary>The SYN was answered by a SYN/ACK.</summary>
    SynRecv = 2,

    /// <summary>The handshake completed, or the connection was picked up mid-stream.</summary>
    Established = 3,

    /// <summary>One side sent a FIN.</summary>
    FinWait = 4,

    /// <summary>The first FIN was acknowledged; the other side may still send.</summary>
    CloseWait = 5,

    /// <summary>Both sides sent a FIN; waiting for the last ACK.</summary>
    LastAck = 6,

    /// <summary>The last ACK was seen.</summary>
    TimeWait = 7,

    /// <summary>Closed by a RST.</summary>
    Close = 8,

    /// <summary>Simultaneous open: a SYN was also seen in the reply direction.</summary>
    SynSent2 = 9,
}

/// <summary>The direction a segment travels relative to the connection's first packet.</summary>
public enum TcpDirection : byte
{
    /// <summary>Same direction as the packet that created the connection.</summary>
    Original = 0,

    /// <summary>The opposite direction.</summary>
    Reply = 1,
}

/// <summary>
/// How the state machine classifies a segment by its control flags (RST wins over SYN, SYN over FIN,
/// FIN over a bare ACK). Kept in <see cref="TcpTrackState.LastIndex"/> to recognise answers to earlier segments.
/// </summary>
public enum TcpSegmentKind : byte
{
    /// <summary>No RST, SYN, FIN or ACK (also the value before any segment was recorded).</summary>
    None = 0,

    /// <summary>SYN without ACK.</summary>
    Syn = 1,

    /// <summary>SYN with ACK.</summary>
    SynAck = 2,

    /// <summary>FIN (without SYN or RST).</summary>
    Fin = 3,

    /// <summary>ACK only (PSH, URG, ECE, CWR do not matter).</summary>
    Ack = 4,

    /// <summary>RST, whatever else is set.</summary>
    Rst = 5,
}
