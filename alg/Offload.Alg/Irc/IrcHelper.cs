namespace Offload.Alg.Irc;

/// <summary>
/// The IRC helper (the kernel's nf_conntrack_irc with nf_nat_irc): reads the DCC offers a client sends to its
/// server, expects the peer's connection to the endpoint they announce, and, when the client is translated,
/// rewrites the announced address and port to the translated ones.
/// </summary>
/// <remarks>
/// <para>As the kernel, it reads only what the client sends (the local side makes offers to the outside), IPv4
/// only, and an offer only at the start of a CTCP message (see <see cref="IrcParser"/>). The announced address
/// must be the client's own, or its translated one, unless loose.</para>
/// <para>Unlike the kernel, which reads only the first message of a segment, it reads every complete line that
/// starts at a line start it knows (as the FTP helper does), so a DCC offer can never be forged in the middle of a
/// line split over two segments; each offer found gets its expectation and rewrite.</para>
/// </remarks>
public sealed class IrcHelper : ConntrackHelper
{
    /// <summary>The kernel's IRC policy: eight outstanding DCC offers per server connection, for five minutes.</summary>
    public static readonly ExpectationPolicy DefaultPolicy = new(8, TimeSpan.FromMinutes(5));

    public const ushort DefaultPort = 6667;

    // Set by the constructor, and by Configure (options: { loose: true }) before the helper is bound.
    private bool _loose;

    /// <param name="loose">
    /// Accept offers of an address other than the client's own or translated one (rewritten all the same when the
    /// client is translated). Off by default: otherwise a client could open a pinhole for a third party.
    /// </param>
    public IrcHelper(bool loose = false)
        : base("irc", DefaultPolicy)
    {
        Ports = [DefaultPort];
        Family = 4;
        _loose = loose;
    }

    /// <summary>Takes <c>loose</c> (true or false) from the configuration's <c>options:</c>, as the older <c>loose:</c> switch.</summary>
    public override void Configure(IReadOnlyDictionary<string, string> options) => _loose = LooseOption.Read(this, options, _loose);

    public override HelperVerdict Help(ref HelperContext context)
    {
        if (context.Protocol != IpProtocol.Tcp
            || context.Family != 4
            || context.Direction != ConnDirection.Original
            || context.CtInfo != CtInfo.Established)
        {
            return HelperVerdict.Accept;
        }

        var payload = context.Payload;
        if (payload.IsEmpty)
        {
            return HelperVerdict.Accept;
        }

        var state = context.GetState<IrcState>();
        uint seq = context.TcpSequence;
        var verdict = HelperVerdict.Accept;

        // A segment is read from its start only when that start follows a newline seen before (or is the first
        // data seen): otherwise its first line is the tail of a line, and only the lines after it are read.
        int first = state.AtLineStart(seq) ? 0 : IrcParser.NextLineStart(payload, 0);
        var window = payload.Length > IrcParser.MaxScanLength ? payload.Slice(0, IrcParser.MaxScanLength) : payload;
        for (int lineStart = first; lineStart >= 0 && lineStart < window.Length; lineStart = IrcParser.NextLineStart(window, lineStart))
        {
            var status = IrcParser.Scan(window.Slice(lineStart), out var offer);
            if (status == IrcScanStatus.Found)
            {
                if (OnOffer(ref context, lineStart, offer) == HelperVerdict.Drop)
                {
                    verdict = HelperVerdict.Drop;
                    break;
                }
            }
            else if (status == IrcScanStatus.Malformed)
            {
                context.Count(HelperEvent.MalformedCommand);
            }
            else if (status == IrcScanStatus.Partial)
            {
                // The rest comes in the next segment, which does not start a line: the offer is never read.
                context.Count(HelperEvent.PartialCommand);
            }
        }

        state.Starts.RememberIfLineEnds(ConnDirection.Original, seq, payload);

        return verdict;
    }

    private HelperVerdict OnOffer(ref HelperContext context, int lineStart, in DccOffer offer)
    {
        ref readonly var own = ref context.Tuple;
        ref readonly var other = ref context.OtherTuple;
        var announced = InetAddress.FromIPv4(offer.Address);

        if (offer.Port == 0)
        {
            context.Count(HelperEvent.MalformedCommand);
            return HelperVerdict.Accept;
        }

        // The client may announce its own address or, when it knows it, the one it is translated to.
        if (!_loose && announced != own.Source && announced != other.Destination)
        {
            context.Count(HelperEvent.ForeignAddressRefused);
            return HelperVerdict.Accept;
        }

        // The peer connects from anywhere to the client as the outside sees it; the kernel drops the segment when that
        // cannot be expected or announced too, and the client's retransmission tries again.
        var request = context.FromPeer(IpProtocol.Tcp, offer.Port);
        request.SourcePrefixLength = 0;
        return context.ExpectAndAnnounce(
            ref request,
            lineStart + offer.ReplaceOffset,
            offer.ReplaceLength,
            other.Destination.IPv4Value,
            static (in ExpectationRequest registered, uint address, Span<byte> text) => IrcParser.FormatReplacement(address, registered.DestinationPort, text));
    }

    /// <summary>Per server connection: where, in the client's direction, a segment would start a line.</summary>
    private sealed class IrcState
    {
        private bool _seenData;

        public LineStarts Starts { get; } = new();

        public bool AtLineStart(uint seq)
        {
            if (!_seenData)
            {
                // The first data of the connection starts its first line.
                _seenData = true;
                return true;
            }

            return Starts.IsAt(ConnDirection.Original, seq);
        }
    }
}
