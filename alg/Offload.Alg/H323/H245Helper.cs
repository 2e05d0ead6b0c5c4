using System.Buffers;
namespace Offload.Alg.H323;

/// <summary>
/// The H.245 helper (the kernel's "H.245" helper): not bound to a port, it helps the H.245 connections that a call's
/// h245Address announced. Each TPKT carries a MultimediaSystemControlMessage in aligned PER; from an
/// OpenLogicalChannel or its Ack it expects RTP and RTCP (and a T.120 connection) and rewrites their addresses when
/// the sender is translated.
/// </summary>
internal sealed class H245Helper : ConntrackHelper
{
    /// <summary>The kernel's H.245 policy (4 logical channels of RTP and RTCP both ways, and T.120; 4 minutes) as the classes rtp, rtcp and t120.</summary>
    public static readonly IReadOnlyList<ExpectationClass> Classes = H323Actions.Classes(h245: false);

    /// <summary>
    /// Named <c>h245</c>, which is no configuration name: the helper is never bound to a port, only attached by
    /// <see cref="H323Helper"/> to the H.245 connections it expects (and found through it when a snapshot is restored).
    /// </summary>
    public H245Helper()
        : base("h245", Classes)
    {
    }

    public override int StateVersion => H323State.Version;

    public override bool SaveState(object state, IBufferWriter<byte> writer) => H323State.Save(state, writer);

    public override object? RestoreState(ReadOnlySpan<byte> data, int version) => H323State.Restore(data, version);

    public override HelperVerdict Help(ref HelperContext context)
    {
        if (context.CtInfo is not (CtInfo.Established or CtInfo.EstablishedReply))
        {
            return HelperVerdict.Accept;
        }

        var payload = context.Payload;
        Span<H323Found> room = stackalloc H323Found[H323Actions.MaxFound];
        int offset = 0;
        for (int read = 0; read < H323Framing.MaxTpktsPerSegment && H323Framing.NextTpkt(ref context, ref offset, out int start, out int length); read++)
        {
            var findings = new H323Findings(room);
            var status = PerDecoder.Decode(payload, start, start + length, H323Tables.MultimediaSystemControlMessage, ref findings);
            if (status is not (PerStatus.Ok or PerStatus.Stopped))
            {
                context.Count(HelperEvent.MalformedCommand);
                break;
            }

            foreach (var found in findings.Found)
            {
                if (H323Actions.Channels(ref context, found, findings.T120Channels) == HelperVerdict.Drop)
                {
                    return HelperVerdict.Drop;
                }
            }
        }

        return HelperVerdict.Accept;
    }
}
