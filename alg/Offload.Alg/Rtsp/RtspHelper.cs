using System.Buffers;
using System.Buffers.Text;
using Offload.Alg.Sip;

namespace Offload.Alg.Rtsp;

/// <summary>
/// The RTSP helper (what the out-of-tree nf_conntrack_rtsp and nf_nat_rtsp modules do, and what they had to fix),
/// on TCP port 554, IPv4 and IPv6. It reads every RTSP message of the control connection. A SETUP's Transport header
/// announces where the client takes the media (<c>client_port=</c>): RTP and RTCP from the server are expected there,
/// and when the client is translated the router's ports (and a <c>destination=</c> naming the client) are written in
/// its place, and written back in the answer. The answer (<c>server_port=</c>, <c>source=</c>) pairs the client's own
/// RTP and RTCP with them, and when the server is the translated one (a port forward), the server's ports are placed
/// at the router and rewritten. TEARDOWN withdraws the connection's expectations. Interleaved transports (RTP over
/// the RTSP connection) and multicast are left alone.
/// </summary>
public sealed class RtspHelper : ConntrackHelper
{
    /// <summary>The out-of-tree module's defaults, for each class: 8 outstanding expectations (<c>max_outstanding</c>), 5 minutes each (<c>setup_timeout</c>).</summary>
    public static readonly ExpectationPolicy DefaultPolicy = new(8, TimeSpan.FromMinutes(5));

    /// <summary>
    /// The classes, as <c>offloadctl expect list</c> names them: <c>media</c>, what the server sends to the client;
    /// <c>paired</c>, the client's own RTP and RTCP to the server's ports (and a port-forwarded server's ports). Each
    /// holds a control connection to <see cref="DefaultPolicy"/> on its own.
    /// </summary>
    public static readonly IReadOnlyList<ExpectationClass> Classes =
    [
        new("media", DefaultPolicy.MaxExpected, DefaultPolicy.Timeout),
        new("paired", DefaultPolicy.MaxExpected, DefaultPolicy.Timeout),
    ];

    public const ushort DefaultPort = 554;

    /// <summary>The class of the media the server sends to the client.</summary>
    internal const int MediaClass = 0;

    /// <summary>The class of the client's own RTP and RTCP to the server (paired with the media, so both directions share one mapping).</summary>
    internal const int PairedClass = 1;

    /// <summary>Messages read in one segment; more are passed unread (counted).</summary>
    internal const int MaxMessagesPerSegment = 32;

    private volatile RtspOptions _options = RtspOptions.Default;

    public RtspHelper()
        : base("rtsp", Classes)
    {
        Ports = [DefaultPort];
    }

    /// <summary>Takes <c>any-source</c> (true or false) from the configuration's <c>options:</c>.</summary>
    public override void Configure(IReadOnlyDictionary<string, string> options) => _options = RtspOptions.Read(options, _options);

    /// <summary>1: where a body split across segments ends in each direction, and the transports of unanswered SETUPs.</summary>
    public override int StateVersion => 1;

    /// <summary>Writes a control connection's state (19 bytes, 12 more per unanswered transport) for a restart of the daemon.</summary>
    public override bool SaveState(object state, IBufferWriter<byte> writer)
    {
        if (state is not RtspSessionState rtsp)
        {
            return false;
        }

        rtsp.Write(writer);
        return true;
    }

    /// <summary>Reads what <see cref="SaveState"/> wrote; null (fresh state) for anything else.</summary>
    public override object? RestoreState(ReadOnlySpan<byte> data, int version) =>
        version == 1 ? RtspSessionState.Read(data) : null;

    public override HelperVerdict Help(ref HelperContext context)
    {
        var payload = context.Payload;
        if (payload.IsEmpty || context.Protocol != IpProtocol.Tcp)
        {
            return HelperVerdict.Accept;
        }

        var state = context.GetState<RtspSessionState>();
        uint sequence = context.TcpSequence;
        int offset = state.StartOf(context.Direction, sequence, payload.Length);
        if (offset < 0)
        {
            return HelperVerdict.Accept;
        }

        // Interleaved frames are stepped over at 4 bytes' cost each and do not count against the messages read: a
        // segment of RTP over the connection holds hundreds of them.
        int read = 0;
        while (offset < payload.Length)
        {
            var status = RtspParser.Parse(payload[offset..], out var message);
            if (status is RtspParseStatus.NotRtsp)
            {
                break;
            }

            if (status is RtspParseStatus.Incomplete or RtspParseStatus.Malformed)
            {
                context.Count(status == RtspParseStatus.Incomplete ? HelperEvent.PartialCommand : HelperEvent.MalformedCommand);
                break;
            }

            if (status == RtspParseStatus.Ok)
            {
                if (read++ == MaxMessagesPerSegment)
                {
                    context.Count(HelperEvent.PartialCommand);
                    break;
                }

                if (HelpMessage(ref context, state, offset, in message) == HelperVerdict.Drop)
                {
                    return HelperVerdict.Drop;
                }
            }

            long end = (long)offset + message.Length;
            if (end > payload.Length)
            {
                state.ResumeAt(context.Direction, sequence, unchecked(sequence + (uint)end));
                break;
            }

            offset = (int)end;
            while (offset < payload.Length && (payload[offset] == (byte)'\r' || payload[offset] == (byte)'\n'))
            {
                offset++;
            }
        }

        return HelperVerdict.Accept;
    }

    private HelperVerdict HelpMessage(ref HelperContext context, RtspSessionState state, int offset, in RtspMessage message)
    {
        if (!message.IsResponse)
        {
            if (context.Direction != ConnDirection.Original)
            {
                return HelperVerdict.Accept; // a server's request (ANNOUNCE, GET_PARAMETER): nothing to open
            }

            if (message.Method == RtspMethod.Teardown)
            {
                // The session ends: its media pinholes go (the module's nf_ct_remove_expectations, which is not
                // session-aware either). Media connections that already arrived run out by their own timeouts.
                context.Unexpect(MediaClass);
                context.Unexpect(PairedClass);
                state.Clear();
                return HelperVerdict.Accept;
            }

            return message.Method == RtspMethod.Setup && message.TransportStart >= 0
                ? Edit(ref context, state, offset, in message, request: true)
                : HelperVerdict.Accept;
        }

        if (context.Direction != ConnDirection.Reply)
        {
            return HelperVerdict.Accept;
        }

        var verdict = message.StatusCode is >= 200 and < 300 && message.TransportStart >= 0
            ? Edit(ref context, state, offset, in message, request: false)
            : HelperVerdict.Accept;
        if (message.StatusCode >= 300)
        {
            Refused(ref context, state, message.CSeq);
        }

        if (message.StatusCode >= 200)
        {
            state.Answered(message.CSeq);
        }

        return verdict;
    }

    /// <summary>
    /// A request refused (a SETUP's 4xx, a redirect): the pinholes its SETUP opened are withdrawn now, one by one as
    /// <see cref="ExpectMedia"/> registered them, rather than left open for their 5 minutes (the module leaves them).
    /// Another SETUP's stay. Any other request's answer finds no transport of its CSeq and withdraws nothing.
    /// </summary>
    private void Refused(ref HelperContext context, RtspSessionState state, int cseq)
    {
        ref readonly var own = ref context.Tuple;
        ref readonly var other = ref context.OtherTuple;
        bool serverTranslated = context.IsNatted && own.Source != other.Destination;
        bool clientTranslated = context.IsNatted && own.Destination != other.Source;
        if (cseq < 0 || (serverTranslated && !clientTranslated))
        {
            return; // nothing is expected before a port-forwarded server's answer; no CSeq: no telling which SETUP
        }

        var request = new ExpectationRequest
        {
            Protocol = IpProtocol.Udp,
            Source = own.Source,
            SourcePrefixLength = _options.AnySource ? 0 : context.Family == 4 ? 32 : 128,
            Destination = own.Destination,
            Class = MediaClass,
        };
        foreach (var setup in state.Pending)
        {
            if (!setup.Present || setup.CSeq != cseq)
            {
                continue;
            }

            request.DestinationPort = setup.AnnouncedRtp;
            context.Unexpect(in request);
            if (setup.AnnouncedRtcp != setup.AnnouncedRtp)
            {
                request.DestinationPort = setup.AnnouncedRtcp;
                context.Unexpect(in request);
            }
        }
    }

    /// <summary>Reads a SETUP's or its answer's Transport, expects what it announces, and rewrites it when translated.</summary>
    private HelperVerdict Edit(ref HelperContext context, RtspSessionState state, int offset, in RtspMessage message, bool request)
    {
        var text = context.Payload[offset..];
        // The edits live in this thread's scratch (the SIP helper's: a helper's calls on one thread never overlap), so
        // a message costs no allocation.
        var scratch = SipScratch.ForThisThread;
        var edits = new SipEdits(scratch.Edits, scratch.Text);
        var reader = new RtspTransportReader(text, message.TransportStart, message.TransportEnd, context.Family);
        while (reader.Next(out var spec))
        {
            if (spec.Malformed)
            {
                context.Count(HelperEvent.MalformedCommand);
                continue;
            }

            if (!spec.IsUdpUnicast)
            {
                continue; // interleaved (RTP over this connection) or multicast: nothing to open
            }

            var verdict = request
                ? Setup(ref context, state, in spec, message.CSeq, ref edits)
                : Answer(ref context, state, in spec, message.CSeq, ref edits);
            if (verdict == HelperVerdict.Drop)
            {
                return verdict;
            }
        }

        if (reader.TooMany)
        {
            context.Count(HelperEvent.MalformedCommand);
        }

        if (edits.Count == 0)
        {
            return HelperVerdict.Accept;
        }

        if (edits.Overflowed || !edits.Apply(ref context, offset))
        {
            // Half a translation is worse than none: drop, the client resends (and the expectations this packet
            // announced are withdrawn with it).
            context.Count(HelperEvent.RewriteFailed);
            return HelperVerdict.Drop;
        }

        return HelperVerdict.Accept;
    }

    /// <summary>
    /// One UDP transport of a SETUP, from the client. When the server is not translated, RTP and RTCP from it are
    /// expected at the client's ports now (the module's expectations); when the client is translated, at the router's
    /// ports the engine placed, which replace the client's in the request. When the server is translated (a port
    /// forward), nothing is expected yet: the answer's server ports are needed to pair both directions.
    /// </summary>
    private HelperVerdict Setup(ref HelperContext context, RtspSessionState state, in RtspTransportSpec spec, int cseq, ref SipEdits edits)
    {
        ref readonly var own = ref context.Tuple;
        ref readonly var other = ref context.OtherTuple;
        bool clientTranslated = context.IsNatted && own.Source != other.Destination;
        bool serverTranslated = context.IsNatted && own.Destination != other.Source;
        var ports = spec.ClientPorts;
        if (spec.Destination.Present && (!spec.Destination.Parsed || spec.Destination.Address != own.Source))
        {
            // Media for a third party (or a name we cannot compare): no pinhole, nothing rewritten. The module strips
            // such a destination; a server that honours it sends the media elsewhere, not through this flow.
            context.Count(HelperEvent.ForeignAddressRefused);
            return HelperVerdict.Accept;
        }

        ushort announced = ports.Rtp;
        if (state.TryFindOffered(cseq, ports.Rtp, out var earlier) && earlier.Rtcp == ports.Rtcp)
        {
            announced = earlier.AnnouncedRtp; // the same ports offered again in another spec: one set of pinholes
        }
        else if (!serverTranslated || clientTranslated)
        {
            // (Both translated is hairpin NAT: the server sees the client at the router's LAN address, where the media
            // is expected and sent on to the client.)
            var result = ExpectMedia(ref context, ports, clientTranslated, out announced);
            if (result != ExpectResult.Added)
            {
                context.Count(HelperEvent.ExpectationFailed);
                return HelperVerdict.Drop; // as the module: the client resends its SETUP
            }
        }

        ushort announcedRtcp = ports.Single ? announced : (ushort)(announced + 1);
        state.Add(new PendingTransport(true, cseq, ports.Rtp, ports.Rtcp, announced, announcedRtcp));
        if (clientTranslated)
        {
            if (announced != ports.Rtp || announcedRtcp != ports.Rtcp)
            {
                AddPorts(ref edits, ports, announced, announcedRtcp);
            }

            if (spec.Destination.Present)
            {
                AddAddress(ref edits, spec.Destination, other.Destination, context.Family);
            }
        }

        return HelperVerdict.Accept;
    }

    /// <summary>RTP (and RTCP) from the server to the client's announced ports; the port the server sees for RTP comes back in <paramref name="announced"/>.</summary>
    private ExpectResult ExpectMedia(ref HelperContext context, RtspPorts ports, bool clientTranslated, out ushort announced)
    {
        var rtp = context.FromPeer(IpProtocol.Udp, ports.Rtp);
        rtp.Class = MediaClass;
        if (_options.AnySource)
        {
            rtp.SourcePrefixLength = 0;
        }

        ExpectResult result;
        if (!ports.Single && ports.Rtcp == ports.Rtp + 1)
        {
            // The usual RTP/RTCP pair: both or neither, at two consecutive router ports when translated (searched two
            // at a time, so RTCP is never refused after RTP found its port).
            result = context.ExpectPair(ref rtp);
            announced = rtp.DestinationPort;
            return result;
        }

        result = context.Expect(ref rtp);
        announced = rtp.DestinationPort;
        if (result != ExpectResult.Added || ports.Single)
        {
            return result;
        }

        if (announced == ushort.MaxValue)
        {
            return ExpectResult.NoFreePort;
        }

        var rtcp = rtp;
        if (clientTranslated)
        {
            // The router's port after RTP's, sent on to the client's own RTCP port.
            rtcp.DestinationPort = (ushort)(announced + 1);
            rtcp.Nat = ExpectationNat.Redirect;
            rtcp.NatAddress = context.Tuple.Source;
            rtcp.NatPort = ports.Rtcp;
        }
        else
        {
            rtcp.DestinationPort = ports.Rtcp;
        }

        return context.Expect(ref rtcp);
    }

    /// <summary>One UDP transport of a SETUP's 2xx answer, from the server.</summary>
    private HelperVerdict Answer(ref HelperContext context, RtspSessionState state, in RtspTransportSpec spec, int cseq, ref SipEdits edits)
    {
        ref readonly var own = ref context.Tuple;
        ref readonly var other = ref context.OtherTuple;
        bool serverTranslated = context.IsNatted && own.Source != other.Destination;
        bool clientTranslated = context.IsNatted && own.Destination != other.Source;
        if (!state.TryFind(cseq, spec.ClientPorts.Rtp, out var setup))
        {
            return HelperVerdict.Accept; // not a transport the client offered through us
        }

        // Where the media comes from: the answer's source= when it names another host (the media server is not
        // always the RTSP server), else the server. Its ports are the answer's server_port.
        var mediaSource = spec.Source.Parsed ? spec.Source.Address : own.Source;
        if (clientTranslated)
        {
            // The server's view of the client (the router's ports, its address) goes back to the client's own.
            if (setup.AnnouncedRtp != setup.Rtp || setup.AnnouncedRtcp != setup.Rtcp)
            {
                AddPorts(ref edits, spec.ClientPorts, setup.Rtp, setup.Rtcp);
            }

            if (spec.Destination.Present && spec.Destination.Parsed && spec.Destination.Address == own.Destination)
            {
                AddAddress(ref edits, spec.Destination, other.Source, context.Family);
            }

            if (mediaSource != own.Source)
            {
                ExpectFromOtherSource(ref context, setup, mediaSource);
            }

            if (spec.ServerPorts.Present)
            {
                // The client's own RTP and RTCP to the server leave from the router's ports the server sends to, so
                // that whichever side sends first, the other's packets are that flow's replies.
                PairClientMedia(ref context, setup, spec.ServerPorts, spec.Source.Parsed ? mediaSource : other.Destination);
            }
        }
        else if (serverTranslated)
        {
            if (!spec.ServerPorts.Present)
            {
                return HelperVerdict.Accept; // nothing says where the media comes from
            }

            var result = ExpectServerMedia(ref context, setup, spec.ServerPorts, out ushort placed);
            if (result != ExpectResult.Added)
            {
                context.Count(HelperEvent.ExpectationFailed);
                return HelperVerdict.Drop;
            }

            ushort placedRtcp = spec.ServerPorts.Single ? placed : (ushort)(placed + 1);
            if (placed != spec.ServerPorts.Rtp || placedRtcp != spec.ServerPorts.Rtcp)
            {
                AddPorts(ref edits, spec.ServerPorts, placed, placedRtcp);
            }

            if (spec.Source.Present && spec.Source.Parsed && spec.Source.Address == own.Source)
            {
                AddAddress(ref edits, spec.Source, other.Destination, context.Family);
            }
        }
        else if (mediaSource != own.Source)
        {
            ExpectFromOtherSource(ref context, setup, mediaSource);
        }

        return HelperVerdict.Accept;
    }

    /// <summary>The answer names another media source: the same pinholes, from it (at the ports the server was told).</summary>
    private void ExpectFromOtherSource(ref HelperContext context, in PendingTransport setup, InetAddress source)
    {
        if (_options.AnySource)
        {
            return; // the pinholes take any source already
        }

        ref readonly var other = ref context.OtherTuple;
        bool translated = setup.AnnouncedRtp != setup.Rtp || other.Source != context.Tuple.Destination;
        for (int i = 0; i < (setup.Rtp == setup.Rtcp ? 1 : 2); i++)
        {
            var request = new ExpectationRequest
            {
                Protocol = IpProtocol.Udp,
                Source = source,
                SourcePrefixLength = context.Family == 4 ? 32 : 128,
                Destination = context.Tuple.Destination,
                DestinationPort = i == 0 ? setup.AnnouncedRtp : setup.AnnouncedRtcp,
                Class = MediaClass,
                Nat = translated ? ExpectationNat.Redirect : ExpectationNat.None,
                NatAddress = other.Source,
                NatPort = i == 0 ? setup.Rtp : setup.Rtcp,
            };
            if (context.Expect(ref request) != ExpectResult.Added)
            {
                context.Count(HelperEvent.ExpectationFailed);
            }
        }
    }

    /// <summary>
    /// The translated client's RTP and RTCP to the server's ports leave from the router's ports announced for them
    /// (as SIP's paired media). Optional: without it, the server's media still arrives through the media pinholes.
    /// </summary>
    private static void PairClientMedia(ref HelperContext context, in PendingTransport setup, RtspPorts server, InetAddress serverAddress)
    {
        ref readonly var other = ref context.OtherTuple;
        for (int i = 0; i < (setup.Rtp == setup.Rtcp || server.Single ? 1 : 2); i++)
        {
            var request = new ExpectationRequest
            {
                Protocol = IpProtocol.Udp,
                Source = other.Source,
                SourcePrefixLength = context.Family == 4 ? 32 : 128,
                SourcePort = i == 0 ? setup.Rtp : setup.Rtcp,
                MatchSourcePort = true,
                Destination = serverAddress,
                DestinationPort = i == 0 ? server.Rtp : server.Rtcp,
                Class = PairedClass,
                Nat = ExpectationNat.Source,
                NatAddress = context.Tuple.Destination,
                NatPort = i == 0 ? setup.AnnouncedRtp : setup.AnnouncedRtcp,
            };
            if (context.Expect(ref request) != ExpectResult.Added)
            {
                context.Count(HelperEvent.ExpectationFailed);
            }
        }
    }

    /// <summary>
    /// A port forward: the server's ports are placed at the router (the engine chooses, inside the daemon's nat-ports);
    /// the client's RTP and RTCP to them are sent on to the server's own ports, and the server's media to the client
    /// leaves from them, so both directions share one mapping whoever sends first.
    /// </summary>
    private ExpectResult ExpectServerMedia(ref HelperContext context, in PendingTransport setup, RtspPorts server, out ushort placed)
    {
        ref readonly var own = ref context.Tuple;
        ref readonly var other = ref context.OtherTuple;
        var rtp = context.FromPeer(IpProtocol.Udp, server.Rtp);
        rtp.Class = PairedClass;
        if (_options.AnySource)
        {
            rtp.SourcePrefixLength = 0;
        }

        var result = context.Expect(ref rtp);
        placed = rtp.DestinationPort;
        if (result != ExpectResult.Added)
        {
            return result;
        }

        if (!server.Single)
        {
            if (placed == ushort.MaxValue)
            {
                return ExpectResult.NoFreePort;
            }

            var rtcp = rtp;
            rtcp.DestinationPort = (ushort)(placed + 1);
            rtcp.Nat = ExpectationNat.Redirect;
            rtcp.NatAddress = own.Source;
            rtcp.NatPort = server.Rtcp;
            result = context.Expect(ref rtcp);
            if (result != ExpectResult.Added)
            {
                return result;
            }
        }

        // The server's own media to the client's ports, from the router's.
        for (int i = 0; i < (server.Single || setup.Rtp == setup.Rtcp ? 1 : 2); i++)
        {
            var media = new ExpectationRequest
            {
                Protocol = IpProtocol.Udp,
                Source = own.Source,
                SourcePrefixLength = context.Family == 4 ? 32 : 128,
                SourcePort = i == 0 ? server.Rtp : server.Rtcp,
                MatchSourcePort = true,
                Destination = own.Destination,
                DestinationPort = i == 0 ? setup.Rtp : setup.Rtcp,
                Class = MediaClass,
                Nat = ExpectationNat.Source,
                NatAddress = other.Destination,
                NatPort = i == 0 ? placed : (ushort)(placed + 1),
            };
            result = context.Expect(ref media);
            if (result != ExpectResult.Added)
            {
                return result;
            }
        }

        return ExpectResult.Added;
    }

    /// <summary>Rewrites a port parameter's value as <c>rtp</c>, or <c>rtp-rtcp</c> (<c>rtp/rtcp</c>) in the form it was written.</summary>
    private static void AddPorts(ref SipEdits edits, RtspPorts ports, ushort rtp, ushort rtcp)
    {
        var scratch = edits.Scratch;
        if (scratch.Length < 11 || !Utf8Formatter.TryFormat(rtp, scratch, out int written))
        {
            edits.Fail();
            return;
        }

        if (!ports.Single)
        {
            scratch[written++] = ports.Separator;
            Utf8Formatter.TryFormat(rtcp, scratch[written..], out int more);
            written += more;
        }

        edits.Add(ports.Start, ports.Length, written);
    }

    private static void AddAddress(ref SipEdits edits, RtspAddress at, InetAddress address, byte family)
    {
        if (edits.Scratch.Length < SipAddressText.MaxLength)
        {
            edits.Fail();
            return;
        }

        int written = SipAddressText.Format(address, family, 0, withPort: false, bracket: false, edits.Scratch);
        edits.Add(at.Start, at.Length, written);
    }
}
