using System.Buffers.Binary;
using System.Net;
using Offload.Alg.H323;
using Offload.Engine;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.H323.H323Messages;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.H323;

/// <summary>
/// The call signalling and H.245 helpers inside the engine, through a masquerading router: a LAN endpoint calls one
/// beyond the WAN. As the kernel's nf_conntrack_h323 with nf_nat_h323, the Setup leaves with its h245Address,
/// sourceCallSignalAddress and fastStart media addresses naming the router (same-length rewrites, the segment's
/// length unchanged); the callee's H.245 connection and RTP to those addresses arrive RELATED at the caller; an
/// OpenLogicalChannel on H.245 is translated the same way, and the callee's own addresses pass untouched.
/// </summary>
public class H323HelperTests
{
    private const ushort CallerH245 = 5000;
    private const ushort CallerRtp = 6000;

    private static (string Address, ushort Port) At(string address, ushort port) => (address, port);

    private static string AddressAt(byte[] packet, int payloadOffset, out ushort port)
    {
        var payload = Payload(packet);
        port = BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(payloadOffset + 4));
        return new IPAddress(payload.AsSpan(payloadOffset, 4)).ToString();
    }

    private static (RouterRig Rig, TcpFlow Call, Hop Setup, int[] Offsets) CallOut(Channel[]? fastStart = null)
    {
        var helper = new H323Helper();
        var rig = Masquerading(helper);
        var call = new TcpFlow(rig, fromLan: true, Client, 40000, Server, H323Helper.DefaultPort);
        var (setup, offsets) = Q931(SetupType, Setup(
            h245: At(Client, CallerH245),
            destCallSignal: At(Server, 1720),
            sourceCallSignal: At(Client, 40000),
            fastStart: fastStart ?? [new Channel(1, ForwardControl: At(Client, CallerRtp + 1)), new Channel(2, ReverseMedia: At(Client, CallerRtp), ReverseControl: At(Client, CallerRtp + 1))]));
        var hop = call.OpenerSends(setup);
        Assert.True(hop.Accepted, rig.DropSummary());
        AssertValid(hop.Packet);
        Assert.Equal(setup.Length, Payload(hop.Packet).Length); // same-length rewrites
        return (rig, call, hop, offsets);
    }

    [Fact]
    public void The_helpers_are_built_in_as_h323_on_tcp_1720_and_h323_ras_on_udp_1719_with_the_kernels_policies()
    {
        var q931 = Assert.IsType<H323Helper>(BuiltInHelpers.Create("h323", loose: false));
        var ras = Assert.IsType<H323RasHelper>(BuiltInHelpers.Create("h323-ras", loose: false));
        Assert.Equal((IpProtocol.Tcp, (ushort)1720), (q931.Protocol, q931.Ports[0]));
        Assert.Equal((IpProtocol.Udp, (ushort)1719), (ras.Protocol, ras.Ports[0]));
        // The kernel's one policy per helper (20, 18, 32; 240 s), split into named classes whose limits add up to it.
        Assert.Equal(["rtp", "rtcp", "t120", "h245"], q931.ExpectationClasses.Select(c => c.Name));
        Assert.Equal(["rtp", "rtcp", "t120"], q931.H245.ExpectationClasses.Select(c => c.Name));
        Assert.Equal(["call"], ras.ExpectationClasses.Select(c => c.Name));
        Assert.Equal(20, q931.ExpectationClasses.Sum(c => c.MaxExpected));
        Assert.Equal(18, q931.H245.ExpectationClasses.Sum(c => c.MaxExpected));
        Assert.Equal(32, ras.ExpectationClasses.Sum(c => c.MaxExpected));
        Assert.All(q931.ExpectationClasses.Concat(q931.H245.ExpectationClasses).Concat(ras.ExpectationClasses), c => Assert.Equal(TimeSpan.FromSeconds(240), c.Timeout));
        Assert.Equal([q931.H245], q931.AttachedHelpers); // the H.245 helper is found through h323 when a snapshot is restored
        Assert.Equal([ras.Calls], ras.AttachedHelpers);
    }

    [Fact]
    public void A_setup_from_a_masqueraded_caller_names_the_router_in_every_address_the_kernel_rewrites()
    {
        var (_, call, hop, offsets) = CallOut();

        Assert.Equal(WanAddress, AddressAt(hop.Packet, offsets[0], out ushort h245));
        Assert.Equal(CallerH245, h245); // the announced port was free
        Assert.Equal(Server, AddressAt(hop.Packet, offsets[1], out ushort destination)); // the callee's own address: untouched
        Assert.Equal(1720, destination);
        Assert.Equal(WanAddress, AddressAt(hop.Packet, offsets[2], out ushort source));
        Assert.Equal(call.SeenOpenerPort, source); // where the callee sees the call come from
        foreach (int media in offsets[3..])
        {
            Assert.Equal(WanAddress, AddressAt(hop.Packet, media, out _));
        }

        AddressAt(hop.Packet, offsets[3], out ushort rtcp);
        AddressAt(hop.Packet, offsets[4], out ushort rtp);
        Assert.Equal((CallerRtp + 1, CallerRtp), (rtcp, rtp)); // the ports were free: kept, each of its kind
    }

    [Fact]
    public void A_setup_expects_h245_from_the_callee_and_rtp_and_rtcp_as_a_pair_per_logical_channel()
    {
        var (rig, call, _, _) = CallOut();

        var expected = rig.Expectations.OrderBy(e => e.Tuple.Protocol).ThenBy(e => e.Tuple.DestinationPort).ToList();
        Assert.Equal(
            [(IpProtocol.Tcp, CallerH245), (IpProtocol.Udp, CallerRtp), (IpProtocol.Udp, (ushort)(CallerRtp + 1))],
            expected.Select(e => (e.Tuple.Protocol, e.Tuple.DestinationPort)));
        Assert.All(expected, e =>
        {
            Assert.Equal(call.Connection, e.Master);
            Assert.Equal(A(Server), e.Tuple.Source);
            Assert.Equal(A(WanAddress), e.Tuple.Destination);
        });
        Assert.IsType<H245Helper>(expected[0].Helper);
    }

    [Fact]
    public void The_callees_h245_connection_and_media_arrive_related_at_the_caller_and_h245_open_logical_channel_is_translated()
    {
        var (rig, _, _, _) = CallOut();

        var h245 = new TcpFlow(rig, fromLan: false, Server, 41000, WanAddress, CallerH245);
        Assert.Equal(CtInfo.Related, h245.Opened.CtInfo);
        Assert.Equal((Client, CallerH245), (h245.Answerer, h245.AnswererPort));

        var rtp = rig.In(UdpPacket(Server, 7000, WanAddress, CallerRtp, [0x80, 0, 0, 1]));
        Assert.True(rtp.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, rtp.CtInfo);
        Assert.Equal((Ip(Client), CallerRtp), (Destination(rtp.Packet), DestinationPort(rtp.Packet)));

        // The caller opens a logical channel on H.245: its RTCP address is the router's on the port of the same kind.
        var (olc, offsets) = H245(OpenLogicalChannelRequest(new Channel(5, ForwardControl: At(Client, 6011))));
        var sent = h245.AnswererSends(olc);
        Assert.True(sent.Accepted, rig.DropSummary());
        AssertValid(sent.Packet);
        Assert.Equal(WanAddress, AddressAt(sent.Packet, offsets[0], out ushort port));
        Assert.Equal(6011, port);
        Assert.Contains(rig.Expectations, e => e.Tuple.DestinationPort == 6010 && e.Tuple.Protocol == IpProtocol.Udp);
        Assert.Contains(rig.Expectations, e => e.Tuple.DestinationPort == 6011 && e.Tuple.Protocol == IpProtocol.Udp);
    }

    [Fact]
    public void A_channels_rtcp_address_announced_again_keeps_the_port_placed_for_its_rtp()
    {
        var rig = Masquerading(new H323Helper());
        // Another master already holds the caller's RTP port at the router: the pair moves, both announcements follow it.
        var first = new TcpFlow(rig, fromLan: true, Client2, 40001, Server, 1720);
        var (taken, _) = Q931(SetupType, Setup(fastStart: [new Channel(1, ReverseMedia: At(Client2, CallerRtp), ReverseControl: At(Client2, CallerRtp + 1))]));
        Assert.True(first.OpenerSends(taken).Accepted);

        var call = new TcpFlow(rig, fromLan: true, Client, 40000, Server, 1720);
        var (setup, offsets) = Q931(SetupType, Setup(fastStart: [new Channel(1, ReverseMedia: At(Client, CallerRtp), ReverseControl: At(Client, CallerRtp + 1))]));
        var hop = call.OpenerSends(setup);
        Assert.True(hop.Accepted, rig.DropSummary());
        AddressAt(hop.Packet, offsets[0], out ushort rtp);
        AddressAt(hop.Packet, offsets[1], out ushort rtcp);
        Assert.NotEqual(CallerRtp, rtp);
        Assert.Equal(rtp + 1, rtcp);

        var media = rig.In(UdpPacket(Server, 7000, WanAddress, rtcp, [0x80]));
        Assert.Equal((Ip(Client), (ushort)(CallerRtp + 1)), (Destination(media.Packet), DestinationPort(media.Packet)));
    }

    [Fact]
    public void The_untranslated_callees_connect_passes_untouched_and_expects_the_callers_h245_connection()
    {
        var (rig, call, _, _) = CallOut();
        var (connect, offsets) = Q931(ConnectType, Connect(h245: At(Server, 5001), fastStart: [new Channel(1, ForwardControl: At(Server, 8001))]));

        var hop = call.AnswererSends(connect);

        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(connect, Payload(hop.Packet));
        Assert.Contains(rig.Expectations, e => e.Tuple.Protocol == IpProtocol.Tcp && e.Tuple.DestinationPort == 5001 && e.Tuple.Destination == A(Server));
        Assert.Contains(rig.Expectations, e => e.Tuple.Protocol == IpProtocol.Udp && e.Tuple.DestinationPort == 8000 && e.Tuple.Destination == A(Server));
        Assert.Equal(Server, AddressAt(hop.Packet, offsets[0], out _));
    }

    [Fact]
    public void An_address_naming_someone_else_opens_nothing_and_is_not_rewritten()
    {
        var helper = new H323Helper();
        var rig = Masquerading(helper);
        var call = new TcpFlow(rig, fromLan: true, Client, 40000, Server, 1720);
        var (setup, _) = Q931(SetupType, Setup(h245: At(Client2, CallerH245)));

        var hop = call.OpenerSends(setup);

        Assert.Equal(setup, Payload(hop.Packet));
        Assert.Empty(rig.Expectations);
    }

    [Fact]
    public void Without_nat_nothing_is_rewritten_but_everything_is_expected()
    {
        var helper = new H323Helper();
        var rig = new RouterRig([], [new HelperBinding(helper, IpProtocol.Tcp, 1720)]);
        var call = new TcpFlow(rig, fromLan: true, Client, 40000, Server, 1720);
        var (setup, _) = Q931(SetupType, Setup(h245: At(Client, CallerH245), fastStart: [new Channel(1, ReverseMedia: At(Client, CallerRtp), ReverseControl: At(Client, CallerRtp + 1))]));

        var hop = call.OpenerSends(setup);

        Assert.Equal(setup, Payload(hop.Packet));
        Assert.Equal(3, rig.Expectations.Count);
        Assert.All(rig.Expectations, e => Assert.Equal(A(Client), e.Tuple.Destination));
    }

    [Fact]
    public void Several_tpkts_in_one_segment_are_all_read()
    {
        var (rig, call, _, _) = CallOut();
        var (first, _) = H245(OpenLogicalChannelRequest(new Channel(7, ForwardControl: At(Client, 6021))));
        var (second, _) = H245(OpenLogicalChannelRequest(new Channel(8, ForwardControl: At(Client, 6031))));
        var h245 = new TcpFlow(rig, fromLan: false, Server, 41000, WanAddress, CallerH245);

        Assert.True(h245.AnswererSends([.. first, .. second]).Accepted);

        Assert.Contains(rig.Expectations, e => e.Tuple.DestinationPort == 6020);
        Assert.Contains(rig.Expectations, e => e.Tuple.DestinationPort == 6030);
    }

    [Fact]
    public void A_t120_channel_is_expected_permanently_and_translated()
    {
        var (rig, _, _, _) = CallOut();
        var h245 = new TcpFlow(rig, fromLan: false, Server, 41000, WanAddress, CallerH245);
        var (olc, offsets) = H245(OpenLogicalChannelRequest(new Channel(9, T120: At(Client, 1503))));

        var hop = h245.AnswererSends(olc);

        Assert.Equal(WanAddress, AddressAt(hop.Packet, offsets[0], out ushort port));
        var t120 = Assert.Single(rig.Expectations, e => e.Tuple.Protocol == IpProtocol.Tcp && e.Tuple.DestinationPort == port);
        Assert.Equal(ExpectationFlags.Permanent, t120.Flags);
    }

    [Fact]
    public void Tunnelled_h245_in_a_connect_is_read()
    {
        var (rig, call, _, _) = CallOut();
        var (connect, _) = Q931(ConnectType, Connect(tunnelled: [OpenLogicalChannelAck(1, At(Server, 9000), At(Server, 9001))]));

        Assert.True(call.AnswererSends(connect).Accepted);

        Assert.Contains(rig.Expectations, e => e.Tuple.Protocol == IpProtocol.Udp && e.Tuple.DestinationPort == 9000 && e.Tuple.Destination == A(Server));
    }

    [Fact]
    public void A_tpkt_header_sent_alone_is_joined_to_the_next_segment_as_netmeeting_sends_them()
    {
        var rig = Masquerading(new H323Helper());
        var call = new TcpFlow(rig, fromLan: true, Client, 40000, Server, 1720);
        var (setup, offsets) = Q931(SetupType, Setup(h245: At(Client, CallerH245)));

        Assert.Equal(setup[..4], Payload(call.OpenerSends(setup[..4]).Packet));
        var data = call.OpenerSends(setup[4..]);

        Assert.Equal(WanAddress, AddressAt(data.Packet, offsets[0] - 4, out _));
        Assert.Single(rig.Expectations);
    }

    [Fact]
    public void A_facility_for_a_forwarded_call_is_not_followed_and_another_facilitys_h245_address_is()
    {
        var (rig, call, _, _) = CallOut();
        int before = rig.Expectations.Count;

        var (forwarded, forwardedOffsets) = Q931(FacilityType, Facility(1, At(Client, 5100)));
        var hop = call.OpenerSends(forwarded);
        Assert.Equal(forwarded, Payload(hop.Packet));
        Assert.Equal(before, rig.Expectations.Count);
        Assert.Equal(Client, AddressAt(hop.Packet, forwardedOffsets[0], out _));

        var (undefined, offsets) = Q931(FacilityType, Facility(3, At(Client, 5100)));
        hop = call.OpenerSends(undefined);
        Assert.Equal(WanAddress, AddressAt(hop.Packet, offsets[0], out _));
        Assert.Equal(before + 1, rig.Expectations.Count);
    }

    [Fact]
    public void When_the_callers_rtp_port_moved_its_own_rtp_to_the_callee_leaves_from_the_port_the_callee_was_told()
    {
        var rig = Masquerading(new H323Helper());
        var first = new TcpFlow(rig, fromLan: true, Client2, 40001, Server, 1720);
        var (taken, _) = Q931(SetupType, Setup(fastStart: [new Channel(1, ReverseMedia: At(Client2, CallerRtp), ReverseControl: At(Client2, CallerRtp + 1))]));
        Assert.True(first.OpenerSends(taken).Accepted);
        var call = new TcpFlow(rig, fromLan: true, Client, 40000, Server, 1720);
        var (setup, offsets) = Q931(SetupType, Setup(fastStart: [new Channel(1, ReverseMedia: At(Client, CallerRtp), ReverseControl: At(Client, CallerRtp + 1))]));
        AddressAt(call.OpenerSends(setup).Packet, offsets[0], out ushort told);
        Assert.NotEqual(CallerRtp, told);
        var (connect, _) = Q931(ConnectType, Connect(fastStart: [new Channel(1, ReverseMedia: At(Server, 8000), ReverseControl: At(Server, 8001))]));
        Assert.True(call.AnswererSends(connect).Accepted);

        // The caller sends first: its RTP leaves from the port the callee was told, and the callee's then meets it.
        var rtp = rig.Out(UdpPacket(Client, CallerRtp, Server, 8000, [0x80, 0, 0, 1]));
        Assert.True(rtp.Accepted, rig.DropSummary());
        Assert.Equal((Ip(WanAddress), told), (Source(rtp.Packet), SourcePort(rtp.Packet)));
        var back = rig.In(UdpPacket(Server, 8000, WanAddress, told, [0x80, 0, 0, 2]));
        Assert.True(back.Accepted, rig.DropSummary());
        Assert.Equal((Ip(Client), CallerRtp), (Destination(back.Packet), DestinationPort(back.Packet)));
    }

    [Fact]
    public void An_ipv6_setup_through_nat66_names_the_routers_ipv6_address_and_its_media_arrives_related()
    {
        var rig = Masquerading(new H323Helper());
        var call = new TcpFlow(rig, fromLan: true, Client6, 40000, Server6, 1720);
        var (setup, offsets) = Q931(SetupType, Setup(
            h245: At(Client6, CallerH245),
            fastStart: [new Channel(1, ReverseMedia: At(Client6, CallerRtp), ReverseControl: At(Client6, CallerRtp + 1))]));

        var hop = call.OpenerSends(setup);

        Assert.True(hop.Accepted, rig.DropSummary());
        AssertValid(hop.Packet);
        var payload = Payload(hop.Packet);
        Assert.Equal(setup.Length, payload.Length);
        Assert.All(offsets, o => Assert.Equal(Ip(WanAddress6), new IPAddress(payload.AsSpan(o, 16))));
        var rtp = rig.In(UdpPacket(Server6, 7000, WanAddress6, CallerRtp, [0x80, 0, 0, 1]));
        Assert.Equal(CtInfo.Related, rtp.CtInfo);
        Assert.Equal((Ip(Client6), CallerRtp), (Destination(rtp.Packet), DestinationPort(rtp.Packet)));
    }
}
