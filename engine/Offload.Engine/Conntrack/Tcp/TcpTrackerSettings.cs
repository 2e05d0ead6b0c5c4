namespace Offload.Engine.Conntrack.Tcp;

/// <summary>
/// Switches and timeouts of the TCP tracker. The defaults are the kernel's (the net.netfilter.nf_conntrack_tcp_*
/// sysctls). One instance is shared by many connections; change it between packets, not during one.
/// </summary>
public sealed class TcpTrackerSettings
{
    /// <summary>When true, segments outside the tracked windows are accepted (RST sequence checks still apply).</summary>
    public bool BeLiberal { get; set; }

    /// <summary>When true (the default), a non-SYN segment may create an entry for a connection already under way.</summary>
    public bool Loose { get; set; } = true;

    /// <summary>When true, a RST whose sequence lies below what the peer acknowledged is not marked invalid.</summary>
    public bool IgnoreInvalidRst { get; set; }

    /// <summary>After this many identical ACK segments in a row, the timeout drops to <see cref="RetransTimeout"/>.</summary>
    public int MaxRetrans
    {
        get;
        set => field = value is >= 0 and <= byte.MaxValue
            ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "must be 0..255");
    } = 3;

    /// <summary>Seconds in SYN_SENT.</summary>
    public int SynSentTimeout { get; set => field = Checked(value); } = 120;

    /// <summary>Seconds in SYN_RECV.</summary>
    public int SynRecvTimeout { get; set => field = Checked(value); } = 60;

    /// <summary>Seconds in ESTABLISHED (5 days).</summary>
    public int EstablishedTimeout { get; set => field = Checked(value); } = 432_000;

    /// <summary>Seconds in FIN_WAIT.</summary>
    public int FinWaitTimeout { get; set => field = Checked(value); } = 120;

    /// <summary>Seconds in CLOSE_WAIT.</summary>
    public int CloseWaitTimeout { get; set => field = Checked(value); } = 60;

    /// <summary>Seconds in LAST_ACK.</summary>
    public int LastAckTimeout { get; set => field = Checked(value); } = 30;

    /// <summary>Seconds in TIME_WAIT.</summary>
    public int TimeWaitTimeout { get; set => field = Checked(value); } = 120;

    /// <summary>Seconds in CLOSE, and after any accepted RST.</summary>
    public int CloseTimeout { get; set => field = Checked(value); } = 10;

    /// <summary>Seconds in SYN_SENT2.</summary>
    public int SynSent2Timeout { get; set => field = Checked(value); } = 120;

    /// <summary>Cap on the timeout once <see cref="MaxRetrans"/> is reached, or while the peer advertises a zero window.</summary>
    public int RetransTimeout { get; set => field = Checked(value); } = 300;

    /// <summary>Cap on the timeout while data is unacknowledged, and for entries that have not seen a reply.</summary>
    public int UnacknowledgedTimeout { get; set => field = Checked(value); } = 300;

    /// <summary>The timeout, in seconds, of <paramref name="state"/> (0 for <see cref="TcpConntrackState.None"/>).</summary>
    public int TimeoutFor(TcpConntrackState state) => state switch
    {
        TcpConntrackState.SynSent => SynSentTimeout,
        TcpConntrackState.SynRecv => SynRecvTimeout,
        TcpConntrackState.Established => EstablishedTimeout,
        TcpConntrackState.FinWait => FinWaitTimeout,
        TcpConntrackState.CloseWait => CloseWaitTimeout,
        TcpConntrackState.LastAck => LastAckTimeout,
        TcpConntrackState.TimeWait => TimeWaitTimeout,
        TcpConntrackState.Close => CloseTimeout,
        TcpConntrackState.SynSent2 => SynSent2Timeout,
        _ => 0,
    };

    private static int Checked(int seconds) =>
        seconds >= 0 ? seconds : throw new ArgumentOutOfRangeException(nameof(seconds), seconds, "timeouts cannot be negative");
}
