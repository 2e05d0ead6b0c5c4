namespace Offload.Interop.Nfqueue;

/// <summary>
/// How a queue is bound and sized. The defaults suit a router that must see whole packets and may not let them
/// pass untranslated: copy everything, fail closed, no GSO, no conntrack data.
/// </summary>
public sealed class NfQueueOptions
{
    /// <summary>The smallest send buffer: one verdict carrying the largest payload must fit.</summary>
    public const int MinimumSendBufferSize = 128 * 1024;

    /// <summary>Shared defaults.</summary>
    public static NfQueueOptions Default { get; } = new();

    /// <summary>Bytes of each packet to copy (NFQNL_COPY_PACKET); the kernel caps it at 65531.</summary>
    public int CopyRange { get; init; } = 0xFFFF;

    /// <summary>NFQA_CFG_QUEUE_MAXLEN: packets the kernel holds for us before it drops (or fails open).</summary>
    public uint MaxQueueLength { get; init; } = 1024;

    /// <summary>
    /// NFQA_CFG_F_FAIL_OPEN: when the queue is full or our socket buffer overflows, accept instead of drop. For
    /// flows whose NAT lives in the daemon that means packets leave untranslated: choose deliberately.
    /// </summary>
    public bool FailOpen { get; init; }

    /// <summary>
    /// NFQA_CFG_F_GSO: receive segmentation-offload super-packets whole (up to 64 KiB, checksum possibly only a
    /// pseudo-header sum, see <see cref="NfqSkbInfo"/>) instead of having the kernel segment and checksum them first.
    /// </summary>
    public bool Gso { get; init; }

    /// <summary>
    /// Most datagrams taken per receive call (recvmmsg slots). Each slot holds a whole packet, so the receive
    /// buffer, allocated once, is MaxBatch × (copy range + 1 KiB): 4.3 MB with the defaults.
    /// </summary>
    public int MaxBatch { get; init; } = 64;

    /// <summary>Socket receive buffer; forced past net.core.rmem_max when the process may.</summary>
    public int ReceiveBufferSize { get; init; } = 8 * 1024 * 1024;

    /// <summary>Bytes of verdicts gathered before a send; also the socket send buffer asked for.</summary>
    public int SendBufferSize { get; init; } = 256 * 1024;

    /// <summary>How long <see cref="NfQueue.ReceiveBatch"/> waits before returning 0, so a worker can check for shutdown.</summary>
    public TimeSpan ReceiveTimeout { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// How long to wait for the kernel to acknowledge a configuration request (checked between receives, so no
    /// finer than <see cref="ReceiveTimeout"/>).
    /// </summary>
    public TimeSpan AckTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>NETLINK_NO_ENOBUFS. Leave off to learn (and count) losses.</summary>
    public bool NoEnobufs { get; init; }

    /// <summary>The verdict for a packet that could not be handed over (truncated or malformed message).</summary>
    public NfVerdict UnreadableVerdict { get; init; } = NfVerdict.Drop;

    /// <summary>
    /// Merge runs of plain verdicts into NFQNL_MSG_VERDICT_BATCH messages when that is provably equivalent
    /// (see <see cref="NfQueue.SetVerdict(uint, NfVerdict)"/>).
    /// </summary>
    public bool CoalesceVerdicts { get; init; } = true;

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(CopyRange);
        ArgumentOutOfRangeException.ThrowIfZero(MaxQueueLength);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxBatch);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxBatch, 1024);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(ReceiveBufferSize);
        ArgumentOutOfRangeException.ThrowIfLessThan(SendBufferSize, MinimumSendBufferSize);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(AckTimeout, TimeSpan.Zero);
        NfQueue.ValidateVerdict(UnreadableVerdict);
    }
}
