using Offload.Engine.Expectations;
using Offload.Engine.Helpers;

namespace Offload.Engine.Conntrack;

/// <summary>The parts of a connection that most connections never need, taken from the table's pool on first use.</summary>
internal sealed class ConnectionExtras
{
    public ConntrackHelper? Helper;

    /// <summary>The helper's own per-connection state.</summary>
    public object? HelperState;

    /// <summary>
    /// The connection's handle boxed once: the SDK's helper context carries the connection as an object, and boxing it
    /// for every packet a helper sees would allocate per packet.
    /// </summary>
    public object? BoxedHandle;

    /// <summary>The connection that expected this one; it may be gone since (see <see cref="Connection.Master"/>).</summary>
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

    /// <summary>Forgets everything, for the next connection that takes this object from the pool.</summary>
    public void Clear()
    {
        Helper = null;
        HelperState = null;
        BoxedHandle = null;
        Master = null;
        ExpectedAtTranslatedAddress = false;
        GreCalls?.Clear();
        FirstExpectation = null;
        ExpectationCount = 0;
        SeqAdjOriginal = default;
        SeqAdjReply = default;
    }
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
