namespace Offload.Sdk;

/// <summary>How an expected connection is translated when it arrives.</summary>
public enum ExpectationNat : byte
{
    /// <summary>
    /// Like its master (the kernel's <c>nf_nat_follow_master</c>): when the master is translated, the expected
    /// connection is translated the same way, and the engine may move the announced port to a free one. Nothing
    /// happens when the master is not translated. The usual choice.
    /// </summary>
    FollowMaster = 0,

    /// <summary>Never translated, even when the master is.</summary>
    None = 1,

    /// <summary>
    /// Its destination is translated to <see cref="ExpectationRequest.NatAddress"/> and
    /// <see cref="ExpectationRequest.NatPort"/> (a helper that knows where the real endpoint is, as SIP or H.323 do).
    /// </summary>
    Redirect = 2,

    /// <summary>
    /// (1.1) Its source is translated to <see cref="ExpectationRequest.NatAddress"/> and
    /// <see cref="ExpectationRequest.NatPort"/>, its destination left alone: a connection from behind the NAT that must
    /// leave from the endpoint announced for it (SIP's paired media: the phone's RTP leaves from the router's port the
    /// peer was told to send to, as the kernel's nf_nat_sip_expected does).
    /// </summary>
    Source = 3,

    /// <summary>
    /// (1.1) Chosen by the master's helper when the connection arrives (the kernel's expectation callback, as
    /// nf_nat_sip_expected): in <see cref="ConntrackHelper.OnExpectedConnection"/> it calls
    /// <see cref="ExpectedConnection.TranslateSource"/> and/or <see cref="ExpectedConnection.TranslateDestination"/>, or
    /// neither to leave it untranslated. For a translation that depends on what arrives (its source, the master's state
    /// then), not only on what was known when it was announced.
    /// </summary>
    OnArrival = 4,
}

/// <summary>What a helper announces: the connection it expects, and how it is to be translated.</summary>
/// <remarks>Fill it with an object initializer: fields may be added in later versions, with defaults that keep today's behaviour.</remarks>
public struct ExpectationRequest
{
    /// <summary>The expected connection's transport protocol.</summary>
    public byte Protocol;

    /// <summary>The address the expected connection comes from.</summary>
    public InetAddress Source;

    /// <summary>Leading bits of <see cref="Source"/> that must match: 0 accepts any source.</summary>
    public int SourcePrefixLength;

    /// <summary>The port it comes from, when <see cref="MatchSourcePort"/> is set.</summary>
    public ushort SourcePort;

    /// <summary>False accepts any source port (the usual case: FTP data comes from any port).</summary>
    public bool MatchSourcePort;

    /// <summary>The address the expected connection goes to (after the master's NAT: the address its sender sees).</summary>
    public InetAddress Destination;

    /// <summary>
    /// The announced port. With <see cref="ExpectationNat.FollowMaster"/> and a translated master, the engine may move it
    /// to a free one; it writes the port it chose back here, for the helper to announce in its rewrite.
    /// </summary>
    public ushort DestinationPort;

    /// <summary>A helper may keep several classes of expectation with separate limits (e.g. RTP and RTCP); 0 otherwise.</summary>
    public int Class;

    /// <summary>Permanent or inactive expectations (see <see cref="ExpectationFlags"/>).</summary>
    public ExpectationFlags Flags;

    /// <summary>A helper to attach to the expected connection, if it needs one.</summary>
    public ConntrackHelper? Helper;

    /// <summary>How the expected connection is translated (<see cref="ExpectationNat.FollowMaster"/> by default).</summary>
    public ExpectationNat Nat;

    /// <summary>With <see cref="ExpectationNat.Redirect"/>: the address the expected connection is sent to instead; with <see cref="ExpectationNat.Source"/>, the address it leaves from.</summary>
    public InetAddress NatAddress;

    /// <summary>
    /// (1.1) How long this expectation waits for its connection, when the protocol says (a SIP registration's Expires);
    /// zero (the default) for its class's <see cref="ExpectationClass.Timeout"/>. At most a day.
    /// </summary>
    public TimeSpan Timeout;

    /// <summary>With <see cref="ExpectationNat.Redirect"/>: the port the expected connection is sent to instead; with <see cref="ExpectationNat.Source"/>, the port it leaves from.</summary>
    public ushort NatPort;
}
