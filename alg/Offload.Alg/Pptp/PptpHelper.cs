using System.Buffers;
using System.Buffers.Binary;

namespace Offload.Alg.Pptp;

/// <summary>
/// The PPTP helper (the kernel's nf_conntrack_pptp with nf_nat_pptp), TCP port 1723, IPv4 and IPv6. It follows the
/// control connection's session and call (Start-Control-Connection, Outgoing-Call and Incoming-Call
/// request/reply/connected, Call-Clear-Request, Call-Disconnect-Notify, WAN-Error-Notify, Set-Link-Info, echoes); when
/// a call is set up it expects the call's GRE both ways, keyed by the two call IDs, as the kernel's exp_gre does. When
/// the control connection's client (the PNS) is translated, the PNS's call ID is translated too, to the control
/// connection's translated TCP port as the kernel chooses it: unique among the clients behind one address calling one
/// server. The PNS's messages leave with that call ID, the server's come back with the PNS's own, and the call's GRE
/// is translated by the engine (source address one way, address and call ID the other).
/// </summary>
/// <remarks>
/// <para>One call per control connection at a time, as the kernel (a second call replaces the first's expectations).</para>
/// <para>Unlike the kernel: every whole message of a segment is read, not only the first; an Incoming-Call-Reply's
/// call ID is translated (the kernel's NAT leaves it, and the incoming call then fails through NAT); a call ID the
/// server sends back is translated only where it is the translated PNS call ID (the kernel also rewrites a
/// Call-Disconnect-Notify that names the server's own call ID); IPv6 works (the kernel's helper is IPv4 only).</para>
/// </remarks>
public sealed class PptpHelper : ConntrackHelper
{
    /// <summary>The kernel's PPTP policy: two expectations (the call's GRE, both ways), for five minutes.</summary>
    public static readonly ExpectationPolicy DefaultPolicy = new(2, TimeSpan.FromMinutes(5));

    /// <summary>The PPTP control port.</summary>
    public const ushort DefaultPort = 1723;

    /// <summary>Messages read in one segment; the rest are passed unread (a control connection sends one at a time).</summary>
    internal const int MaxMessagesPerSegment = 16;

    public PptpHelper()
        : base("pptp", DefaultPolicy)
    {
        Ports = [DefaultPort];
    }

    public override int StateVersion => 1;

    public override HelperVerdict Help(ref HelperContext context)
    {
        // Nothing is read before the handshake is over, as in the kernel.
        if (context.Protocol != IpProtocol.Tcp || (context.CtInfo != CtInfo.Established && context.CtInfo != CtInfo.EstablishedReply))
        {
            return HelperVerdict.Accept;
        }

        var payload = context.Payload;
        if (payload.IsEmpty)
        {
            return HelperVerdict.Accept;
        }

        var state = context.GetState<PptpCallState>();
        int offset = 0;
        for (int count = 0; count < MaxMessagesPerSegment && offset < payload.Length; count++)
        {
            switch (PptpParser.Read(payload, offset, out var message))
            {
                case PptpRead.Control:
                    var verdict = context.Direction == ConnDirection.Original
                        ? FromPns(ref context, state, payload, message)
                        : FromPac(ref context, state, payload, message);
                    if (verdict != HelperVerdict.Accept)
                    {
                        return verdict;
                    }

                    break;
                case PptpRead.Other:
                    break;
                case PptpRead.Partial:
                    context.Count(HelperEvent.PartialCommand);
                    return HelperVerdict.Accept;
                default:
                    context.Count(HelperEvent.MalformedCommand);
                    return HelperVerdict.Accept;
            }

            offset += message.Length;
        }

        return HelperVerdict.Accept;
    }

    /// <summary>A message from the client (PNS) to the server (PAC): the kernel's pptp_outbound_pkt.</summary>
    private static HelperVerdict FromPns(ref HelperContext context, PptpCallState state, ReadOnlySpan<byte> payload, in PptpMessage message)
    {
        switch (message.Type)
        {
            case PptpMessageType.StartControlConnectionRequest:
                if (state.Session == PptpSession.None)
                {
                    state.Session = PptpSession.Requested;
                }

                return HelperVerdict.Accept;

            case PptpMessageType.StopControlConnectionRequest:
                state.Session = PptpSession.StopRequested;
                return HelperVerdict.Accept;

            case PptpMessageType.OutgoingCallRequest:
                if (state.Session != PptpSession.Confirmed)
                {
                    return HelperVerdict.Accept;
                }

                state.Call = PptpCall.OutRequested;
                state.PnsCallId = PptpParser.Field16(payload, message, PptpParser.CallIdOffset);
                state.PnsCallIdAtPac = TranslatedCallId(ref context, state.PnsCallId);
                return RewriteCallId(ref context, message, PptpParser.CallIdOffset, state.PnsCallId, state.PnsCallIdAtPac);

            case PptpMessageType.IncomingCallReply:
                if ((state.Call != PptpCall.InRequested && state.Call != PptpCall.InReplied)
                    || PptpParser.Field16(payload, message, PptpParser.ReplyPeerCallIdOffset) != state.PacCallId)
                {
                    return HelperVerdict.Accept;
                }

                if (PptpParser.Field8(payload, message, PptpParser.CallResultOffset) != 1)
                {
                    state.Call = PptpCall.None;
                    return HelperVerdict.Accept;
                }

                state.Call = PptpCall.InReplied;
                state.PnsCallId = PptpParser.Field16(payload, message, PptpParser.CallIdOffset);
                state.PnsCallIdAtPac = TranslatedCallId(ref context, state.PnsCallId);
                return RewriteCallId(ref context, message, PptpParser.CallIdOffset, state.PnsCallId, state.PnsCallIdAtPac);

            case PptpMessageType.CallClearRequest:
                if (state.Session != PptpSession.Confirmed)
                {
                    return HelperVerdict.Accept;
                }

                state.Call = PptpCall.ClearRequested;
                return RewriteCallId(ref context, message, PptpParser.CallIdOffset, state.PnsCallId, state.PnsCallIdAtPac);

            default:
                // Set-Link-Info names the server's call ID, echoes none: nothing to follow or translate.
                return HelperVerdict.Accept;
        }
    }

    /// <summary>A message from the server (PAC) to the client (PNS): the kernel's pptp_inbound_pkt.</summary>
    private static HelperVerdict FromPac(ref HelperContext context, PptpCallState state, ReadOnlySpan<byte> payload, in PptpMessage message)
    {
        switch (message.Type)
        {
            case PptpMessageType.StartControlConnectionReply:
                if (state.Session >= PptpSession.Requested)
                {
                    state.Session = PptpParser.Field8(payload, message, PptpParser.StartResultOffset) == 1 ? PptpSession.Confirmed : PptpSession.Error;
                }

                return HelperVerdict.Accept;

            case PptpMessageType.StopControlConnectionReply:
                if (state.Session <= PptpSession.StopRequested)
                {
                    state.Session = PptpParser.Field8(payload, message, PptpParser.StopResultOffset) == 1 ? PptpSession.None : PptpSession.Error;
                }

                return HelperVerdict.Accept;

            case PptpMessageType.OutgoingCallReply:
            {
                ushort peer = PptpParser.Field16(payload, message, PptpParser.ReplyPeerCallIdOffset);
                if (state.Session != PptpSession.Confirmed || (state.Call != PptpCall.OutRequested && state.Call != PptpCall.OutConfirmed)
                    || peer != state.PnsCallIdAtPac)
                {
                    return HelperVerdict.Accept;
                }

                if (PptpParser.Field8(payload, message, PptpParser.CallResultOffset) == 1)
                {
                    state.Call = PptpCall.OutConfirmed;
                    state.PacCallId = PptpParser.Field16(payload, message, PptpParser.CallIdOffset);
                    ExpectGre(ref context, state);
                }
                else
                {
                    state.Call = PptpCall.None;
                }

                return RewriteCallId(ref context, message, PptpParser.ReplyPeerCallIdOffset, state.PnsCallIdAtPac, state.PnsCallId);
            }

            case PptpMessageType.IncomingCallRequest:
                if (state.Session == PptpSession.Confirmed)
                {
                    state.Call = PptpCall.InRequested;
                    state.PacCallId = PptpParser.Field16(payload, message, PptpParser.CallIdOffset);
                }

                return HelperVerdict.Accept;

            case PptpMessageType.IncomingCallConnected:
                if (state.Session != PptpSession.Confirmed || (state.Call != PptpCall.InReplied && state.Call != PptpCall.InConfirmed)
                    || PptpParser.Field16(payload, message, PptpParser.PeerCallIdOffset) != state.PnsCallIdAtPac)
                {
                    return HelperVerdict.Accept;
                }

                state.Call = PptpCall.InConfirmed;
                ExpectGre(ref context, state);
                return RewriteCallId(ref context, message, PptpParser.PeerCallIdOffset, state.PnsCallIdAtPac, state.PnsCallId);

            case PptpMessageType.CallDisconnectNotify:
                state.Call = PptpCall.None;

                // The call is over: its GRE is expected no more (the kernel's pptp_destroy_siblings).
                context.Unexpect(0);
                return RewriteCallId(ref context, message, PptpParser.CallIdOffset, state.PnsCallIdAtPac, state.PnsCallId);

            case PptpMessageType.WanErrorNotify:
            case PptpMessageType.SetLinkInfo:
                return RewriteCallId(ref context, message, PptpParser.PeerCallIdOffset, state.PnsCallIdAtPac, state.PnsCallId);

            default:
                return HelperVerdict.Accept;
        }
    }

    /// <summary>
    /// The call ID the server will know the client's call by: the client's own when the control connection is not
    /// translated, otherwise the control connection's translated TCP port (what the kernel's nf_nat_pptp takes, for want
    /// of a call ID reservation): unique per router address and server, so several clients behind one address can call
    /// the same server.
    /// </summary>
    private static ushort TranslatedCallId(ref HelperContext context, ushort own)
    {
        if (!context.IsNatted)
        {
            return own;
        }

        // From the client, the reply tuple is the other one: its destination port is the client's port as translated.
        ref readonly var reply = ref context.Direction == ConnDirection.Original ? ref context.OtherTuple : ref context.Tuple;
        return reply.DestinationPort;
    }

    /// <summary>Rewrites a call ID field of a message when it holds <paramref name="from"/> and the connection is translated.</summary>
    private static HelperVerdict RewriteCallId(ref HelperContext context, in PptpMessage message, int fieldOffset, ushort from, ushort to)
    {
        if (!context.IsNatted || from == to || PptpParser.Field16(context.Payload, message, fieldOffset) != from)
        {
            return HelperVerdict.Accept;
        }

        Span<byte> value = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16BigEndian(value, to);
        if (!context.Rewrite(message.BodyOffset + fieldOffset, 2, value))
        {
            context.Count(HelperEvent.RewriteFailed);
            return HelperVerdict.Drop;
        }

        return HelperVerdict.Accept;
    }

    /// <summary>
    /// Expects the call's GRE both ways (the kernel's exp_gre and, translated, nf_nat_pptp's pptp_exp_gre): from the
    /// client with its own call ID to the server's, leaving from the router's address with the translated call ID; and
    /// from the server to the router's address with the translated call ID, delivered to the client with its own.
    /// </summary>
    private static void ExpectGre(ref HelperContext context, PptpCallState state)
    {
        bool fromPns = context.Direction == ConnDirection.Original;
        ref readonly var original = ref fromPns ? ref context.Tuple : ref context.OtherTuple;
        ref readonly var reply = ref fromPns ? ref context.OtherTuple : ref context.Tuple;
        if (context.IsNatted && original.Destination != reply.Source)
        {
            // The server is behind a port forward: its GRE would need both translations at once, which an expectation
            // cannot carry yet. The call's GRE stays unexpected (counted).
            context.Count(HelperEvent.ExpectationFailed);
            return;
        }

        int prefix = context.Family == 4 ? 32 : 128;
        var toPac = new ExpectationRequest
        {
            Protocol = IpProtocol.Gre,
            Source = original.Source,
            SourcePrefixLength = prefix,
            SourcePort = state.PnsCallId,
            MatchSourcePort = true,
            Destination = original.Destination,
            DestinationPort = state.PacCallId,
            Nat = context.IsNatted ? ExpectationNat.Source : ExpectationNat.None,
            NatAddress = reply.Destination,
            NatPort = state.PnsCallIdAtPac,
        };
        var toPns = new ExpectationRequest
        {
            Protocol = IpProtocol.Gre,
            Source = reply.Source,
            SourcePrefixLength = prefix,
            SourcePort = state.PacCallId,
            MatchSourcePort = true,
            Destination = reply.Destination,
            DestinationPort = state.PnsCallIdAtPac,
            Nat = context.IsNatted ? ExpectationNat.Redirect : ExpectationNat.None,
            NatAddress = original.Source,
            NatPort = state.PnsCallId,
        };

        // As the kernel, a call whose GRE cannot be expected goes on: its control messages are not held back.
        if (context.Expect(ref toPac) != ExpectResult.Added || context.Expect(ref toPns) != ExpectResult.Added)
        {
            context.Count(HelperEvent.ExpectationFailed);
        }
    }

    public override bool SaveState(object state, IBufferWriter<byte> writer)
    {
        if (state is not PptpCallState s)
        {
            return false;
        }

        var span = writer.GetSpan(8);
        span[0] = (byte)s.Session;
        span[1] = (byte)s.Call;
        BinaryPrimitives.WriteUInt16BigEndian(span.Slice(2), s.PnsCallId);
        BinaryPrimitives.WriteUInt16BigEndian(span.Slice(4), s.PnsCallIdAtPac);
        BinaryPrimitives.WriteUInt16BigEndian(span.Slice(6), s.PacCallId);
        writer.Advance(8);
        return true;
    }

    public override object? RestoreState(ReadOnlySpan<byte> data, int version)
    {
        if (version != 1 || data.Length != 8 || data[0] > (byte)PptpSession.Confirmed || data[1] > (byte)PptpCall.ClearRequested)
        {
            return null;
        }

        return new PptpCallState
        {
            Session = (PptpSession)data[0],
            Call = (PptpCall)data[1],
            PnsCallId = BinaryPrimitives.ReadUInt16BigEndian(data.Slice(2)),
            PnsCallIdAtPac = BinaryPrimitives.ReadUInt16BigEndian(data.Slice(4)),
            PacCallId = BinaryPrimitives.ReadUInt16BigEndian(data.Slice(6)),
        };
    }
}

/// <summary>The control session's state (the kernel's pptp_ctrlsess_state, in its order: replies compare against it).</summary>
internal enum PptpSession : byte
{
    None,
    Error,
    StopRequested,
    Requested,
    Confirmed,
}

/// <summary>The call's state (the kernel's pptp_ctrlcall_state).</summary>
internal enum PptpCall : byte
{
    None,
    Error,
    OutRequested,
    OutConfirmed,
    InRequested,
    InReplied,
    InConfirmed,
    ClearRequested,
}

/// <summary>Per control connection: the session, its call, and the call's IDs.</summary>
internal sealed class PptpCallState
{
    public PptpSession Session;
    public PptpCall Call;

    /// <summary>The client's call ID, as the client sent it.</summary>
    public ushort PnsCallId;

    /// <summary>The client's call ID as the server knows it (translated when the control connection is).</summary>
    public ushort PnsCallIdAtPac;

    /// <summary>The server's call ID.</summary>
    public ushort PacCallId;
}
