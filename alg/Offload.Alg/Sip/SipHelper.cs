using System.Buffers.Text;

namespace Offload.Alg.Sip;

/// <summary>
/// The SIP helper (the kernel's nf_conntrack_sip with nf_nat_sip), over UDP and TCP, IPv4 and IPv6. It reads each
/// SIP message of a signalling flow; from the SDP body of an INVITE, UPDATE, ACK or PRACK, and of the 1xx/2xx
/// responses to them, it expects the RTP and RTCP flows of each audio, video or image stream as a pair on consecutive
/// ports, from the peer to the announcer's media address; from a REGISTER it expects calls to the registered
/// Contact. When the signalling flow is translated it rewrites what nf_nat_sip rewrites: the Request-URI, the topmost
/// Via (sent-by, maddr=, received=, rport=), every Contact, From and To when they name the translated endpoint, the
/// SDP's o=, c= and m= lines, and Content-Length after a change of the body's length.
/// </summary>
/// <remarks>
/// <para>Only messages that start a datagram or follow a whole message in a TCP segment are read, as the kernel
/// reads them: one split across segments is counted (<see cref="HelperEvent.PartialCommand"/>) and passed. Unlike the
/// kernel, when its headers are whole (its length known), the messages after it are read from where it ends in a later
/// segment, and the segments in between are not mistaken for message starts.</para>
/// <para>Unlike the kernel it also moves an <c>a=rtcp:</c> port along with the RTP port it follows.</para>
/// </remarks>
public sealed class SipHelper : ConntrackHelper
{
    /// <summary>
    /// The kernel's expectation classes for SIP (sip_exp_policy), by <see cref="SipExpectClass"/>: one registered Contact
    /// per signalling flow; per call flow, audio and video RTP and RTCP both ways (4), image (T.38) one pair (2); each
    /// waits three minutes.
    /// </summary>
    public static readonly IReadOnlyList<ExpectationClass> Classes =
    [
        new("signalling", 1, TimeSpan.FromMinutes(3)),
        new("audio", 4, TimeSpan.FromMinutes(3)),
        new("video", 4, TimeSpan.FromMinutes(3)),
        new("image", 2, TimeSpan.FromMinutes(3)),
    ];

    public const ushort DefaultPort = 5060;

    /// <summary>Messages read in one TCP segment; more are passed unread (counted), so a segment costs a bounded scan.</summary>
    internal const int MaxMessagesPerSegment = 16;

    /// <summary>
    /// Ports tried upwards, two at a time, for an RTP/RTCP pair at the router sent on to a third party's media (direct-media
    /// off) whose announced ports are taken (the kernel tries until 65535). A pair for the sender's own media is placed
    /// by the engine.
    /// </summary>
    internal const int MaxPairAttempts = 64;

    private SipOptions _options;

    public SipHelper()
        : this(SipOptions.Default)
    {
    }

    internal SipHelper(SipOptions options)
        : base("sip", Classes)
    {
        Protocols = [IpProtocol.Udp, IpProtocol.Tcp];
        Ports = [DefaultPort];
        _options = options;
    }

    /// <summary>Takes pinhole-only, direct-media and direct-signalling (true or false) from the configuration's <c>options:</c>.</summary>
    public override void Configure(IReadOnlyDictionary<string, string> options) => _options = SipOptions.Read(options, _options);

    /// <summary>Version 1: per media position, the translated side's offer and the untranslated side's media (<see cref="SipCallState.SavedLength"/> bytes).</summary>
    public override int StateVersion => 1;

    /// <summary>Writes a call flow's media (what a paired answer needs), so that a call answered after a restart pairs its media as before.</summary>
    public override bool SaveState(object state, System.Buffers.IBufferWriter<byte> writer)
    {
        if (state is not SipCallState call)
        {
            return false;
        }

        call.Write(writer);
        return true;
    }

    public override object? RestoreState(ReadOnlySpan<byte> data, int version) =>
        version == 1 ? SipCallState.Read(data) : null;

    public override HelperVerdict Help(ref HelperContext context)
    {
        var payload = context.Payload;
        if (payload.IsEmpty || (context.Protocol != IpProtocol.Udp && context.Protocol != IpProtocol.Tcp))
        {
            return HelperVerdict.Accept;
        }

        bool stream = context.Protocol == IpProtocol.Tcp;
        int offset = 0;
        if (stream && context.TryGetState(out SipCallState? resume) && !resume.Resume(context.Direction, context.TcpSequence, payload.Length, out offset))
        {
            return HelperVerdict.Accept; // the middle of a message split across segments: nothing here starts one
        }

        while (offset > 0 && offset < payload.Length && payload[offset] is (byte)'\r' or (byte)'\n')
        {
            offset++; // keep-alives after the split message
        }

        for (int read = 0; offset < payload.Length; read++)
        {
            if (read == MaxMessagesPerSegment)
            {
                context.Count(HelperEvent.PartialCommand);
                break;
            }

            var status = SipParser.Parse(payload[offset..], stream, out var message);
            if (status == SipParseStatus.NotSip)
            {
                break;
            }

            if (status != SipParseStatus.Ok)
            {
                context.Count(status == SipParseStatus.Incomplete ? HelperEvent.PartialCommand : HelperEvent.MalformedCommand);
                if (status == SipParseStatus.Incomplete && message.Length > 0)
                {
                    // Passed as it is (its first part cannot wait for the rest: see architecture.md), but its length is
                    // known: the messages after it, in a later segment, are read from where it ends.
                    context.GetState<SipCallState>().ResumeAt(context.Direction, context.TcpSequence + (uint)(offset + message.Length));
                }

                break;
            }

            if (HelpMessage(ref context, offset, in message) == HelperVerdict.Drop)
            {
                return HelperVerdict.Drop;
            }

            offset += message.Length;
            if (!stream)
            {
                break; // one message per datagram (RFC 3261 section 18.1.1)
            }

            // Keep-alives (RFC 5626: CRLF) between messages on a stream.
            while (offset < payload.Length && (payload[offset] == (byte)'\r' || payload[offset] == (byte)'\n'))
            {
                offset++;
            }
        }

        return HelperVerdict.Accept;
    }

    private HelperVerdict HelpMessage(ref HelperContext context, int offset, in SipMessage message)
    {
        var text = context.Payload.Slice(offset, message.Length);
        // The edits live in this thread's scratch (too large for the stack, and a helper's calls on one thread never
        // overlap): nothing is allocated per message.
        var scratch = SipScratch.ForThisThread;
        var edits = new SipEdits(scratch.Edits, scratch.Text);
        bool translate = context.IsNatted && !_options.PinholeOnly;
        if (translate)
        {
            SipHeaderRewriter.Translate(ref context, text, in message, ref edits);
        }

        if (CarriesSdp(in message) && message.BodyLength > 0
            && SdpMedia(ref context, text, in message, translate, ref edits) == HelperVerdict.Drop)
        {
            return HelperVerdict.Drop;
        }

        if (EndsMedia(in message))
        {
            // The call is over (or never began): its media pinholes go, as the kernel's flush_expectations does.
            context.Unexpect(SipExpectClass.Audio);
            context.Unexpect(SipExpectClass.Video);
            context.Unexpect(SipExpectClass.Image);
        }

        if (!message.IsResponse && message.Method == SipMethod.Register
            && Register(ref context, text, in message) == HelperVerdict.Drop)
        {
            return HelperVerdict.Drop;
        }

        if (edits.Count == 0)
        {
            return HelperVerdict.Accept;
        }

        if (edits.Overflowed)
        {
            // Half a translation is worse than none: the kernel drops a message it cannot mangle, and the peer resends.
            context.Count(HelperEvent.RewriteFailed);
            return HelperVerdict.Drop;
        }

        int bodyDelta = edits.DeltaWithin(message.BodyStart, message.Length);
        if (bodyDelta != 0 && message.ContentLengthStart >= 0)
        {
            // The body's length changed: the frame must say so (the kernel's mangle_content_len).
            if (!Utf8Formatter.TryFormat(message.BodyLength + bodyDelta, edits.Scratch, out int written))
            {
                context.Count(HelperEvent.RewriteFailed);
                return HelperVerdict.Drop;
            }

            edits.Add(message.ContentLengthStart, message.ContentLengthEnd - message.ContentLengthStart, written);
        }

        if (edits.Overflowed || !edits.Apply(ref context, offset))
        {
            context.Count(HelperEvent.RewriteFailed);
            return HelperVerdict.Drop;
        }

        return HelperVerdict.Accept;
    }

    /// <summary>A BYE or CANCEL, or a final failure answering an INVITE: the call's media expectations are withdrawn.</summary>
    private static bool EndsMedia(in SipMessage message) =>
        message.IsResponse
            ? message.Method == SipMethod.Invite && message.StatusCode >= 300
            : message.Method is SipMethod.Bye or SipMethod.Cancel;

    /// <summary>The messages whose SDP the kernel reads: offers and answers of INVITE, UPDATE, ACK and PRACK (1xx and 2xx responses).</summary>
    private static bool CarriesSdp(in SipMessage message) =>
        message.Method is SipMethod.Invite or SipMethod.Update or SipMethod.Ack or SipMethod.Prack
        && (!message.IsResponse || message.StatusCode < 300);

    private HelperVerdict SdpMedia(ref HelperContext context, ReadOnlySpan<byte> text, in SipMessage message, bool translate, ref SipEdits edits)
    {
        var body = text.Slice(message.BodyStart, message.BodyLength);
        byte family = context.Family;
        Span<SdpMedia> media = stackalloc SdpMedia[SdpScanner.MaxMedia];
        if (!SdpScanner.Scan(body, family, out var owner, out var session, media, out int count, out bool tooMany))
        {
            return HelperVerdict.Accept; // not SDP
        }

        if (tooMany)
        {
            context.Count(HelperEvent.MalformedCommand);
        }

        ref readonly var own = ref context.Tuple;
        ref readonly var other = ref context.OtherTuple;
        // The sender's address is translated when the peer sees it elsewhere (the kernel's test in nf_nat_sdp_media).
        bool senderTranslated = own.Source != other.Destination;
        bool anyTranslated = false;
        InetAddress lastAddress = default;
        SipCallState? call = null;
        if (senderTranslated && context.IsNatted)
        {
            call = context.GetState<SipCallState>(); // once per call flow, the first time its translated side offers media
            call.Clear();
        }
        else if (context.IsNatted)
        {
            call = context.GetState<SipCallState>(); // the untranslated side's media, for the answer to pair with
            call.ClearPeer();
        }

        for (int i = 0; i < count; i++)
        {
            var m = media[i];
            var address = m.Connection.Present ? m.Connection : session;
            if (!address.Present)
            {
                context.Count(HelperEvent.MalformedCommand); // media with no address at all
                continue;
            }

            lastAddress = address.Address;
            if (m.Port < 1024)
            {
                continue; // 0 disables a stream; below 1024 is no RTP port (the kernel skips both)
            }

            if (_options.DirectMedia && address.Address != own.Source)
            {
                continue; // media announced for a third party: no pinhole, as the kernel's sip_direct_media
            }

            ushort port;
            ExpectResult result;
            if (senderTranslated && context.IsNatted)
            {
                result = ExpectTranslatedPair(ref context, m, address.Address, out port);
                if (result == ExpectResult.Added)
                {
                    call!.Remember(i, address.Address, m.Port, port);
                    if (call.TryTakePeer(i, out var peer))
                    {
                        PairWithPeerOffer(ref context, m, address.Address, port, peer);
                    }
                }
            }
            else if (context.IsNatted && call is not null && call.TryGet(i, out var offered))
            {
                result = ExpectPairedAnswer(ref context, address.Address, m.Port, m.Class, offered, own.Destination);
                port = m.Port;
            }
            else
            {
                result = ExpectPair(ref context, m, address.Address, out port);
                if (result == ExpectResult.Added)
                {
                    call?.RememberPeer(i, address.Address, port);
                }
            }

            if (result != ExpectResult.Added)
            {
                context.Count(HelperEvent.ExpectationFailed);
                return HelperVerdict.Drop;
            }

            if (!translate)
            {
                continue;
            }

            var rtpAddress = senderTranslated ? other.Destination : address.Address;
            lastAddress = rtpAddress;
            anyTranslated |= senderTranslated;
            int bodyStart = message.BodyStart;
            if (port != m.Port)
            {
                AddNumber(ref edits, bodyStart + m.PortStart, m.PortLength, port);
                if (m.RtcpPortStart >= 0 && m.RtcpPort == m.Port + 1)
                {
                    AddNumber(ref edits, bodyStart + m.RtcpPortStart, m.RtcpPortLength, (ushort)(port + 1));
                }
            }

            if (m.Connection.Present && m.Connection.Address != rtpAddress)
            {
                AddAddress(ref edits, bodyStart + m.Connection.Start, m.Connection.Length, rtpAddress, family);
            }
        }

        if (translate && anyTranslated)
        {
            // The session's owner and connection lines name the translated media address too (nf_nat_sdp_session).
            if (owner.Present && owner.Address != lastAddress)
            {
                AddAddress(ref edits, message.BodyStart + owner.Start, owner.Length, lastAddress, family);
            }

            if (session.Present && session.Address != lastAddress)
            {
                AddAddress(ref edits, message.BodyStart + session.Start, session.Length, lastAddress, family);
            }
        }

        return HelperVerdict.Accept;
    }

    /// <summary>
    /// The sender is translated: the peer sends its media to the router's address, on a pair of ports there that are
    /// sent on to the announced ones. For the sender's own media (always so with direct-media) the engine places the
    /// pair (the announced ports if free, then upwards two at a time, or inside offloadd's nat-ports, where the steering
    /// rules send the peer's packets to us) and the expected RTP and RTCP follow the flow's NAT back to the sender; for
    /// a third party's media the pair is redirected to it, tried from the announced ports upwards (nf_nat_sdp_media).
    /// </summary>
    private ExpectResult ExpectTranslatedPair(ref HelperContext context, in SdpMedia media, InetAddress mediaAddress, out ushort port)
    {
        var rtp = MediaRequest(ref context, context.OtherTuple.Destination, media.Port, media.Class);
        port = media.Port;
        if (mediaAddress == context.Tuple.Source)
        {
            var placed = context.ExpectPair(ref rtp);
            port = rtp.DestinationPort;
            return placed;
        }

        rtp.Nat = ExpectationNat.Redirect;
        rtp.NatAddress = mediaAddress;
        rtp.NatPort = media.Port;
        var result = ExpectResult.NoFreePort;
        for (int attempt = 0; attempt < MaxPairAttempts && media.Port + (2 * attempt) + 1 <= ushort.MaxValue; attempt++)
        {
            rtp.DestinationPort = (ushort)(media.Port + (2 * attempt));
            result = context.ExpectPair(ref rtp);
            if (result != ExpectResult.Clash)
            {
                port = rtp.DestinationPort;
                return result;
            }
        }

        return result == ExpectResult.Clash ? ExpectResult.NoFreePort : result;
    }

    /// <summary>
    /// The untranslated peer answers an offer of the translated side: that side's RTP and RTCP to the peer's media are
    /// expected from the ports it offered and leave from the router's ports the peer was told (the kernel pairs them
    /// the same way), so that media stays symmetric whoever sends first.
    /// </summary>
    /// <param name="context">The untranslated side's answer, or the translated side's answer to the other's offer.</param>
    /// <param name="peerAddress">The untranslated side's media address, where the translated side sends.</param>
    /// <param name="peerPort">Its RTP port.</param>
    /// <param name="expectClass">The stream's class.</param>
    /// <param name="offered">The translated side's own media and the router's port the peer was told.</param>
    /// <param name="routerAddress">The router's address the peer sends to.</param>
    private static ExpectResult ExpectPairedAnswer(ref HelperContext context, InetAddress peerAddress, ushort peerPort, int expectClass, in SipTranslatedMedia offered, InetAddress routerAddress)
    {
        var rtp = new ExpectationRequest
        {
            Protocol = IpProtocol.Udp,
            Source = offered.Address,
            SourcePrefixLength = context.Family == 4 ? 32 : 128,
            SourcePort = offered.Port,
            MatchSourcePort = true,
            Destination = peerAddress,
            DestinationPort = peerPort,
            Class = expectClass,
            Nat = ExpectationNat.Source,
            NatAddress = routerAddress,
            NatPort = offered.TranslatedPort,
        };
        return context.ExpectPair(ref rtp);
    }

    /// <summary>
    /// The translated side answers the untranslated side's offer (an inbound call): its RTP and RTCP to the offered media,
    /// expected since the offer to follow the flow's NAT, are expected again to leave from the router's ports just
    /// placed for it, so that the peer's media to those ports and the phone's own are one flow whoever sends first (the
    /// kernel's nf_nat_sip_expected pairs them too). Without it the phone's media would leave from any port of the router
    /// and the peer's, arriving at the placed port, would clash with it.
    /// </summary>
    private void PairWithPeerOffer(ref HelperContext context, in SdpMedia media, InetAddress mediaAddress, ushort placedPort, in SipPeerMedia peer)
    {
        // What the offer expected: the translated side's media to the peer's, from any port (MediaRequest, seen then from
        // the other direction).
        var followed = new ExpectationRequest
        {
            Protocol = IpProtocol.Udp,
            Source = mediaAddress,
            SourcePrefixLength = _options.DirectMedia ? (context.Family == 4 ? 32 : 128) : 0,
            Destination = peer.Address,
            DestinationPort = peer.Port,
            Class = media.Class,
        };
        context.Unexpect(in followed);
        followed.DestinationPort++;
        context.Unexpect(in followed);
        var own = new SipTranslatedMedia(true, mediaAddress, media.Port, placedPort);
        if (ExpectPairedAnswer(ref context, peer.Address, peer.Port, media.Class, own, context.OtherTuple.Destination) != ExpectResult.Added)
        {
            context.Count(HelperEvent.ExpectationFailed); // the media still flows, from another port of the router
        }
    }

    /// <summary>The sender is not translated: its media is expected where it says, and follows the flow's NAT back.</summary>
    private ExpectResult ExpectPair(ref HelperContext context, in SdpMedia media, InetAddress mediaAddress, out ushort port)
    {
        var rtp = MediaRequest(ref context, mediaAddress, media.Port, media.Class);
        var result = context.ExpectPair(ref rtp);
        port = rtp.DestinationPort;
        return result;
    }

    private ExpectationRequest MediaRequest(ref HelperContext context, InetAddress destination, ushort port, int expectClass)
    {
        var request = context.FromPeer(IpProtocol.Udp, port);
        request.Destination = destination;
        request.Class = expectClass;
        if (!_options.DirectMedia)
        {
            request.SourcePrefixLength = 0; // media may come from anywhere (a media relay)
        }

        return request;
    }

    /// <summary>
    /// A REGISTER announces where its sender takes calls (the Contact): with the sender translated, calls to its
    /// translated address are let in and sent to it (the kernel's process_register_request with nf_nat_sip_expect).
    /// </summary>
    private HelperVerdict Register(ref HelperContext context, ReadOnlySpan<byte> text, in SipMessage message)
    {
        ref readonly var own = ref context.Tuple;
        ref readonly var other = ref context.OtherTuple;
        if (!SipHeaderRewriter.TryFindContact(text, in message, context.Family, out var contact, out int expires) || contact.Address != own.Source)
        {
            return HelperVerdict.Accept; // a Contact elsewhere (a proxy's) opens nothing, as in the kernel
        }

        if (expires == 0)
        {
            // A de-registration: calls to that Contact are no longer let in (the kernel's flush of the signalling class).
            context.Unexpect(SipExpectClass.Signalling);
            return HelperVerdict.Accept;
        }

        bool senderTranslated = own.Source != other.Destination && context.IsNatted;
        // A Contact at the signalling flow's own source port was rewritten to the flow's port at the router (map_addr):
        // calls come there (the kernel's nf_nat_sip_expect). Another Contact port keeps its number at the router.
        bool atFlowPort = senderTranslated && !_options.PinholeOnly && contact.Port == own.SourcePort;
        var request = context.FromPeer(context.Protocol, atFlowPort ? other.DestinationPort : contact.Port);
        request.Class = SipExpectClass.Signalling;
        request.Helper = this;
        if (expires > 0)
        {
            request.Timeout = TimeSpan.FromSeconds(expires); // as long as the registration asked to last (the kernel: as granted)
        }

        if (!_options.DirectSignalling)
        {
            request.SourcePrefixLength = 0;
        }

        if (senderTranslated)
        {
            request.Nat = ExpectationNat.Redirect;
            request.NatAddress = contact.Address;
            request.NatPort = contact.Port;
        }

        if (context.Expect(ref request) != ExpectResult.Added)
        {
            context.Count(HelperEvent.ExpectationFailed);
            return HelperVerdict.Drop;
        }

        return HelperVerdict.Accept;
    }

    private static void AddNumber(ref SipEdits edits, int offset, int length, ushort value)
    {
        if (!Utf8Formatter.TryFormat(value, edits.Scratch, out int written))
        {
            edits.Fail();
            return;
        }

        edits.Add(offset, length, written);
    }

    private static void AddAddress(ref SipEdits edits, int offset, int length, InetAddress address, byte family)
    {
        if (edits.Scratch.Length < SipAddressText.MaxLength)
        {
            edits.Fail();
            return;
        }

        int written = SipAddressText.Format(address, family, 0, withPort: false, bracket: false, edits.Scratch);
        edits.Add(offset, length, written);
    }
}
