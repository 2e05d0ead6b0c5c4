using System.Buffers;
namespace Offload.Alg.H323;

/// <summary>
/// The H.323 call signalling helper (the kernel's "Q.931" helper of nf_conntrack_h323 with nf_nat_h323), on TCP port
/// 1720: each TPKT of a segment carries a Q.931 message whose User-user element holds H.225.0 in aligned PER. From a
/// Setup, CallProceeding, Connect, Alerting, Facility or Progress it expects the H.245 connection announced in
/// h245Address (helped by <see cref="H245Helper"/>), and the RTP, RTCP and T.120 flows of fastStart's
/// OpenLogicalChannels and of H.245 messages tunnelled in h245Control; when the sender is translated it writes the
/// router's address and ports over the announced ones, and over a Setup's sourceCallSignalAddress and
/// destCallSignalAddress, each rewrite of the same length.
/// </summary>
/// <remarks>
/// Messages are read only once the connection is established both ways, and only whole TPKTs in one segment (as the
/// kernel, which joins only a TPKT header sent alone to the next segment, as NetMeeting sends them). A message that does
/// not decode is counted (<see cref="HelperEvent.MalformedCommand"/>) and passed, with the rest of its segment.
/// </remarks>
internal sealed class H323Helper : ConntrackHelper
{
    /// <summary>The kernel's Q.931 policy (4 logical channels of RTP and RTCP both ways, H.245 and T.120; 4 minutes) as the classes rtp, rtcp, t120 and h245.</summary>
    public static readonly IReadOnlyList<ExpectationClass> Classes = H323Actions.Classes(h245: true);

    public const ushort DefaultPort = 1720;

    public H323Helper()
        : base("h323", Classes)
    {
        Ports = [DefaultPort];
        H245 = new H245Helper();
    }

    /// <summary>The helper of the H.245 connections this one's messages announce.</summary>
    internal H245Helper H245 { get; }

    /// <summary>The H.245 helper, so that an H.245 connection restored from a snapshot finds it by its name.</summary>
    public override IReadOnlyList<ConntrackHelper> AttachedHelpers => [H245];

    public override int StateVersion => H323State.Version;

    public override bool SaveState(object state, IBufferWriter<byte> writer) => H323State.Save(state, writer);

    public override object? RestoreState(ReadOnlySpan<byte> data, int version) => H323State.Restore(data, version);

    public override HelperVerdict Help(ref HelperContext context)
    {
        if (context.CtInfo is not (CtInfo.Established or CtInfo.EstablishedReply))
        {
            return HelperVerdict.Accept; // until there has been traffic both ways, as the kernel
        }

        var payload = context.Payload;
        Span<H323Found> room = stackalloc H323Found[H323Actions.MaxFound];
        int offset = 0;
        for (int read = 0; read < H323Framing.MaxTpktsPerSegment && H323Framing.NextTpkt(ref context, ref offset, out int start, out int length); read++)
        {
            if (!H323Framing.TryFindUserInformation(payload, start, length, out _, out int uuStart, out int uuLength))
            {
                context.Count(HelperEvent.MalformedCommand);
                break;
            }

            var findings = new H323Findings(room);
            var status = PerDecoder.Decode(payload, uuStart, uuStart + uuLength, H323Tables.H323UserInformation, ref findings);
            if (status is not (PerStatus.Ok or PerStatus.Stopped))
            {
                context.Count(HelperEvent.MalformedCommand); // not dropped: the kernel passes what it cannot decode
                break;
            }

            if (findings.Overflowed)
            {
                context.Count(HelperEvent.MalformedCommand);
            }

            if (Message(ref context, findings.Found, findings.T120Channels) == HelperVerdict.Drop)
            {
                return HelperVerdict.Drop;
            }
        }

        return HelperVerdict.Accept;
    }

    private HelperVerdict Message(ref HelperContext context, scoped ReadOnlySpan<H323Found> addresses, ulong t120Channels)
    {
        foreach (var found in addresses)
        {
            var verdict = found.Tag switch
            {
                H323AddressTag.H245Address => H323Actions.ExpectH245(ref context, found, H245),
                H323AddressTag.DestCallSignalAddress => CallSignalAddress(ref context, found, destination: true),
                H323AddressTag.SourceCallSignalAddress => CallSignalAddress(ref context, found, destination: false),
                _ => H323Actions.Channels(ref context, found, t120Channels),
            };
            if (verdict == HelperVerdict.Drop)
            {
                return verdict;
            }
        }

        return HelperVerdict.Accept;
    }

    /// <summary>
    /// A Setup's destCallSignalAddress or sourceCallSignalAddress on a translated connection: the peer's or the
    /// sender's endpoint as the receiver sees it (the kernel's set_h225_addr in process_setup).
    /// </summary>
    private static HelperVerdict CallSignalAddress(ref HelperContext context, in H323Found found, bool destination)
    {
        if (!context.IsNatted || !H323Actions.TryRead(ref context, found, out var address, out _))
        {
            return HelperVerdict.Accept;
        }

        ref readonly var other = ref context.OtherTuple;
        var (to, port) = destination ? (other.Source, other.SourcePort) : (other.Destination, other.DestinationPort);
        if (address == to)
        {
            return HelperVerdict.Accept;
        }

        return H323Actions.Write(ref context, found, to, port) ? HelperVerdict.Accept : HelperVerdict.Drop;
    }
}
