using Offload.Alg.Rtsp;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Rtsp.RtspText;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Rtsp;

/// <summary>
/// The RTSP helper inside the engine. As the out-of-tree nf_conntrack_rtsp with nf_nat_rtsp: a SETUP from a
/// masqueraded client expects RTP and RTCP from the server at the router, with client_port (and a destination= naming
/// the client) rewritten to the router's view and the sequence numbers following; TEARDOWN withdraws the
/// expectations. Beyond it: the answer is translated back, the client's own RTP/RTCP is paired with the server's
/// media, and a server behind a port forward gets its server_port placed at the router.
/// </summary>
public class RtspHelperTests
{
    private const string FfmpegTransport = "RTP/AVP/UDP;unicast;client_port=33758-33759";

    [Fact]
    public void Helper_is_built_in_as_rtsp_on_tcp_554()
    {
        var helper = new RtspHelper();
        Assert.Equal("rtsp", helper.Name);
        Assert.Equal([IpProtocol.Tcp], helper.Protocols);
        Assert.Equal([(ushort)554], helper.Ports);
        Assert.IsType<RtspHelper>(BuiltInHelpers.Create("rtsp", loose: false));
        Assert.Contains("rtsp", BuiltInHelpers.Names);
    }

    [Fact]
    public void Setup_from_a_masqueraded_client_names_the_routers_ports_and_the_sequence_numbers_follow()
    {
        var control = Control.Masqueraded();
        string setup = Setup("RTP/AVP/UDP;unicast;client_port=5000-5001");
        var hop = control.FromClient(setup);
        Assert.True(hop.Accepted, control.Rig.DropSummary());
        string sent = PayloadText(hop.Packet);

        var media = control.Rig.Expectations.OrderBy(e => e.Tuple.DestinationPort).ToList();
        Assert.Equal(2, media.Count);
        ushort rtp = media[0].Tuple.DestinationPort;
        Assert.InRange(rtp, (ushort)61000, (ushort)65534); // placed where the steering rules queue the server's media
        Assert.Equal(rtp + 1, media[1].Tuple.DestinationPort);
        Assert.All(media, e =>
        {
            Assert.Equal(A(Server), e.Tuple.Source); // pinned to the server, as the module does
            Assert.Equal(A(WanAddress), e.Tuple.Destination);
            Assert.Equal(IpProtocol.Udp, e.Tuple.Protocol);
            Assert.Equal(RtspHelper.MediaClass, e.Class);
        });
        Assert.Equal($"RTP/AVP/UDP;unicast;client_port={rtp}-{rtp + 1}", Transport(sent));
        Assert.Equal(setup.Replace("5000-5001", $"{rtp}-{rtp + 1}", StringComparison.Ordinal), sent);

        // Two bytes longer: the client's next segment is shifted by them.
        int grown = sent.Length - setup.Length;
        Assert.Equal(2, grown);
        var next = control.ClientAck();
        Assert.Equal(control.ClientSequence + (uint)grown, Seq(next.Packet));

        // The server's RTP and RTCP to the router's ports reach the client's own, RELATED.
        var rtpIn = control.Rig.In(UdpPacket(Server, 55564, WanAddress, rtp, new byte[172]));
        Assert.True(rtpIn.Accepted, control.Rig.DropSummary());
        Assert.Equal(CtInfo.Related, rtpIn.CtInfo);
        Assert.Equal(Ip(Client), Destination(rtpIn.Packet));
        Assert.Equal((ushort)5000, DestinationPort(rtpIn.Packet));
        var rtcpIn = control.Rig.In(UdpPacket(Server, 55565, WanAddress, (ushort)(rtp + 1), new byte[52]));
        Assert.Equal(CtInfo.Related, rtcpIn.CtInfo);
        Assert.Equal((ushort)5001, DestinationPort(rtcpIn.Packet));
    }

    [Fact]
    public void The_answer_is_translated_back_and_the_clients_own_rtp_leaves_from_the_announced_port()
    {
        var control = Control.Masqueraded();
        control.FromClient(Setup(FfmpegTransport + ";destination=" + Client));
        ushort rtp = control.Rig.Expectations.Min(e => e.Tuple.DestinationPort);
        var answer = control.FromServer(Reply($"RTP/AVP;unicast;client_port={rtp}-{rtp + 1};destination={WanAddress};server_port=55564-55565;ssrc=A993E813;mode=\"PLAY\""));
        Assert.True(answer.Accepted, control.Rig.DropSummary());
        Assert.Equal($"RTP/AVP;unicast;client_port=33758-33759;destination={Client};server_port=55564-55565;ssrc=A993E813;mode=\"PLAY\"", Transport(PayloadText(answer.Packet)));

        var paired = control.Rig.Expectations.Where(e => e.Class == 1).OrderBy(e => e.Tuple.DestinationPort).ToList();
        Assert.Equal([(ushort)55564, (ushort)55565], paired.Select(e => e.Tuple.DestinationPort));

        // ffmpeg's first packets to the server's ports (to open NATs) leave from the router's ports the server was told...
        var punch = control.Rig.Out(UdpPacket(Client, 33758, Server, 55564, new byte[12]));
        Assert.True(punch.Accepted, control.Rig.DropSummary());
        Assert.Equal(CtInfo.Related, punch.CtInfo);
        Assert.Equal(Ip(WanAddress), Source(punch.Packet));
        Assert.Equal(rtp, SourcePort(punch.Packet));
        // ...and the server's RTP to that port is then that flow's reply, reaching the client.
        var media = control.Rig.In(UdpPacket(Server, 55564, WanAddress, rtp, new byte[172]));
        Assert.Equal(CtInfo.EstablishedReply, media.CtInfo);
        Assert.Equal(Ip(Client), Destination(media.Packet));
        Assert.Equal((ushort)33758, DestinationPort(media.Packet));
    }

    [Fact]
    public void A_destination_naming_the_client_becomes_the_routers_address()
    {
        var control = Control.Masqueraded();
        var hop = control.FromClient(Setup($"RTP/AVP;unicast;destination={Client};client_port=5000-5001"));
        ushort rtp = control.Rig.Expectations.Min(e => e.Tuple.DestinationPort);
        Assert.Equal($"RTP/AVP;unicast;destination={WanAddress};client_port={rtp}-{rtp + 1}", Transport(PayloadText(hop.Packet)));
    }

    [Fact]
    public void A_destination_naming_a_third_party_opens_nothing_and_is_left_as_it_is()
    {
        var control = Control.Masqueraded();
        string setup = Setup($"RTP/AVP;unicast;destination={Client2};client_port=5000-5001");
        var hop = control.FromClient(setup);
        Assert.True(hop.Accepted);
        Assert.Equal(setup, PayloadText(hop.Packet));
        Assert.Empty(control.Rig.Expectations);
        Assert.Equal(1, control.Rig[EngineCounter.HelperForeignAddressRefused]);
    }

    [Fact]
    public void Several_transports_share_one_set_of_pinholes_and_interleaved_is_left_alone()
    {
        var control = Control.Masqueraded();
        var hop = control.FromClient(Setup("RTP/AVP/TCP;unicast;interleaved=0-1, RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/UDP;unicast;client_port=5000-5001;mode=play"));
        Assert.True(hop.Accepted, control.Rig.DropSummary());
        Assert.Equal(2, control.Rig.Expectations.Count);
        Assert.Equal(2, control.Rig[EngineCounter.ExpectationsCreated]);
        ushort rtp = control.Rig.Expectations.Min(e => e.Tuple.DestinationPort);
        Assert.Equal($"RTP/AVP/TCP;unicast;interleaved=0-1, RTP/AVP;unicast;client_port={rtp}-{rtp + 1},RTP/AVP/UDP;unicast;client_port={rtp}-{rtp + 1};mode=play",
            Transport(PayloadText(hop.Packet)));
    }

    [Fact]
    public void Transports_offering_other_ports_each_get_pinholes_and_the_answer_names_the_one_the_server_chose()
    {
        var control = Control.Masqueraded();
        var hop = control.FromClient(Setup("RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/UDP;unicast;client_port=6000-6001"));
        Assert.True(hop.Accepted, control.Rig.DropSummary());
        Assert.Equal(4, control.Rig.Expectations.Count);
        var ports = System.Text.RegularExpressions.Regex.Matches(Transport(PayloadText(hop.Packet)), @"client_port=(\d+)-").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(2, ports.Count);
        Assert.NotEqual(ports[0], ports[1]);
        var answer = control.FromServer(Reply($"RTP/AVP/UDP;unicast;client_port={ports[1]}-{int.Parse(ports[1], System.Globalization.CultureInfo.InvariantCulture) + 1};server_port=6970-6971"));
        Assert.Equal("RTP/AVP/UDP;unicast;client_port=6000-6001;server_port=6970-6971", Transport(PayloadText(answer.Packet)));
    }

    [Fact]
    public void A_retransmitted_segment_whose_last_body_runs_on_is_rewritten_again()
    {
        var control = Control.Masqueraded();
        string text = Setup("RTP/AVP;unicast;client_port=5000-5001") +
            "SET_PARAMETER rtsp://192.0.2.80/test RTSP/1.0\r\nCSeq: 4\r\nContent-Length: 100\r\n\r\n" + new string('p', 20);
        uint seq = control.ClientSequence;
        var first = control.FromClient(text);
        Assert.True(first.Accepted, control.Rig.DropSummary());
        Assert.DoesNotContain("client_port=5000-5001", PayloadText(first.Packet));
        var again = control.Rig.Out(TcpPacket(Client, Control.ClientPort, Server, 554, Ack | Psh, seq: seq, ack: 5001, payload: Ascii(text)));
        Assert.True(again.Accepted, control.Rig.DropSummary());
        Assert.Equal(PayloadText(first.Packet), PayloadText(again.Packet));
        Assert.Equal(Seq(first.Packet), Seq(again.Packet));
        Assert.Equal(2, control.Rig.Expectations.Count);
    }

    [Theory]
    [InlineData("RTP/AVP/TCP;unicast;interleaved=0-1")]
    [InlineData("RTP/AVP;multicast;destination=232.1.1.1;port=5000-5001;ttl=16")]
    public void Interleaved_and_multicast_transports_open_nothing_and_pass_untouched(string transport)
    {
        var control = Control.Masqueraded();
        string setup = Setup(transport);
        var hop = control.FromClient(setup);
        Assert.Equal(setup, PayloadText(hop.Packet));
        Assert.Empty(control.Rig.Expectations);
    }

    [Fact]
    public void A_single_client_port_expects_rtp_alone()
    {
        var control = Control.Masqueraded(natPorts: false);
        var hop = control.FromClient(Setup("RTP/AVP;unicast;client_port=5000"));
        var rtp = Assert.Single(control.Rig.Expectations);
        Assert.Equal((ushort)5000, rtp.Tuple.DestinationPort); // free at the router: kept, as the kernel keeps it
        Assert.Equal("RTP/AVP;unicast;client_port=5000", Transport(PayloadText(hop.Packet)));
    }

    [Fact]
    public void Ports_taken_at_the_router_move_up_and_the_rtcp_port_follows_rtp()
    {
        var control = Control.Masqueraded(natPorts: false);
        control.FromClient(Setup("RTP/AVP;unicast;client_port=9998-9999"));
        // A second client announces the same ports to the same server: the router's 9998 and 9999 are taken.
        var second = control.Rig.Out(TcpPacket(Client2, 40001, Server, 554, Syn, seq: 7000));
        ushort wanPort = SourcePort(second.Packet);
        control.Rig.In(TcpPacket(Server, 554, WanAddress, wanPort, Syn | Ack, seq: 9000, ack: 7001));
        control.Rig.Out(TcpPacket(Client2, 40001, Server, 554, Ack, seq: 7001, ack: 9001));
        var hop = control.Rig.Out(TcpPacket(Client2, 40001, Server, 554, Ack | Psh, seq: 7001, ack: 9001, payload: Ascii(Setup("RTP/AVP;unicast;client_port=9998-9999"))));
        Assert.True(hop.Accepted, control.Rig.DropSummary());
        AssertValid(hop.Packet);
        Assert.Equal("RTP/AVP;unicast;client_port=10000-10001", Transport(PayloadText(hop.Packet)));
        var rtcp = control.Rig.In(UdpPacket(Server, 6971, WanAddress, 10001, new byte[52]));
        Assert.Equal(CtInfo.Related, rtcp.CtInfo);
        Assert.Equal(Ip(Client2), Destination(rtcp.Packet));
        Assert.Equal((ushort)9999, DestinationPort(rtcp.Packet));
    }

    [Fact]
    public void Teardown_withdraws_the_sessions_expectations()
    {
        var control = Control.Masqueraded();
        control.FromClient(Setup(FfmpegTransport));
        ushort rtp = control.Rig.Expectations.Min(e => e.Tuple.DestinationPort);
        control.FromServer(Reply($"RTP/AVP;unicast;client_port={rtp}-{rtp + 1};server_port=55564-55565"));
        Assert.Equal(4, control.Rig.Expectations.Count);
        var teardown = control.FromClient(Teardown());
        Assert.True(teardown.Accepted);
        Assert.Empty(control.Rig.Expectations);

        // The server's media finds no pinhole now.
        var late = control.Rig.In(UdpPacket(Server, 55564, WanAddress, rtp, new byte[172]));
        Assert.NotEqual(CtInfo.Related, late.CtInfo);
    }

    [Fact]
    public void A_refused_setup_withdraws_its_own_expectations_and_no_other_setups()
    {
        var control = Control.Masqueraded();
        control.FromClient(Setup(FfmpegTransport, cseq: 3));
        var first = control.Rig.Expectations.Select(e => e.Tuple.DestinationPort).Order().ToList();
        Assert.Equal(2, first.Count);
        control.FromServer(Reply($"RTP/AVP;unicast;client_port={first[0]}-{first[1]};server_port=55564-55565", cseq: 3));
        Assert.Equal(4, control.Rig.Expectations.Count);

        var second = control.FromClient(Setup("RTP/AVP/UDP;unicast;client_port=33760-33761", cseq: 4, url: "rtsp://192.0.2.80:554/test/stream=1"));
        Assert.True(second.Accepted, control.Rig.DropSummary());
        Assert.Equal(6, control.Rig.Expectations.Count);

        // 461 Unsupported Transport: the second stream's pinholes go now, not in 5 minutes; the first's stay.
        var refusal = control.FromServer("RTSP/1.0 461 Unsupported Transport\r\nCSeq: 4\r\nServer: GStreamer RTSP server\r\n\r\n");
        Assert.True(refusal.Accepted, control.Rig.DropSummary());
        Assert.Equal(4, control.Rig.Expectations.Count);
        Assert.Equal(2, control.Rig.Expectations.Count(e => e.Class == RtspHelper.MediaClass));
        Assert.Equal(first, control.Rig.Expectations.Where(e => e.Class == RtspHelper.MediaClass).Select(e => e.Tuple.DestinationPort).Order().ToList());
    }

    [Fact]
    public void Each_class_is_named_and_has_the_modules_limit_and_timeout()
    {
        var helper = new RtspHelper();
        Assert.Equal(["media", "paired"], helper.ExpectationClasses.Select(c => c.Name));
        Assert.All(helper.ExpectationClasses, c =>
        {
            Assert.Equal(8, c.MaxExpected);
            Assert.Equal(TimeSpan.FromMinutes(5), c.Timeout);
        });
        Assert.Equal("media", helper.ClassName(RtspHelper.MediaClass));
        Assert.Equal("paired", helper.ClassName(RtspHelper.PairedClass));
    }

    [Fact]
    public void The_state_is_carried_across_a_restart_and_damaged_state_is_refused()
    {
        var helper = new RtspHelper();
        var state = new RtspSessionState();
        state.Add(new PendingTransport(true, 7, 33758, 33759, 61002, 61003));
        state.ResumeAt(ConnDirection.Reply, 5000, 5300);
        var written = new System.Buffers.ArrayBufferWriter<byte>();
        Assert.True(helper.SaveState(state, written));
        Assert.Equal(19 + 12, written.WrittenCount);

        var restored = Assert.IsType<RtspSessionState>(helper.RestoreState(written.WrittenSpan, helper.StateVersion));
        Assert.True(restored.TryFind(7, 61002, out var transport));
        Assert.Equal(new PendingTransport(true, 7, 33758, 33759, 61002, 61003), transport);
        Assert.Equal(100, restored.StartOf(ConnDirection.Reply, 5200, 500)); // the body's end, 100 bytes into the next segment
        Assert.Equal(0, restored.StartOf(ConnDirection.Original, 1, 500));
        Assert.Null(helper.RestoreState(written.WrittenSpan[..^1], helper.StateVersion));
        Assert.Null(helper.RestoreState(written.WrittenSpan, 2));
        Assert.False(helper.SaveState(new object(), written));
    }

    [Fact]
    public void The_end_of_the_control_connection_withdraws_its_expectations()
    {
        var control = Control.Masqueraded();
        var setup = control.FromClient(Setup(FfmpegTransport));
        Assert.Equal(2, control.Rig.Expectations.Count);
        control.Rig.Engine.Destroy(setup.Connection!.Value);
        Assert.Empty(control.Rig.Expectations);
    }

    [Fact]
    public void Ipv6_setup_from_a_masqueraded_client_expects_the_media_at_the_routers_address()
    {
        var rig = new RouterRig([new Offload.Engine.Nat.NatRule { Action = Offload.Engine.Nat.NatAction.Masquerade, OutInterface = Wan }],
            [.. Offload.Engine.Helpers.HelperBinding.Defaults(new RtspHelper())]);
        var syn = rig.Out(TcpPacket(Client6, 40000, Server6, 554, Syn, seq: 100));
        ushort wanPort = SourcePort(syn.Packet);
        rig.In(TcpPacket(Server6, 554, WanAddress6, wanPort, Syn | Ack, seq: 900, ack: 101));
        rig.Out(TcpPacket(Client6, 40000, Server6, 554, Ack, seq: 101, ack: 901));
        var hop = rig.Out(TcpPacket(Client6, 40000, Server6, 554, Ack | Psh, seq: 101, ack: 901,
            payload: Ascii(Setup($"RTP/AVP;unicast;destination=\"{Client6}\";client_port=5000-5001", url: $"rtsp://[{Server6}]/test"))));
        Assert.True(hop.Accepted, rig.DropSummary());
        AssertValid(hop.Packet);
        Assert.Equal($"RTP/AVP;unicast;destination=\"{WanAddress6}\";client_port=5000-5001", Transport(PayloadText(hop.Packet)));
        var rtp = rig.In(UdpPacket(Server6, 6970, WanAddress6, 5000, new byte[172]));
        Assert.Equal(CtInfo.Related, rtp.CtInfo);
        Assert.Equal(Ip(Client6), Destination(rtp.Packet));
    }

    [Fact]
    public void An_answer_naming_another_media_source_lets_its_media_in_too()
    {
        var control = Control.Masqueraded();
        control.FromClient(Setup(FfmpegTransport));
        ushort rtp = control.Rig.Expectations.Min(e => e.Tuple.DestinationPort);
        control.FromServer(Reply($"RTP/AVP;unicast;client_port={rtp}-{rtp + 1};source={Server2};server_port=6970-6971"));
        var media = control.Rig.In(UdpPacket(Server2, 6970, WanAddress, rtp, new byte[172]));
        Assert.True(media.Accepted, control.Rig.DropSummary());
        Assert.Equal(CtInfo.Related, media.CtInfo);
        Assert.Equal(Ip(Client), Destination(media.Packet));
        Assert.Equal((ushort)33758, DestinationPort(media.Packet));
        // Another host gets nothing.
        var other = control.Rig.In(UdpPacket(Remote, 6970, WanAddress, (ushort)(rtp + 1), new byte[52]));
        Assert.NotEqual(CtInfo.Related, other.CtInfo);
    }

    [Fact]
    public void Any_source_lets_media_in_from_anywhere()
    {
        var helper = new RtspHelper();
        helper.Configure(new Dictionary<string, string> { ["any-source"] = "true" });
        var control = Control.Masqueraded(helper);
        control.FromClient(Setup(FfmpegTransport));
        ushort rtp = control.Rig.Expectations.Min(e => e.Tuple.DestinationPort);
        var media = control.Rig.In(UdpPacket(Remote, 6970, WanAddress, rtp, new byte[172]));
        Assert.Equal(CtInfo.Related, media.CtInfo);
    }

    [Fact]
    public void Unknown_options_and_values_are_refused()
    {
        var helper = new RtspHelper();
        Assert.Throws<ArgumentException>(() => helper.Configure(new Dictionary<string, string> { ["loose"] = "true" }));
        Assert.Throws<ArgumentException>(() => helper.Configure(new Dictionary<string, string> { ["any-source"] = "yes" }));
    }

    [Fact]
    public void Behind_a_port_forward_the_servers_ports_are_placed_at_the_router_and_both_directions_meet()
    {
        var control = Control.PortForward();
        var setup = control.FromClient(Setup("RTP/AVP/UDP;unicast;client_port=33758-33759", url: $"rtsp://{WanAddress}:554/test/stream=0"));
        Assert.True(setup.Accepted, control.Rig.DropSummary());
        Assert.Empty(control.Rig.Expectations); // the client is not translated; the answer's server ports are needed first

        var answer = control.FromServer(Reply($"RTP/AVP;unicast;client_port=33758-33759;server_port=6970-6971;source={InternalServer};ssrc=1;mode=\"PLAY\""));
        Assert.True(answer.Accepted, control.Rig.DropSummary());
        string transport = Transport(PayloadText(answer.Packet));
        var placed = control.Rig.Expectations.Where(e => e.Tuple.Destination == A(WanAddress)).OrderBy(e => e.Tuple.DestinationPort).ToList();
        Assert.Equal(2, placed.Count);
        ushort port = placed[0].Tuple.DestinationPort;
        Assert.InRange(port, (ushort)61000, (ushort)65534);
        Assert.Equal($"RTP/AVP;unicast;client_port=33758-33759;server_port={port}-{port + 1};source={WanAddress};ssrc=1;mode=\"PLAY\"", transport);

        // The server's RTP leaves from the router's announced port...
        var rtp = control.Rig.Out(UdpPacket(InternalServer, 6970, Server, 33758, new byte[172]));
        Assert.True(rtp.Accepted, control.Rig.DropSummary());
        Assert.Equal(CtInfo.Related, rtp.CtInfo);
        Assert.Equal(Ip(WanAddress), Source(rtp.Packet));
        Assert.Equal(port, SourcePort(rtp.Packet));
        // ...and the client's RTCP to the router's RTCP port reaches the server's own.
        var rtcp = control.Rig.In(UdpPacket(Server, 33759, WanAddress, (ushort)(port + 1), new byte[52]));
        Assert.True(rtcp.Accepted, control.Rig.DropSummary());
        Assert.Equal(CtInfo.Related, rtcp.CtInfo);
        Assert.Equal(Ip(InternalServer), Destination(rtcp.Packet));
        Assert.Equal((ushort)6971, DestinationPort(rtcp.Packet));
    }

    [Fact]
    public void Through_hairpin_nat_the_servers_media_reaches_the_client()
    {
        // A LAN client reaches the LAN server at the public address: DNAT to the server, masqueraded out the LAN.
        var rig = new RouterRig(
            [
                new Offload.Engine.Nat.NatRule
                {
                    Action = Offload.Engine.Nat.NatAction.Dnat, DestinationNetwork = A(WanAddress), DestinationPrefixLength = 32, Protocol = IpProtocol.Tcp,
                    DestinationPortMin = 554, DestinationPortMax = 554, Range = Range(InternalServer, minPort: 554),
                },
                new Offload.Engine.Nat.NatRule { Action = Offload.Engine.Nat.NatAction.Masquerade, OutInterface = Lan, SourceNetwork = A("192.168.1.0"), SourcePrefixLength = 24 },
            ],
            [.. Offload.Engine.Helpers.HelperBinding.Defaults(new RtspHelper())]);
        var syn = rig.Live(TcpPacket(Client, 40000, WanAddress, 554, Syn, seq: 100), Lan);
        Assert.True(syn.Accepted, rig.DropSummary());
        ushort port = SourcePort(syn.Packet);
        rig.Live(TcpPacket(InternalServer, 554, LanAddress, port, Syn | Ack, seq: 900, ack: 101), Lan);
        rig.Live(TcpPacket(Client, 40000, WanAddress, 554, Ack, seq: 101, ack: 901), Lan);
        var setup = rig.Live(TcpPacket(Client, 40000, WanAddress, 554, Ack | Psh, seq: 101, ack: 901, payload: Ascii(Setup("RTP/AVP;unicast;client_port=5000-5001"))), Lan);
        Assert.True(setup.Accepted, rig.DropSummary());
        Assert.Single(rig.Expectations, e => e.Tuple.Destination == A(LanAddress) && e.Tuple.Source == A(InternalServer) && e.Tuple.DestinationPort == 5000);
        Assert.Equal($"RTP/AVP;unicast;client_port=5000-5001", Transport(PayloadText(setup.Packet)));

        var rtp = rig.Live(UdpPacket(InternalServer, 6970, LanAddress, 5000, new byte[172]), Lan);
        Assert.True(rtp.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, rtp.CtInfo);
        Assert.Equal(Ip(Client), Destination(rtp.Packet));
        Assert.Equal((ushort)5000, DestinationPort(rtp.Packet));
    }

    [Fact]
    public void Two_messages_in_one_segment_are_both_read()
    {
        var control = Control.Masqueraded();
        var hop = control.FromClient(Setup("RTP/AVP;unicast;client_port=5000-5001", cseq: 3) + Setup("RTP/AVP;unicast;client_port=5002-5003", cseq: 4));
        Assert.True(hop.Accepted, control.Rig.DropSummary());
        Assert.Equal(4, control.Rig.Expectations.Count);
        Assert.DoesNotContain("5000-5001", PayloadText(hop.Packet));
        Assert.DoesNotContain("5002-5003", PayloadText(hop.Packet));
    }

    [Fact]
    public void An_interleaved_frame_running_into_the_next_segment_is_not_read_as_a_request()
    {
        var control = Control.Masqueraded();
        // A frame of 200 bytes whose first 10 arrive now; the rest, next, holds what looks like a SETUP.
        string fake = Setup("RTP/AVP;unicast;client_port=7000-7001");
        var frame = new byte[4 + 200];
        frame[0] = (byte)'$';
        frame[3] = 200;
        Ascii(fake).CopyTo(frame, 4 + 10);
        control.FromClient(frame[..14]);
        string real = Setup("RTP/AVP;unicast;client_port=5000-5001");
        var hop = control.FromClient([.. frame[14..], .. Ascii(real)]);
        Assert.True(hop.Accepted, control.Rig.DropSummary());
        Assert.Equal(2, control.Rig.Expectations.Count);
        Assert.Contains("client_port=7000-7001", PayloadText(hop.Packet)); // media bytes untouched
        Assert.DoesNotContain("client_port=5000-5001", PayloadText(hop.Packet)); // the real SETUP after it translated
    }

    [Fact]
    public void Hundreds_of_interleaved_frames_before_a_request_are_stepped_over()
    {
        var control = Control.Masqueraded();
        var frames = Enumerable.Range(0, 300).SelectMany(i => new byte[] { (byte)'$', (byte)(i % 2), 0, 12 }.Concat(new byte[12]));
        var hop = control.FromClient([.. frames, .. Ascii(Setup("RTP/AVP;unicast;client_port=5000-5001"))]);
        Assert.True(hop.Accepted, control.Rig.DropSummary());
        Assert.Equal(2, control.Rig.Expectations.Count);
        Assert.Equal(0, control.Rig[EngineCounter.HelperPartialCommand]);
    }

    [Fact]
    public void A_describe_answer_whose_body_runs_past_the_segment_is_skipped_to_its_end()
    {
        var control = Control.Masqueraded();
        control.FromClient(Setup(FfmpegTransport));
        ushort rtp = control.Rig.Expectations.Min(e => e.Tuple.DestinationPort);
        string body = new('v', 300);
        string describe = $"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: {body.Length}\r\n\r\n";
        control.FromServer(describe + body[..100]);
        var hop = control.FromServer(body[100..] + Reply($"RTP/AVP;unicast;client_port={rtp}-{rtp + 1};server_port=55564-55565"));
        Assert.True(hop.Accepted, control.Rig.DropSummary());
        Assert.Contains("client_port=33758-33759", PayloadText(hop.Packet));
    }
}
