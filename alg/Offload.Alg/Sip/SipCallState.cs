namespace Offload.Alg.Sip;

/// <summary>
/// What a signalling flow's helper remembers between messages: the media its translated side offered, by position in
/// the SDP (an answer's streams pair with the offer's by position, RFC 3264 section 6), so that the answer's
/// expectation can make that side's own RTP leave from the router's port the peer was told (the kernel's paired
/// media expectation in nf_nat_sip_expected).
/// </summary>
internal sealed class SipCallState
{
    private readonly SipTranslatedMedia[] _media = new SipTranslatedMedia[SdpScanner.MaxMedia];

    /// <summary>Records the translated media at position <paramref name="index"/> of the last offer from the translated side.</summary>
    public void Remember(int index, InetAddress address, ushort port, ushort translatedPort) =>
        _media[index] = new SipTranslatedMedia(true, address, port, translatedPort);

    /// <summary>Forgets every recorded media (a new offer replaces the last).</summary>
    public void Clear() => Array.Clear(_media);

    /// <summary>The translated media at position <paramref name="index"/>, if the last offer had one.</summary>
    public bool TryGet(int index, out SipTranslatedMedia media)
    {
        media = _media[index];
        return media.Present;
    }
}

/// <summary>One media stream of the translated side: its own address and RTP port, and the router's port announced for it.</summary>
internal readonly record struct SipTranslatedMedia(bool Present, InetAddress Address, ushort Port, ushort TranslatedPort);
