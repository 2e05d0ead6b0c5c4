using System.Buffers;

namespace Offload.Alg.Ftp;

/// <summary>
/// The FTP helper (the kernel's nf_conntrack_ftp with nf_nat_ftp): reads PORT and EPRT from the client
/// and 227 and 229 replies from the server, expects the data connection they announce, and, when the
/// control connection is translated, rewrites the announced address and port to the translated ones.
/// </summary>
/// <remarks>
/// Like the kernel, it only reads a segment that starts right after a newline it has seen in that
/// direction, so a command can never be forged in the middle of a line (a file name, a message).
/// Unlike the kernel, it reads every complete line of such a segment, not only the first, and a segment
/// carrying several announcements gets all of them rewritten with one sequence adjustment.
/// </remarks>
public sealed class FtpHelper : ConntrackHelper
{
    /// <summary>The kernel's FTP policy: one outstanding expectation per control connection, for five minutes.</summary>
    public static readonly ExpectationPolicy DefaultPolicy = new(1, TimeSpan.FromMinutes(5));

    public const ushort DefaultPort = 21;

    // Set by the constructor, and by Configure (options: { loose: true }) before the helper is bound.
    private bool _loose;

    /// <param name="loose">
    /// Accept announcements of an address other than the sender's own (the kernel's <c>loose</c> parameter).
    /// Off by default: otherwise a client could open a pinhole to any third party.
    /// </param>
    public FtpHelper(bool loose = false)
        : base("ftp", DefaultPolicy)
    {
        Ports = [DefaultPort];
        _loose = loose;
    }

    /// <summary>Takes <c>loose</c> (true or false) from the configuration's <c>options:</c>, as the older <c>loose:</c> switch.</summary>
    public override void Configure(IReadOnlyDictionary<string, string> options) => _loose = LooseOption.Read(this, options, _loose);

    public override HelperVerdict Help(ref HelperContext context)
    {
        if (context.Protocol != IpProtocol.Tcp
            || (context.CtInfo != CtInfo.Established && context.CtInfo != CtInfo.EstablishedReply))
        {
            return HelperVerdict.Accept;
        }

        var payload = context.Payload;
        if (payload.IsEmpty)
        {
            return HelperVerdict.Accept;
        }

        var starts = context.GetState<LineStarts>();
        uint seq = context.TcpSequence;
        var verdict = starts.IsAt(context.Direction, seq) ? ScanLines(ref context, payload) : HelperVerdict.Accept;
        starts.RememberIfLineEnds(context.Direction, seq, payload);
        return verdict;
    }

    /// <summary>Version 1: per direction, the count of positions after a newline (a byte) and two positions (32 bits each).</summary>
    public override int StateVersion => 1;

    public override bool SaveState(object state, IBufferWriter<byte> writer)
    {
        if (state is not LineStarts starts)
        {
            return false;
        }

        starts.WriteTo(writer);
        return true;
    }

    public override object? RestoreState(ReadOnlySpan<byte> data, int version) =>
        version == 1 ? LineStarts.ReadFrom(data) : null;

    private HelperVerdict ScanLines(ref HelperContext context, ReadOnlySpan<byte> payload)
    {
        bool isReply = context.Direction == ConnDirection.Reply;
        for (int lineStart = 0; lineStart >= 0 && lineStart < payload.Length; lineStart = FtpParser.NextLineStart(payload, lineStart))
        {
            var status = FtpParser.Scan(payload.Slice(lineStart), isReply, out var match);
            switch (status)
            {
                case FtpScanStatus.Found:
                    if (OnAnnouncement(ref context, lineStart, match) == HelperVerdict.Drop)
                    {
                        return HelperVerdict.Drop;
                    }

                    break;
                case FtpScanStatus.Malformed:
                    context.Count(HelperEvent.MalformedCommand);
                    break;
                case FtpScanStatus.Partial:
                    // The line goes on in the next segment, which does not follow a newline: it is never read.
                    context.Count(HelperEvent.PartialCommand);
                    break;
            }
        }

        return HelperVerdict.Accept;
    }

    private HelperVerdict OnAnnouncement(ref HelperContext context, int lineStart, in FtpMatch match)
    {
        ref readonly var own = ref context.Tuple;
        ref readonly var other = ref context.OtherTuple;
        var announced = match.Value;

        // The data connection comes from the peer (as it sees itself) and goes to where the peer sends to.
        var destination = other.Destination;
        if (announced.Family != 0 && announced.Family == own.Family)
        {
            var address = new InetAddress(announced.AddressHigh, announced.AddressLow);
            if (address != own.Source)
            {
                // An address other than the sender's own: a pinhole to a third party, unless loose mode allows it.
                if (!_loose)
                {
                    context.Count(HelperEvent.ForeignAddressRefused);
                    return HelperVerdict.Accept;
                }

                destination = address;
            }
        }

        var request = context.FromPeer(IpProtocol.Tcp, announced.Port);
        request.Destination = destination;

        // Announce the translated endpoint: where the peer reaches the expected connection.
        return context.ExpectAndAnnounce(
            ref request,
            lineStart + match.ReplaceOffset,
            match.ReplaceLength,
            (match.Kind, At: other.Destination, own.Family),
            static (in ExpectationRequest registered, (FtpCommandKind Kind, InetAddress At, byte Family) s, Span<byte> text) =>
                FtpParser.FormatReplacement(
                    s.Kind,
                    s.Family == 4 ? FtpAddressPort.FromIPv4(s.At.IPv4Value, registered.DestinationPort) : FtpAddressPort.FromIPv6(s.At.High, s.At.Low, registered.DestinationPort),
                    text,
                    IPv6TextForm.Full));
    }
}
