namespace Offload.Interop.Nfqueue;

/// <summary>
/// What happened on one queue. Nothing on the receive path throws for bad input: each oddity is counted here
/// instead, so a daemon can export these and an operator can see loss and malformed traffic.
/// </summary>
/// <remarks>A snapshot copied from the queue's owning thread; read it there, or accept a slightly torn view.</remarks>
public struct NfQueueCounters
{
    /// <summary>Datagrams received from the socket.</summary>
    public long Datagrams { readonly get; internal set; }

    /// <summary>Packets handed to the caller.</summary>
    public long PacketsReceived { readonly get; internal set; }

    /// <summary>ENOBUFS reports: the socket buffer overflowed and the kernel failed open or dropped packets meanwhile.</summary>
    public long NoBufferEvents { readonly get; internal set; }

    /// <summary>Datagrams larger than a receive slot (the packet was answered with the unreadable verdict when its id survived).</summary>
    public long Truncated { readonly get; internal set; }

    /// <summary>Messages whose lengths or attributes did not add up.</summary>
    public long Malformed { readonly get; internal set; }

    /// <summary>Datagrams from a port other than the kernel's, ignored.</summary>
    public long ForeignDatagrams { readonly get; internal set; }

    /// <summary>Messages of a type a queue never receives, ignored.</summary>
    public long UnexpectedMessages { readonly get; internal set; }

    /// <summary>Packets we answered ourselves because they could not be handed over (truncated or malformed).</summary>
    public long AutomaticVerdicts { readonly get; internal set; }

    /// <summary>Verdict messages written (single and batch).</summary>
    public long VerdictMessages { readonly get; internal set; }

    /// <summary>NFQNL_MSG_VERDICT_BATCH messages among them.</summary>
    public long BatchVerdictMessages { readonly get; internal set; }

    /// <summary>Packets covered by verdicts (a batch message covers several).</summary>
    public long PacketsVerdicted { readonly get; internal set; }

    /// <summary>sendmsg calls that carried verdicts.</summary>
    public long Sends { readonly get; internal set; }

    /// <summary>Errors the kernel returned for verdicts (ENOENT: no such packet id; EINVAL: bad verdict).</summary>
    public long VerdictErrors { readonly get; internal set; }

    /// <summary>The errno of the last verdict error.</summary>
    public Errno LastVerdictError { readonly get; internal set; }

    /// <summary>
    /// Times the bookkeeping that makes batch verdicts safe lost track (more packets held than it can follow, or
    /// ids out of order); from then on every verdict is sent singly.
    /// </summary>
    public long LedgerOverflows { readonly get; internal set; }
}
