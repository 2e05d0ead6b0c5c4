using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;

namespace Offload.Engine.Conntrack;

/// <summary>
/// One tracked connection (the kernel's <c>nf_conn</c>): its tuple in each direction, status,
/// timeout, protocol state, and, only when needed, the rarer parts (helper, sequence adjustment,
/// master) in <see cref="ConnectionExtras"/>.
/// </summary>
/// <remarks>
/// Kept small on purpose: a router tracks up to millions of these. NAT needs no storage of its own:
/// as in the kernel, the reply tuple is the inverse of what the original packet looks like after
/// translation, so every manip is derived from the two tuples.
/// </remarks>
public sealed class Connection
{
    internal ConnTuple OriginalTuple;
    internal ConnTuple ReplyTuple;

    // Hash-chain links of the two tuples, as "slot * 2 + direction" of the next entry, or -1.
    internal int NextInOriginalChain = -1;
    internal int NextInReplyChain = -1;

    // Link in the by-source index of source-translated connections (slot of the next, -1 for none, -2 when not linked).
    internal int NextBySource = -2;
    internal int Slot = -1;

    /// <summary>The interface whose address MASQUERADE chose (0: not masqueraded), so its flows can go when the address does.</summary>
    internal int MasqueradeInterface;

    /// <summary>Which of its tuples this shard published in the shard directory (bit 0: original, bit 1: reply).</summary>
    internal byte PublishedTuples;

    internal long ExpiresAt;
    internal ConnStatus StatusBits;
    internal uint MarkValue;

    /// <summary>For UDP: when a replied flow counts as a stream. For others: unused.</summary>
    internal long StreamAt;

    internal TcpTrackState Tcp;
    internal ConnectionExtras? Extras;

    /// <summary>The tuple of the original direction (what the first packet looked like before NAT).</summary>
    public ConnTuple Original => OriginalTuple;

    /// <summary>The tuple a reply carries before de-NAT (the inverse of the original packet after NAT).</summary>
    public ConnTuple Reply => ReplyTuple;

    /// <summary>The tuple of one direction.</summary>
    public ref readonly ConnTuple TupleOf(ConnDirection direction) =>
        ref direction == ConnDirection.Original ? ref OriginalTuple : ref ReplyTuple;

    public ConnStatus Status => StatusBits;

    public bool HasStatus(ConnStatus bits) => (StatusBits & bits) == bits;

    /// <summary>The connection mark (the kernel's ctmark).</summary>
    public uint Mark
    {
        get => MarkValue;
        set => MarkValue = value;
    }

    /// <summary>The TCP state, or <see cref="TcpConntrackState.None"/> for other protocols.</summary>
    public TcpConntrackState TcpState => Tcp.State;

    /// <summary>What the TCP tracker knows of each direction (window scales, flags): read when the flow is handed to the kernel.</summary>
    public ref readonly TcpTrackState TcpTracking => ref Tcp;

    /// <summary>When this connection expires, on the engine's clock (nanoseconds).</summary>
    public long ExpiresAtNanoseconds => ExpiresAt;

    /// <summary>The connection that expected this one, if any.</summary>
    public Connection? Master => Extras?.Master;

    /// <summary>The helper attached, if any.</summary>
    public ConntrackHelper? Helper => Extras?.Helper;

    /// <summary>
    /// For an expected connection: it arrived at the address its master's helper announced (the expectation's
    /// <see cref="Expectation.AtTranslatedAddress"/>), so the LAN side sends its replies.
    /// </summary>
    public bool ArrivedAtAnnouncedAddress => Extras?.ExpectedAtTranslatedAddress ?? false;

    /// <summary>True when the source or destination is translated.</summary>
    public bool IsNatted => (StatusBits & ConnStatus.NatMask) != 0;

    internal ConnectionExtras EnsureExtras() => Extras ??= new ConnectionExtras();

    internal bool IsDying => (StatusBits & ConnStatus.Dying) != 0;
}

/// <summary>The parts of a connection that most connections never need, allocated on first use.</summary>
internal sealed class ConnectionExtras
{
    public ConntrackHelper? Helper;

    /// <summary>The helper's own per-connection state.</summary>
    public object? HelperState;

    public Connection? Master;

    /// <summary>
    /// For an expected connection: it arrived at an address its master's helper announced (the expectation's
    /// <see cref="Expectation.AtTranslatedAddress"/>), so the LAN side sends its replies. Kept for per-flow steering
    /// after a restart.
    /// </summary>
    public bool ExpectedAtTranslatedAddress;

    /// <summary>
    /// As a master: the GRE connections of the PPTP calls it expected that are in the table. They end with it, as the
    /// kernel's pptp helper times its calls' GRE out when the control connection goes (pptp_destroy_siblings).
    /// </summary>
    public List<Connection>? GreCalls;

    /// <summary>The expectations this connection (as a master) has outstanding, oldest first.</summary>
    public Expectation? FirstExpectation;
    public int ExpectationCount;

    public SeqAdjustment SeqAdjOriginal;
    public SeqAdjustment SeqAdjReply;

    public ref SeqAdjustment SeqAdj(ConnDirection direction) =>
        ref direction == ConnDirection.Original ? ref SeqAdjOriginal : ref SeqAdjReply;
}

/// <summary>
/// Sequence adjustment for one direction (the kernel's <c>nf_ct_seqadj</c>): segments starting
/// after <see cref="CorrectionPosition"/> are shifted by <see cref="OffsetAfter"/>, earlier ones
/// (retransmissions of what came before the last rewrite) by <see cref="OffsetBefore"/>.
/// </summary>
public struct SeqAdjustment
{
    public uint CorrectionPosition;
    public int OffsetBefore;
    public int OffsetAfter;

    public readonly bool IsIdentity => OffsetBefore == 0 && OffsetAfter == 0;
}
