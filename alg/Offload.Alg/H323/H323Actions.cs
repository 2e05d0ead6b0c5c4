using System.Buffers.Binary;

namespace Offload.Alg.H323;

/// <summary>
/// What the H.323 helpers do with an address found in a message, shared by the Q.931, H.245 and RAS helpers (the
/// kernel's expect_h245, expect_rtp_rtcp, expect_t120 with nf_nat_h323's nat_h245, nat_rtp_rtcp, nat_t120, and
/// set_h225_addr): expect the connection it announces and, when the sender is translated, write the router's address
/// and port over it. Every rewrite has the length of what it replaces (an address and its port).
/// </summary>
internal static class H323Actions
{
    /// <summary>The expectation classes, numbered alike in the three helpers (each declares those it makes).</summary>
    public const int RtpClass = 0, RtcpClass = 1, T120Class = 2, H245Class = 3;

    /// <summary>The RAS helper's one class: the calls a registration lets in.</summary>
    public const int CallClass = 0;

    /// <summary>
    /// The classes of the H.245 helper, then the Q.931 helper's (one more: h245). The kernel's one policy per helper
    /// (240 s; 4 logical channels of RTP and RTCP both ways, and T.120, and H.245 for Q.931) split by kind, so that
    /// <c>offloadctl expect list</c> tells them apart: the limits add up to the kernel's.
    /// </summary>
    public static ExpectationClass[] Classes(bool h245)
    {
        var timeout = TimeSpan.FromSeconds(240);
        ExpectationClass[] media =
        [
            new("rtp", H323State.RtpChannels * 2, timeout),
            new("rtcp", H323State.RtpChannels * 2, timeout),
            new("t120", 2, timeout),
        ];
        return h245 ? [.. media, new("h245", 2, timeout)] : media;
    }

    /// <summary>Addresses recorded per message; more are walked but not acted on (counted).</summary>
    public const int MaxFound = 32;

    /// <summary>Which of the connection's two directions the packet travels in, as an index.</summary>
    public static int DirectionIndex(ref HelperContext context) => context.Direction == ConnDirection.Original ? 0 : 1;

    /// <summary>The sender is translated: the peer sees it at another address (the kernel's test before its NAT hooks).</summary>
    public static bool SenderTranslated(ref HelperContext context) => context.IsNatted && context.Tuple.Source != context.OtherTuple.Destination;

    /// <summary>Reads the address and port of <paramref name="found"/>, when it is of the flow's family.</summary>
    public static bool TryRead(ref HelperContext context, in H323Found found, out InetAddress address, out ushort port)
    {
        address = default;
        port = 0;
        var payload = context.Payload;
        int length = found.Family == 4 ? 4 : 16;
        if (found.Family != context.Family || found.Offset < 0 || found.Offset > payload.Length - length - 2)
        {
            return false;
        }

        address = InetAddress.Read(context.Family, payload.Slice(found.Offset, length));
        port = BinaryPrimitives.ReadUInt16BigEndian(payload.Slice(found.Offset + length));
        return true;
    }

    /// <summary>Writes <paramref name="address"/> and <paramref name="port"/> over the field (same length).</summary>
    public static bool Write(ref HelperContext context, in H323Found found, InetAddress address, ushort port)
    {
        Span<byte> bytes = stackalloc byte[18];
        int length = InetAddress.Length(context.Family);
        address.Write(context.Family, bytes);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.Slice(length), port);
        if (context.Rewrite(found.Offset, length + 2, bytes[..(length + 2)]))
        {
            return true;
        }

        context.Count(HelperEvent.RewriteFailed);
        return false;
    }

    /// <summary>
    /// An h245Address: the peer will open the H.245 connection to it, which <paramref name="h245"/> then helps. When the
    /// sender is translated, the router's address and a port there (the announced one if free) are written instead.
    /// </summary>
    public static HelperVerdict ExpectH245(ref HelperContext context, in H323Found found, ConntrackHelper h245)
    {
        if (!TryRead(ref context, found, out var address, out ushort port) || address != context.Tuple.Source || port == 0)
        {
            return HelperVerdict.Accept; // announced for someone else: no pinhole (as the kernel)
        }

        var request = context.FromPeer(IpProtocol.Tcp, port);
        request.Class = H245Class;
        request.Helper = h245;
        if (!SenderTranslated(ref context))
        {
            return ExpectOrDrop(ref context, ref request);
        }

        return ExpectTranslated(ref context, found, ref request, port);
    }

    /// <summary>
    /// The sender is translated: the connection is expected at the router (the port it had before for this announcement,
    /// or the announced one, or the next free), sent on to the announced endpoint, and the router's endpoint is
    /// written over the announced one. Without a free port the message goes on as it is (the kernel's "out of ports").
    /// </summary>
    private static HelperVerdict ExpectTranslated(ref HelperContext context, in H323Found found, ref ExpectationRequest request, ushort port)
    {
        var state = context.GetState<H323State>();
        int direction = DirectionIndex(ref context);
        if (state.SignalPort(direction) == port && state.SignalPort(1 - direction) != 0)
        {
            // Announced again: the same port at the router, the expectation renewed.
            request.DestinationPort = state.SignalPort(1 - direction);
            request.Nat = ExpectationNat.Redirect;
            request.NatAddress = context.Tuple.Source;
            request.NatPort = port;
        }

        if (context.Expect(ref request) != ExpectResult.Added)
        {
            context.Count(HelperEvent.ExpectationFailed);
            return HelperVerdict.Accept;
        }

        if (!Write(ref context, found, context.OtherTuple.Destination, request.DestinationPort))
        {
            return HelperVerdict.Drop;
        }

        state.SetSignalPorts(direction, port, request.DestinationPort);
        return HelperVerdict.Accept;
    }

    /// <summary>
    /// A mediaChannel or mediaControlChannel: RTP (the even port) and RTCP (the odd one after it) are expected from the
    /// peer. When the sender is translated the pair is placed at the router (RTCP on the port after RTP's), once per
    /// logical channel, and the router's address and the port of the same kind are written over the announced ones.
    /// </summary>
    public static HelperVerdict ExpectRtpRtcp(ref HelperContext context, in H323Found found)
    {
        if (!TryRead(ref context, found, out var address, out ushort port) || address != context.Tuple.Source || port == 0)
        {
            return HelperVerdict.Accept;
        }

        ushort rtpPort = (ushort)(port & ~1);
        ushort rtcpPort = (ushort)(port | 1);
        if (!SenderTranslated(ref context))
        {
            if (ExpectSymmetric(ref context, address, rtpPort))
            {
                return HelperVerdict.Accept;
            }

            var rtp = context.FromPeer(IpProtocol.Udp, rtpPort);
            var rtcp = context.FromPeer(IpProtocol.Udp, rtcpPort);
            rtcp.Class = RtcpClass;
            return context.Expect(ref rtp) == ExpectResult.Added && context.Expect(ref rtcp) == ExpectResult.Added
                ? HelperVerdict.Accept
                : Failed(ref context);
        }

        var state = context.GetState<H323State>();
        int direction = DirectionIndex(ref context);
        int slot = state.FindRtp(direction, rtpPort, out bool known);
        if (slot < 0)
        {
            context.Count(HelperEvent.ExpectationFailed); // more logical channels than remembered: passed as it is
            return HelperVerdict.Accept;
        }

        ushort translated;
        if (known)
        {
            translated = state.TranslatedRtp(slot, direction);
            var rtp = Redirected(ref context, translated, rtpPort);
            var rtcp = Redirected(ref context, (ushort)(translated + 1), rtcpPort);
            rtcp.Class = RtcpClass;
            if (context.Expect(ref rtp) != ExpectResult.Added || context.Expect(ref rtcp) != ExpectResult.Added)
            {
                context.Count(HelperEvent.ExpectationFailed);
                return HelperVerdict.Accept;
            }
        }
        else
        {
            // The engine places RTP at the router (the announced port if free, or inside offloadd's nat-ports) and the
            // flow follows the signalling's NAT back to the sender; RTCP takes the next port.
            var rtp = context.FromPeer(IpProtocol.Udp, rtpPort);
            if (context.Expect(ref rtp) != ExpectResult.Added || rtp.DestinationPort == ushort.MaxValue)
            {
                context.Count(HelperEvent.ExpectationFailed);
                return HelperVerdict.Accept;
            }

            translated = rtp.DestinationPort;
            var rtcp = Redirected(ref context, (ushort)(translated + 1), rtcpPort);
            rtcp.Class = RtcpClass;
            if (context.Expect(ref rtcp) != ExpectResult.Added)
            {
                context.Count(HelperEvent.ExpectationFailed);
                return HelperVerdict.Accept;
            }
        }

        ushort written = (port & 1) != 0 ? (ushort)(translated + 1) : translated;
        if (!Write(ref context, found, context.OtherTuple.Destination, written))
        {
            return HelperVerdict.Drop;
        }

        state.SetRtp(slot, direction, rtpPort, translated);
        return HelperVerdict.Accept;
    }

    /// <summary>
    /// The untranslated side announces its media: the translated side's RTP and RTCP to it, from the ports that side
    /// announced on this connection, are expected to leave from the router's ports the peer was told, so that media
    /// stays symmetric whichever side sends first (the kernel keeps the announced ports at the router and needs no such
    /// pairing; offloadd's ports at the router come from its nat-ports). Each remembered channel whose port moved is
    /// paired (one, as a rule), instead of the kernel's expectation from any port of the translated side, which would
    /// overlap these.
    /// </summary>
    /// <returns>True when a channel was paired.</returns>
    private static bool ExpectSymmetric(ref HelperContext context, InetAddress address, ushort rtpPort)
    {
        if (!context.IsNatted || !context.TryGetState<H323State>(out var state))
        {
            return false;
        }

        bool paired = false;
        int translatedSide = 1 - DirectionIndex(ref context);
        for (int slot = 0; slot < H323State.RtpChannels && state.TryGetRtp(slot, translatedSide, out ushort announced, out ushort translated); slot++)
        {
            if (announced == translated || translated == ushort.MaxValue)
            {
                continue; // the port is kept at the router: the peer's packets and the side's own meet on one flow anyway
            }

            paired = true;
            for (int rtcp = 0; rtcp < 2; rtcp++)
            {
                var request = new ExpectationRequest
                {
                    Protocol = IpProtocol.Udp,
                    Source = context.OtherTuple.Source, // the translated side as it knows itself
                    SourcePrefixLength = context.Family == 4 ? 32 : 128,
                    SourcePort = (ushort)(announced + rtcp),
                    MatchSourcePort = true,
                    Destination = address,
                    DestinationPort = (ushort)(rtpPort + rtcp),
                    Nat = ExpectationNat.Source,
                    NatAddress = context.Tuple.Destination, // the router's address, where the peer sends
                    NatPort = (ushort)(translated + rtcp),
                    Class = rtcp == 0 ? RtpClass : RtcpClass,
                };
                if (context.Expect(ref request) != ExpectResult.Added)
                {
                    context.Count(HelperEvent.ExpectationFailed); // the media may still flow, from another port
                }
            }
        }

        return paired;
    }

    /// <summary>A T.120 address (a separate LAN stack): TCP connections from the peer, any number of them (permanent).</summary>
    public static HelperVerdict ExpectT120(ref HelperContext context, in H323Found found)
    {
        if (!TryRead(ref context, found, out var address, out ushort port) || address != context.Tuple.Source || port == 0)
        {
            return HelperVerdict.Accept;
        }

        var request = context.FromPeer(IpProtocol.Tcp, port);
        request.Class = T120Class;
        request.Flags = ExpectationFlags.Permanent;
        if (!SenderTranslated(ref context))
        {
            return ExpectOrDrop(ref context, ref request);
        }

        if (context.Expect(ref request) != ExpectResult.Added)
        {
            context.Count(HelperEvent.ExpectationFailed);
            return HelperVerdict.Accept;
        }

        return Write(ref context, found, context.OtherTuple.Destination, request.DestinationPort) ? HelperVerdict.Accept : HelperVerdict.Drop;
    }

    /// <summary>
    /// The media addresses of the logical channels found (forward and reverse H.225.0 channels of an
    /// OpenLogicalChannel, those of an Ack) and their T.120 addresses, in message order.
    /// </summary>
    public static HelperVerdict Channels(ref HelperContext context, in H323Found found, ulong t120Channels)
    {
        switch (found.Tag)
        {
            case H323AddressTag.MediaChannel:
            case H323AddressTag.MediaControlChannel:
                return ExpectRtpRtcp(ref context, found);
            case H323AddressTag.T120Address when found.Channel is >= 0 and < 64 && ((t120Channels >> found.Channel) & 1) != 0:
                return ExpectT120(ref context, found);
            default:
                return HelperVerdict.Accept;
        }
    }

    /// <summary>An expectation the peer may connect to (toward the sender's own port): from the peer to the router's <paramref name="at"/>, sent on to the sender's <paramref name="to"/>.</summary>
    private static ExpectationRequest Redirected(ref HelperContext context, ushort at, ushort to)
    {
        var request = context.FromPeer(IpProtocol.Udp, at);
        request.Nat = ExpectationNat.Redirect;
        request.NatAddress = context.Tuple.Source;
        request.NatPort = to;
        return request;
    }

    private static HelperVerdict ExpectOrDrop(ref HelperContext context, ref ExpectationRequest request) =>
        context.Expect(ref request) == ExpectResult.Added ? HelperVerdict.Accept : Failed(ref context);

    /// <summary>An expectation the kernel would have registered failed: the packet is dropped (the sender retransmits).</summary>
    private static HelperVerdict Failed(ref HelperContext context)
    {
        context.Count(HelperEvent.ExpectationFailed);
        return HelperVerdict.Drop;
    }
}
