namespace Offload.Alg.Sip;

/// <summary>
/// Room for one message's rewrites, one per thread: a helper's calls on one thread never overlap, and engines on
/// other threads get their own, so a message costs no allocation.
/// </summary>
internal sealed class SipScratch
{
    [ThreadStatic]
    private static SipScratch? t_current;

    public SipEdits.Edit[] Edits { get; } = new SipEdits.Edit[SipEdits.MaxEdits];

    public byte[] Text { get; } = new byte[SipEdits.MaxText];

    public static SipScratch ForThisThread => t_current ??= new SipScratch();
}
