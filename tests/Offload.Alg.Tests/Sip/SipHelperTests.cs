using Offload.Alg.Sip;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Sip.SipText;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Sip;

/// <summary>
/// The SIP helper inside the engine, through a masquerading router: a LAN phone calls a far-side user agent. As the
/// kernel's nf_nat_sip, the phone's INVITE leaves with its Via, Contact, From and SDP naming the router's address,
/// Content-Length following the body; the peer's media to that address arrives RELATED at the phone, and the
/// answer's SDP lets the phone's media out RELATED too.
/// </summary>
public class SipHelperTests
{
    private const ushort PhoneMedia = 6000;
    private const ushort PeerMedia = 7000;

    private static (RouterRig Rig, Hop Invite, string Sent) Call(SipHelper? helper = null, string? text = null)
    {
        var rig = Masquerading(helper ?? new SipHelper());
        text ??= Invite(Client, 5060, Server, Sdp(Client, PhoneMedia));
        var invite = rig.Out(UdpPacket(Client, 5060, Server, 5060, Ascii(text)));
        Assert.True(invite.Accepted, rig.DropSummary());
        AssertValid(invite.Packet);
        return (rig, invite, PayloadText(invite.Packet));
    }

    [Fact]
    public void Helper_serves_udp_and_tcp_on_5060_and_is_built_in()
    {
        var helper = new SipHelper();
        Assert.Equal("sip", helper.Name);
        Assert.Equal([IpProtocol.Udp, IpProtocol.Tcp], helper.Protocols);
        Assert.Equal([(ushort)5060], helper.Ports);
        Assert.IsType<SipHelper>(BuiltInHelpers.Create("sip", loose: false));
    }

    [Fact]
    public void Invite_from_a_masqueraded_phone_names_the_routers_address_everywhere_the_kernel_rewrites()
    {
        var (_, invite, sent) = Call();

        Assert.Equal(Ip(WanAddress), Source(invite.Packet));
        ushort wanPort = SourcePort(invite.Packet);
        string wan = $"{WanAddress}:{wanPort}";
        Assert.StartsWith($"INVITE sip:bob@{Server} SIP/2.0\r\n", sent); // the peer's URI names no translated endpoint
        Assert.Equal($"SIP/2.0/UDP {wan};branch=z9hG4bK776asdhds;rport", Header(sent, "Via"));
        Assert.Equal($"<sip:alice@{wan}>", Header(sent, "Contact"));
        Assert.Equal($"Alice <sip:alice@{wan}>;tag=1928301774", Header(sent, "From"));
        Assert.Equal($"Bob <sip:bob@{Server}>", Header(sent, "To"));

        string body = Body(sent);
        Assert.Contains($"o=alice 2890844526 2890844526 IN IP4 {WanAddress}\r\n", body);
        Assert.Contains($"c=IN IP4 {WanAddress}\r\n", body);
        Assert.Contains($"m=audio {PhoneMedia} RTP/AVP 0\r\n", body);
        Assert.DoesNotContain(Client, sent);
        Assert.Equal(body.Length.ToString(System.Globalization.CultureInfo.InvariantCulture), Header(sent, "Content-Length"));
    }

    [Fact]
    public void Invite_expects_rtp_and_rtcp_from_the_peer_on_consecutive_ports_and_peer_media_arrives_related_at_the_phone()
    {
        var (rig, invite, _) = Call();

        var media = rig.Expectations.OrderBy(e => e.Tuple.DestinationPort).ToList();
        Assert.Equal(2, media.Count);
        Assert.Equal([PhoneMedia, (ushort)(PhoneMedia + 1)], media.Select(e => e.Tuple.DestinationPort));
        Assert.All(media, e =>
        {
            Assert.Equal(invite.Connection, e.Master);
            Assert.Equal(IpProtocol.Udp, e.Tuple.Protocol);
            Assert.Equal(A(Server), e.Tuple.Source); // direct media: only the peer that signalled
            Assert.Equal(A(WanAddress), e.Tuple.Destination);
            Assert.Equal(1, e.Class); // audio
        });

        var rtp = rig.In(UdpPacket(Server, PeerMedia, WanAddress, PhoneMedia, new byte[172]));
        Assert.True(rtp.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, rtp.CtInfo);
        Assert.Equal(Ip(Client), Destination(rtp.Packet));
        Assert.Equal(PhoneMedia, DestinationPort(rtp.Packet));
        AssertValid(rtp.Packet);

        var rtcp = rig.In(UdpPacket(Server, PeerMedia + 1, WanAddress, PhoneMedia + 1, new byte[52]));
        Assert.Equal(CtInfo.Related, rtcp.CtInfo);
        Assert.Equal(PhoneMedia + 1, DestinationPort(rtcp.Packet));

        // The phone's media back goes out on the same flow, from the router's address and the announced port.
        var back = rig.Out(UdpPacket(Client, PhoneMedia, Server, PeerMedia, new byte[172]));
        Assert.Equal(CtInfo.EstablishedReply, back.CtInfo);
        Assert.Equal(Ip(WanAddress), Source(back.Packet));
        Assert.Equal(PhoneMedia, SourcePort(back.Packet));
    }

    [Fact]
    public void Answer_from_the_far_side_maps_received_and_rport_back_and_lets_the_phones_media_out_related()
    {
        var (rig, invite, sent) = Call();
        ushort wanPort = SourcePort(invite.Packet);
        string via = $"SIP/2.0/UDP {WanAddress}:{wanPort};branch=z9hG4bK776asdhds;rport={wanPort};received={WanAddress}";
        string ok = Ok(via, WanAddress, wanPort, Server, Sdp(Server, PeerMedia));
        var answer = rig.In(UdpPacket(Server, 5060, WanAddress, wanPort, Ascii(ok)));
        Assert.True(answer.Accepted, rig.DropSummary());
        AssertValid(answer.Packet);
        string got = PayloadText(answer.Packet);

        Assert.Equal($"SIP/2.0/UDP {Client}:5060;branch=z9hG4bK776asdhds;rport=5060;received={Client}", Header(got, "Via"));
        Assert.Equal($"Alice <sip:alice@{Client}:5060>;tag=1928301774", Header(got, "From"));
        Assert.Contains($"c=IN IP4 {Server}\r\n", Body(got)); // the peer is not translated: its SDP stays
        Assert.Equal(Body(got).Length.ToString(System.Globalization.CultureInfo.InvariantCulture), Header(got, "Content-Length"));

        var toPeer = rig.Expectations.Where(e => e.Tuple.Destination == A(Server)).OrderBy(e => e.Tuple.DestinationPort).ToList();
        Assert.Equal([PeerMedia, (ushort)(PeerMedia + 1)], toPeer.Select(e => e.Tuple.DestinationPort));
        // The phone's RTP (from the port it offered) leaves from the router's port the peer was told, whoever sends
        // first (the kernel's paired expectation): the peer's RTP to that port is then this flow's reply.
        var rtp = rig.Out(UdpPacket(Client, PhoneMedia, Server, PeerMedia, new byte[172]));
        Assert.True(rtp.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, rtp.CtInfo);
        Assert.Equal(Ip(WanAddress), Source(rtp.Packet));
        Assert.Equal(PhoneMedia, SourcePort(rtp.Packet));
        var back = rig.In(UdpPacket(Server, PeerMedia, WanAddress, PhoneMedia, new byte[172]));
        Assert.Equal(CtInfo.EstablishedReply, back.CtInfo);
        Assert.Equal(Ip(Client), Destination(back.Packet));
        _ = sent;
    }

    [Fact]
    public void With_a_nat_port_range_the_media_port_at_the_router_is_one_of_the_range_and_the_phones_media_leaves_from_it()
    {
        var rig = new RouterRig([new Offload.Engine.Nat.NatRule { Action = Offload.Engine.Nat.NatAction.Masquerade, OutInterface = Wan }],
            [.. Offload.Engine.Helpers.HelperBinding.Defaults(new SipHelper())], natPorts: (61000, 65535));
        var invite = rig.Out(UdpPacket(Client, 5060, Server, 5060, Ascii(Invite(Client, 5060, Server, Sdp(Client, PhoneMedia)))));
        Assert.True(invite.Accepted, rig.DropSummary());
        ushort wanPort = SourcePort(invite.Packet);
        string via = $"SIP/2.0/UDP {WanAddress}:{wanPort};branch=z9hG4bK776asdhds;rport={wanPort};received={WanAddress}";
        rig.In(UdpPacket(Server, 5060, WanAddress, wanPort, Ascii(Ok(via, WanAddress, wanPort, Server, Sdp(Server, PeerMedia)))));

        // The router's media port lies in the daemon's range (where the steering rules queue the peer's packets to
        // us), and the SDP names it.
        ushort announced = rig.Expectations.Where(e => e.Tuple.Destination == A(WanAddress)).Min(e => e.Tuple.DestinationPort);
        Assert.InRange(announced, (ushort)61000, (ushort)65534);
        Assert.Contains($"m=audio {announced} RTP/AVP 0\r\n", PayloadText(invite.Packet));

        var rtp = rig.Out(UdpPacket(Client, PhoneMedia, Server, PeerMedia, new byte[172]));
        Assert.Equal(CtInfo.Related, rtp.CtInfo);
        Assert.Equal(announced, SourcePort(rtp.Packet));
        var back = rig.In(UdpPacket(Server, PeerMedia, WanAddress, announced, new byte[172]));
        Assert.True(back.Accepted, rig.DropSummary());
        Assert.Equal(Ip(Client), Destination(back.Packet));
    }

    [Theory]
    [InlineData("BYE")]
    [InlineData("CANCEL")]
    public void Bye_or_cancel_withdraws_the_calls_media_expectations(string method)
    {
        var (rig, _, _) = Call();
        Assert.Equal(2, rig.Expectations.Count);
        var end = rig.Out(UdpPacket(Client, 5060, Server, 5060, Ascii(Invite(Client, 5060, Server, "", method: method))));
        Assert.True(end.Accepted, rig.DropSummary());
        Assert.Empty(rig.Expectations);

        // The peer's media now finds no pinhole: it is a new flow to the router, not the phone's.
        var rtp = rig.In(UdpPacket(Server, PeerMedia, WanAddress, PhoneMedia, new byte[20]));
        Assert.NotEqual(CtInfo.Related, rtp.CtInfo);
    }

    [Fact]
    public void Taken_media_ports_move_the_pair_up_two_at_a_time_and_the_sdp_follows()
    {
        var rig = Masquerading(new SipHelper());
        rig.Out(UdpPacket(Client, 5060, Server, 5060, Ascii(Invite(Client, 5060, Server, Sdp(Client, PhoneMedia)))));
        // A second phone announces the same ports to the same peer: the router's 6000/6001 are the first phone's.
        var second = rig.Out(UdpPacket(Client2, 5060, Server, 5060, Ascii(Invite(Client2, 5060, Server, Sdp(Client2, PhoneMedia, extra: $"a=rtcp:{PhoneMedia + 1}\r\n")))));
        Assert.True(second.Accepted, rig.DropSummary());
        string body = Body(PayloadText(second.Packet));
        Assert.Contains($"m=audio {PhoneMedia + 2} RTP/AVP 0\r\n", body);
        Assert.Contains($"a=rtcp:{PhoneMedia + 3}\r\n", body);
        AssertValid(second.Packet);

        var rtp = rig.In(UdpPacket(Server, PeerMedia, WanAddress, PhoneMedia + 2, new byte[20]));
        Assert.Equal(CtInfo.Related, rtp.CtInfo);
        Assert.Equal(Ip(Client2), Destination(rtp.Packet));
        Assert.Equal(PhoneMedia, DestinationPort(rtp.Packet));
    }

    [Fact]
    public void Compact_header_names_any_case_and_folded_lines_are_read()
    {
        string body = Sdp(Client, PhoneMedia);
        string text = $"INVITE sip:bob@{Server} SIP/2.0\r\n" +
            $"v: SIP/2.0/UDP\r\n {Client}:5060;branch=z9hG4bK1\r\n" +
            $"f: <sip:alice@{Client}:5060>;tag=1\r\n" +
            $"t: <sip:bob@{Server}>\r\n" +
            "i: x@y\r\nCSEQ: 1 INVITE\r\n" +
            $"m: <sip:alice@{Client}:5060>\r\n" +
            "c: application/sdp\r\n" +
            $"l: {body.Length}\r\n\r\n" + body;
        var (_, invite, sent) = Call(text: text);
        string wan = $"{WanAddress}:{SourcePort(invite.Packet)}";
        Assert.Contains($"v: SIP/2.0/UDP\r\n {wan};branch", sent);
        Assert.Equal($"<sip:alice@{wan}>", Header(sent, "m"));
        Assert.Equal($"<sip:alice@{wan}>;tag=1", Header(sent, "f"));
        Assert.Equal(Body(sent).Length.ToString(System.Globalization.CultureInfo.InvariantCulture), Header(sent, "l"));
    }

    [Fact]
    public void Ipv6_invite_from_a_masqueraded_phone_names_the_routers_address_in_brackets_and_its_media_arrives_related()
    {
        var rig = Masquerading(new SipHelper());
        string body = $"v=0\r\no=alice 1 1 IN IP6 {Client6}\r\ns=-\r\nc=IN IP6 {Client6}\r\nt=0 0\r\nm=audio {PhoneMedia} RTP/AVP 0\r\n";
        string text = $"INVITE sip:bob@[{Server6}] SIP/2.0\r\nVia: SIP/2.0/UDP [{Client6}]:5060;branch=z9hG4bK1\r\n" +
            $"From: <sip:alice@[{Client6}]:5060>;tag=1\r\nTo: <sip:bob@[{Server6}]>\r\nCall-ID: 6@x\r\nCSeq: 1 INVITE\r\n" +
            $"Contact: <sip:alice@[{Client6}]:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {body.Length}\r\n\r\n" + body;
        var invite = rig.Out(UdpPacket(Client6, 5060, Server6, 5060, Ascii(text)));
        Assert.True(invite.Accepted, rig.DropSummary());
        AssertValid(invite.Packet);
        string sent = PayloadText(invite.Packet);
        string wan = $"[{WanAddress6}]:{SourcePort(invite.Packet)}";
        Assert.Equal($"SIP/2.0/UDP {wan};branch=z9hG4bK1", Header(sent, "Via"));
        Assert.Equal($"<sip:alice@{wan}>", Header(sent, "Contact"));
        Assert.Contains($"c=IN IP6 {WanAddress6}\r\n", Body(sent));
        Assert.Contains($"o=alice 1 1 IN IP6 {WanAddress6}\r\n", Body(sent));
        Assert.DoesNotContain(Client6, sent);
        Assert.Equal(Body(sent).Length.ToString(System.Globalization.CultureInfo.InvariantCulture), Header(sent, "Content-Length"));

        var rtp = rig.In(UdpPacket(Server6, PeerMedia, WanAddress6, PhoneMedia, new byte[172]));
        Assert.Equal(CtInfo.Related, rtp.CtInfo);
        Assert.Equal(Ip(Client6), Destination(rtp.Packet));
    }

    [Fact]
    public void Pinhole_only_expects_the_media_and_rewrites_nothing()
    {
        var helper = new SipHelper();
        helper.Configure(new Dictionary<string, string> { ["pinhole-only"] = "true" });
        string text = Invite(Client, 5060, Server, Sdp(Client, PhoneMedia));
        var (rig, _, sent) = Call(helper, text);
        Assert.Equal(text, sent);
        Assert.Equal(2, rig.Expectations.Count);
    }

    [Fact]
    public void Unknown_options_and_values_are_refused()
    {
        var helper = new SipHelper();
        Assert.Throws<ArgumentException>(() => helper.Configure(new Dictionary<string, string> { ["loose"] = "true" }));
        Assert.Throws<ArgumentException>(() => helper.Configure(new Dictionary<string, string> { ["direct-media"] = "yes" }));
        helper.Configure(new Dictionary<string, string> { ["direct-media"] = "false", ["direct-signalling"] = "false" });
    }

    [Fact]
    public void Media_announced_for_a_third_party_opens_nothing_with_direct_media()
    {
        var (rig, _, sent) = Call(text: Invite(Client, 5060, Server, Sdp(Client2, PhoneMedia)));
        Assert.Empty(rig.Expectations);
        Assert.Contains($"c=IN IP4 {Client2}\r\n", sent); // not ours to translate: left as the kernel leaves it
    }

    [Fact]
    public void Register_expects_calls_to_the_registered_contact_at_the_routers_address()
    {
        string text = Invite(Client, 5060, Server, "", method: "REGISTER", headers: "Expires: 3600\r\n");
        var (rig, register, sent) = Call(text: text);
        ushort wanPort = SourcePort(register.Packet);
        Assert.Equal($"<sip:alice@{WanAddress}:{wanPort}>", Header(sent, "Contact"));
        var signalling = Assert.Single(rig.Expectations);
        Assert.Equal(0, signalling.Class);
        Assert.Equal(A(WanAddress), signalling.Tuple.Destination);
        Assert.Equal(wanPort, signalling.Tuple.DestinationPort);

        // A call from the registrar to the registered contact reaches the phone.
        var call = rig.In(UdpPacket(Server, 5060, WanAddress, wanPort, Ascii(Invite(Server, 5060, WanAddress, Sdp(Server, PeerMedia)))));
        Assert.True(call.Accepted, rig.DropSummary());
        Assert.Equal(Ip(Client), Destination(call.Packet));
    }

    [Fact]
    public void Register_from_a_flow_whose_port_the_router_moved_expects_calls_at_that_port_where_the_contact_now_points()
    {
        var rig = Masquerading(new SipHelper());
        Assert.True(rig.Out(UdpPacket(Client, 5060, Server, 5060, Ascii(Invite(Client, 5060, Server, "", method: "REGISTER", headers: "Expires: 3600\r\n")))).Accepted);
        var register = rig.Out(UdpPacket(Client2, 5060, Server, 5060, Ascii(Invite(Client2, 5060, Server, "", method: "REGISTER", headers: "Expires: 3600\r\n"))));
        Assert.True(register.Accepted, rig.DropSummary());
        ushort wanPort = SourcePort(register.Packet);
        Assert.NotEqual(5060, wanPort); // the first phone holds 5060 at the router
        Assert.Equal($"<sip:alice@{WanAddress}:{wanPort}>", Header(PayloadText(register.Packet), "Contact"));
        Assert.Contains(rig.Expectations, e => e.Class == 0 && e.Tuple.DestinationPort == wanPort);

        // The registrar calls from another port (a new flow, not the registration's): the expectation takes it to the
        // second phone's own port.
        var call = rig.In(UdpPacket(Server, 5070, WanAddress, wanPort, Ascii(Invite(Server, 5070, WanAddress, Sdp(Server, PeerMedia)))));
        Assert.True(call.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, call.CtInfo);
        Assert.Equal(Ip(Client2), Destination(call.Packet));
        Assert.Equal(5060, DestinationPort(call.Packet));
    }

    [Fact]
    public void An_inbound_call_answered_by_the_phone_pairs_its_media_with_the_routers_port_in_its_answer()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }], HelperBinding.Defaults(new SipHelper()), natPorts: (61000, 61999));
        var register = rig.Out(UdpPacket(Client, 5060, Server, 5060, Ascii(Invite(Client, 5060, Server, "", method: "REGISTER", headers: "Expires: 3600\r\n"))));
        Assert.True(register.Accepted, rig.DropSummary());
        ushort wanPort = SourcePort(register.Packet);
        var invite = rig.In(UdpPacket(Server, 5070, WanAddress, wanPort, Ascii(Invite(Server, 5070, $"{WanAddress}:{wanPort}", Sdp(Server, PeerMedia)))));
        Assert.True(invite.Accepted, rig.DropSummary());

        string via = $"SIP/2.0/UDP {Server}:5070;branch=z9hG4bK74bf9";
        var answer = rig.Out(UdpPacket(Client, 5060, Server, 5070, Ascii(Ok(via, Server, 5070, Client, Sdp(Client, PhoneMedia)))));
        Assert.True(answer.Accepted, rig.DropSummary());
        string body = Body(PayloadText(answer.Packet));
        Assert.Contains($"c=IN IP4 {WanAddress}\r\n", body);
        ushort placed = ushort.Parse(body[(body.IndexOf("m=audio ", StringComparison.Ordinal) + 8)..].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(placed, (ushort)61000, (ushort)61999);

        // The phone speaks first: its RTP leaves from the port its answer announced...
        var rtp = rig.Out(UdpPacket(Client, PhoneMedia, Server, PeerMedia, Ascii("rtp")));
        Assert.True(rtp.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, rtp.CtInfo);
        Assert.Equal(Ip(WanAddress), Source(rtp.Packet));
        Assert.Equal(placed, SourcePort(rtp.Packet));

        // ...so the peer's RTP to that port is the same flow, back to the phone.
        var back = rig.In(UdpPacket(Server, PeerMedia, WanAddress, placed, Ascii("rtp")));
        Assert.True(back.Accepted, rig.DropSummary());
        Assert.Equal(rtp.Connection, back.Connection);
        Assert.Equal(Ip(Client), Destination(back.Packet));
        Assert.Equal(PhoneMedia, DestinationPort(back.Packet));
        Assert.All(rig.Expectations, e => Assert.True(e.Class <= 1));
        Assert.True(rig.Expectations.Count(e => e.Class == 1) <= SipHelper.Classes[1].MaxExpected);
    }

    [Theory]
    [InlineData("Expires: 3600\r\n", 50, true)] // the registration's hour, not the class's 3 minutes
    [InlineData("Expires: 600\r\n", 11, false)]
    [InlineData("", 4, false)] // no Expires: the signalling class's 3 minutes
    public void The_signalling_expectation_lasts_as_long_as_the_registration_asked(string expires, int minutesLater, bool stillExpected)
    {
        var (rig, register, _) = Call(text: Invite(Client, 5060, Server, "", method: "REGISTER", headers: expires));
        ushort wanPort = SourcePort(register.Packet);
        var signalling = Assert.Single(rig.Expectations);
        Assert.Equal(expires.Length > 0 ? TimeSpan.FromSeconds(int.Parse(expires[9..^2], System.Globalization.CultureInfo.InvariantCulture)) : SipHelper.Classes[0].Timeout, signalling.Timeout);

        rig.Clock.Advance(TimeSpan.FromMinutes(minutesLater));
        var call = rig.In(UdpPacket(Server, 5070, WanAddress, wanPort, Ascii(Invite(Server, 5070, WanAddress, Sdp(Server, PeerMedia)))));
        Assert.Equal(stillExpected, call.CtInfo == CtInfo.Related);
    }

    [Fact]
    public void De_registration_withdraws_the_signalling_expectation()
    {
        var (rig, _, _) = Call(text: Invite(Client, 5060, Server, "", method: "REGISTER", headers: "Expires: 3600\r\n"));
        Assert.Single(rig.Expectations);
        var bye = rig.Out(UdpPacket(Client, 5060, Server, 5060, Ascii(Invite(Client, 5060, Server, "", method: "REGISTER", headers: "Expires: 0\r\n"))));
        Assert.True(bye.Accepted, rig.DropSummary());
        Assert.Empty(rig.Expectations);
    }
}
