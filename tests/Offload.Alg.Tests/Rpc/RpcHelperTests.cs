using Offload.Alg.Rpc;
using Offload.Engine;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Rpc.RpcMessages;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Rpc;

/// <summary>
/// The portmapper helper through the engine, against what conntrack-tools' <c>rpc</c> helper does (the kernel has no
/// RPC helper): a lookup's answer opens the client's connection to the announced port, with the protocol the call
/// asked, only when the answer's XID matches a call; behind a masquerade the connection follows the master's source
/// NAT, behind a port forward it is placed at the router and sent on to the real server, and the answer is rewritten
/// to say so (port and universal address; conntrack-tools rewrites neither correctly).
/// </summary>
public class RpcHelperTests
{
    private const ushort ServicePort = 2049;
    private const ushort ClientPort = 40000;

    [Fact]
    public void It_is_the_built_in_rpc_on_tcp_and_udp_111()
    {
        var helper = Assert.IsType<RpcHelper>(Offload.Alg.BuiltInHelpers.Create("rpc", loose: false));
        Assert.Equal("rpc", helper.Name);
        Assert.Equal([ProtoTcp, ProtoUdp], helper.Protocols);
        Assert.Equal([(ushort)111], helper.Ports);
    }

    [Theory]
    [InlineData(6)]
    [InlineData(17)]
    public void A_getport_answer_over_udp_lets_the_masqueraded_client_reach_the_service_as_a_related_connection(byte protocol)
    {
        var rig = RpcRig.Masquerade();
        var call = rig.Out(UdpPacket(Client, ClientPort, Server, 111, GetPortCall(7, protocol: protocol)));
        Assert.True(call.Accepted, rig.DropSummary());
        var answer = rig.In(UdpPacket(Server, 111, WanAddress, SourcePort(call.Packet), GetPortReply(7, ServicePort)));
        Assert.True(answer.Accepted, rig.DropSummary());
        Assert.Equal(GetPortReply(7, ServicePort), Payload(answer.Packet)); // the port is the server's: nothing to rewrite

        var expectation = Assert.Single(rig.Expectations);
        Assert.Equal(protocol, expectation.Tuple.Protocol);
        Assert.Equal(A(Client), expectation.Tuple.Source);
        Assert.Equal(A(Server), expectation.Tuple.Destination);
        Assert.Equal(ServicePort, expectation.Tuple.DestinationPort);

        var first = protocol == ProtoTcp
            ? rig.Out(TcpPacket(Client, 40001, Server, ServicePort, Syn, seq: 5000))
            : rig.Out(UdpPacket(Client, 40001, Server, ServicePort, [1, 2, 3, 4]));
        Assert.True(first.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, first.CtInfo);
        Assert.Equal(Ip(WanAddress), Source(first.Packet)); // translated as its master
        Assert.Equal(1, rig[EngineCounter.ConnectionsExpected]);
    }

    [Theory]
    [InlineData("tcp", 6, 4u, 3u)]
    [InlineData("udp", 17, 3u, 3u)]
    [InlineData("tcp", 6, 4u, 9u)]
    public void A_getaddr_answer_over_tcp_expects_the_transport_its_netid_names(string netid, byte protocol, uint version, uint procedure)
    {
        var rig = RpcRig.Masquerade();
        var flow = new RpcTcpFlow(rig, forwarded: false);
        Assert.True(flow.Call(Record(GetAddrCall(0x1111, netid, rpcbVersion: version, procedure: procedure))).Accepted);
        var reply = Record(GetAddrReply(0x1111, Universal(Server, ServicePort)));
        var answer = flow.Answer(reply);
        Assert.True(answer.Accepted, rig.DropSummary());
        Assert.Equal(reply, Payload(answer.Packet));
        var expectation = Assert.Single(rig.Expectations);
        Assert.Equal(protocol, expectation.Tuple.Protocol);
        Assert.Equal(ServicePort, expectation.Tuple.DestinationPort);
        Assert.Equal(A(Server), expectation.Tuple.Destination);
    }

    [Fact]
    public void Behind_a_port_forward_the_getaddr_answer_names_the_router_and_a_placed_port_and_the_connection_reaches_the_real_server()
    {
        var rig = RpcRig.PortForward();
        var flow = new RpcTcpFlow(rig, forwarded: true);
        Assert.True(flow.Call(Record(GetAddrCall(0x2222, "tcp"))).Accepted, rig.DropSummary());
        // The server answers with its own, private address: what rpcbind writes for a service bound to any address.
        var answer = flow.Answer(Record(GetAddrReply(0x2222, Universal(InternalServer, ServicePort))));
        Assert.True(answer.Accepted, rig.DropSummary());
        AssertValid(answer.Packet);

        var expectation = Assert.Single(rig.Expectations);
        ushort placed = expectation.Tuple.DestinationPort;
        Assert.InRange(placed, RpcRig.NatMin, RpcRig.NatMax);
        Assert.Equal(A(WanAddress), expectation.Tuple.Destination);
        Assert.Equal(A(Server), expectation.Tuple.Source);

        // The record mark follows the string's new length; the message is whole and names the router.
        var payload = Payload(answer.Packet);
        var message = payload.AsSpan(4).ToArray();
        Assert.Equal(0x8000_0000u | (uint)message.Length, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(payload));
        Assert.Equal(Universal(WanAddress, placed), LastString(message, Str(Universal(WanAddress, placed)).Length));

        var connect = rig.In(TcpPacket(Server, 40001, WanAddress, placed, Syn, seq: 7000));
        Assert.True(connect.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, connect.CtInfo);
        Assert.Equal(Ip(InternalServer), Destination(connect.Packet));
        Assert.Equal(ServicePort, DestinationPort(connect.Packet));
        Assert.Equal(Ip(Server), Source(connect.Packet));

        // The server's next bytes are shifted by what the rewrite added (seqadj).
        int grown = payload.Length - Record(GetAddrReply(0x2222, Universal(InternalServer, ServicePort))).Length;
        var next = flow.Answer(Record(GetAddrReply(0x9999, "")));
        Assert.Equal((uint)(flow.ServerSeq - Payload(next.Packet).Length + grown), Seq(next.Packet));
    }

    [Fact]
    public void Behind_a_port_forward_a_getport_answer_over_udp_gets_the_placed_port()
    {
        var rig = RpcRig.PortForward();
        var call = rig.In(UdpPacket(Server, ClientPort, WanAddress, 111, GetPortCall(0x33, protocol: ProtoUdp)));
        Assert.True(call.Accepted, rig.DropSummary());
        Assert.Equal(Ip(InternalServer), Destination(call.Packet));
        var answer = rig.Out(UdpPacket(InternalServer, 111, Server, ClientPort, GetPortReply(0x33, ServicePort)));
        Assert.True(answer.Accepted, rig.DropSummary());
        AssertValid(answer.Packet);
        var expectation = Assert.Single(rig.Expectations);
        ushort placed = expectation.Tuple.DestinationPort;
        Assert.InRange(placed, RpcRig.NatMin, RpcRig.NatMax);
        Assert.Equal(GetPortReply(0x33, placed), Payload(answer.Packet));

        var service = rig.In(UdpPacket(Server, 40002, WanAddress, placed, [9, 9, 9, 9]));
        Assert.True(service.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, service.CtInfo);
        Assert.Equal(Ip(InternalServer), Destination(service.Packet));
        Assert.Equal(ServicePort, DestinationPort(service.Packet));
    }

    [Fact]
    public void Without_a_lookup_the_service_port_behind_a_port_forward_is_not_reachable()
    {
        var rig = RpcRig.PortForward();
        var hop = rig.In(TcpPacket(Server, 40001, WanAddress, ServicePort, Syn, seq: 7000));
        Assert.NotEqual(Ip(InternalServer), hop.Accepted ? Destination(hop.Packet) : null);
        Assert.Equal(0, rig[EngineCounter.ConnectionsExpected]);
    }

    [Fact]
    public void An_answer_whose_xid_matches_no_call_expects_nothing()
    {
        var rig = RpcRig.Masquerade();
        var call = rig.Out(UdpPacket(Client, ClientPort, Server, 111, GetPortCall(100)));
        var answer = rig.In(UdpPacket(Server, 111, WanAddress, SourcePort(call.Packet), GetPortReply(101, ServicePort)));
        Assert.True(answer.Accepted);
        Assert.Empty(rig.Expectations);

        // Nor does a lone answer on a connection that never called, nor a call sent by the server.
        var rig2 = RpcRig.Masquerade();
        var other = rig2.Out(UdpPacket(Client, ClientPort, Server, 111, DumpCall(5)));
        rig2.In(UdpPacket(Server, 111, WanAddress, SourcePort(other.Packet), GetPortCall(6)));
        rig2.In(UdpPacket(Server, 111, WanAddress, SourcePort(other.Packet), GetPortReply(6, ServicePort)));
        Assert.Empty(rig2.Expectations);
        Assert.Equal(0, rig2[EngineCounter.HelperMalformedCommand]);
    }

    [Fact]
    public void Answers_to_several_calls_are_matched_by_xid_in_any_order()
    {
        var rig = RpcRig.Masquerade();
        var flow = new RpcTcpFlow(rig, forwarded: false);
        flow.Call(Record(GetPortCall(1, MountProgram, 3, ProtoUdp)));
        flow.Call(Record(GetPortCall(2, NfsProgram, 3, ProtoTcp)));
        flow.Answer(Record(GetPortReply(2, 2049)));
        flow.Answer(Record(GetPortReply(1, 20048)));
        Assert.Equal(2, rig.Expectations.Count);
        Assert.Contains(rig.Expectations, e => e.Tuple.DestinationPort == 2049 && e.Tuple.Protocol == ProtoTcp);
        Assert.Contains(rig.Expectations, e => e.Tuple.DestinationPort == 20048 && e.Tuple.Protocol == ProtoUdp);
    }

    [Fact]
    public void Several_records_in_one_segment_are_all_read()
    {
        var rig = RpcRig.PortForward();
        var flow = new RpcTcpFlow(rig, forwarded: true);
        flow.Call(Concat(Record(GetPortCall(1, protocol: ProtoTcp)), Record(GetAddrCall(2, "udp", MountProgram)), Record(DumpCall(3))));
        var answer = flow.Answer(Concat(
            Record(GetPortReply(1, ServicePort)),
            Record(GetAddrReply(2, Universal(InternalServer, 20048)))));
        Assert.True(answer.Accepted, rig.DropSummary());
        AssertValid(answer.Packet);
        Assert.Equal(2, rig.Expectations.Count);
        var tcp = Assert.Single(rig.Expectations, e => e.Tuple.Protocol == ProtoTcp);
        var udp = Assert.Single(rig.Expectations, e => e.Tuple.Protocol == ProtoUdp);

        // Both answers rewritten, each record mark right.
        var expected = Concat(Record(GetPortReply(1, tcp.Tuple.DestinationPort)), Record(GetAddrReply(2, Universal(WanAddress, udp.Tuple.DestinationPort))));
        Assert.Equal(expected, Payload(answer.Packet));
    }

    [Fact]
    public void A_record_of_several_fragments_is_joined_and_its_answer_rewritten_inside_its_fragment()
    {
        var rig = RpcRig.PortForward();
        var flow = new RpcTcpFlow(rig, forwarded: true);
        Assert.True(flow.Call(Record(GetAddrCall(0x77, "tcp"), 8, 20, 4)).Accepted);
        var reply = GetAddrReply(0x77, Universal(InternalServer, ServicePort));
        var answer = flow.Answer(Record(reply, 12));
        Assert.True(answer.Accepted, rig.DropSummary());
        ushort placed = Assert.Single(rig.Expectations).Tuple.DestinationPort;

        // Reassembled, the answer names the router; the first fragment is untouched, the second's mark follows its length.
        var expected = Record(GetAddrReply(0x77, Universal(WanAddress, placed)), 12);
        Assert.Equal(expected, Payload(answer.Packet));
    }

    [Fact]
    public void An_answer_whose_port_straddles_two_fragments_cannot_be_rewritten_and_is_dropped_with_its_expectation()
    {
        var rig = RpcRig.PortForward();
        var flow = new RpcTcpFlow(rig, forwarded: true);
        flow.Call(Record(GetPortCall(8)));
        var reply = GetPortReply(8, ServicePort);
        var answer = flow.Answer(Record(reply, reply.Length - 2));
        Assert.False(answer.Accepted);
        Assert.Equal(1, rig[EngineCounter.HelperRewriteFailed]);
        Assert.Empty(rig.Expectations);
    }

    [Fact]
    public void A_record_cut_by_a_segment_boundary_is_counted_and_the_next_record_is_still_read()
    {
        var rig = RpcRig.Masquerade();
        var flow = new RpcTcpFlow(rig, forwarded: false);
        var cut = Record(GetPortCall(1));
        flow.Call(cut[..20]);
        flow.Call(cut[20..]);
        Assert.Equal(1, rig[EngineCounter.HelperPartialCommand]);
        flow.Call(Record(GetPortCall(2)));
        flow.Answer(Record(GetPortReply(1, 1111)));
        flow.Answer(Record(GetPortReply(2, 2222)));
        var expectation = Assert.Single(rig.Expectations);
        Assert.Equal(2222, expectation.Tuple.DestinationPort);
        Assert.Equal(0, rig[EngineCounter.HelperMalformedCommand]);
    }

    [Fact]
    public void A_retransmitted_answer_is_rewritten_as_the_first_was()
    {
        var rig = RpcRig.PortForward();
        var flow = new RpcTcpFlow(rig, forwarded: true);
        flow.Call(Record(GetPortCall(5)));
        uint seq = flow.ServerSeq;
        var first = flow.Answer(Record(GetPortReply(5, ServicePort)));
        var again = flow.Answer(Record(GetPortReply(5, ServicePort)), seq);
        Assert.True(again.Accepted, rig.DropSummary());
        Assert.Equal(Payload(first.Packet), Payload(again.Packet));
        Assert.NotEqual(Record(GetPortReply(5, ServicePort)), Payload(again.Packet));
        Assert.Single(rig.Expectations);
    }

    [Fact]
    public void An_older_answer_segment_retransmitted_after_a_later_one_is_rewritten_as_the_first_time()
    {
        var rig = RpcRig.PortForward();
        var flow = new RpcTcpFlow(rig, forwarded: true);
        flow.Call(Concat(Record(GetAddrCall(1, "tcp")), Record(GetAddrCall(2, "udp"))));
        uint first = flow.ServerSeq;
        var one = flow.Answer(Record(GetAddrReply(1, Universal(InternalServer, 2049))));
        var two = flow.Answer(Record(GetAddrReply(2, Universal(InternalServer, 20048))));
        Assert.True(one.Accepted && two.Accepted, rig.DropSummary());

        var again = flow.Answer(Record(GetAddrReply(1, Universal(InternalServer, 2049))), first);
        Assert.True(again.Accepted, rig.DropSummary());
        Assert.Equal(Payload(one.Packet), Payload(again.Packet));
        Assert.Equal(Seq(one.Packet), Seq(again.Packet));

        // The stream is not moved back: a third answer after them is still read.
        flow.Call(Record(GetPortCall(3)));
        var three = flow.Answer(Record(GetPortReply(3, 111)));
        Assert.True(three.Accepted, rig.DropSummary());
        Assert.Equal(3, rig.Expectations.Count);
        Assert.Equal(0, rig[EngineCounter.HelperPartialCommand]);
    }

    [Fact]
    public void A_universal_address_naming_another_host_opens_nothing_and_is_counted()
    {
        var rig = RpcRig.Masquerade();
        var flow = new RpcTcpFlow(rig, forwarded: false);
        flow.Call(Record(GetAddrCall(9, "tcp")));
        var reply = Record(GetAddrReply(9, Universal(Remote, ServicePort)));
        var answer = flow.Answer(reply);
        Assert.True(answer.Accepted);
        Assert.Equal(reply, Payload(answer.Packet));
        Assert.Empty(rig.Expectations);
        Assert.Equal(1, rig[EngineCounter.HelperForeignAddressRefused]);
    }

    [Fact]
    public void Not_registered_refused_and_other_procedures_open_nothing_and_are_not_counted()
    {
        var rig = RpcRig.Masquerade();
        var flow = new RpcTcpFlow(rig, forwarded: false);
        flow.Call(Concat(Record(GetPortCall(1)), Record(GetAddrCall(2, "tcp")), Record(DumpCall(3)), Record(GetAddrCall(4, "local"))));
        flow.Answer(Concat(
            Record(GetPortReply(1, 0)),
            Record(GetAddrReply(2, "")),
            Record(Reply(3, Words(0))),
            Record(Concat(Words(4, 1, 1, 0), Words(2, 4)))));
        Assert.Empty(rig.Expectations);
        Assert.Equal(0, rig[EngineCounter.HelperMalformedCommand]);
        Assert.Equal(0, rig[EngineCounter.HelperPartialCommand]);
    }

    [Fact]
    public void Over_routed_ipv6_a_getaddr_answer_is_expected_untouched()
    {
        var rig = RpcRig.Routed();
        var call = rig.Out(UdpPacket(Client6, ClientPort, Server6, 111, GetAddrCall(0x66, "tcp6")));
        Assert.True(call.Accepted, rig.DropSummary());
        var reply = GetAddrReply(0x66, Universal(Server6, ServicePort));
        var answer = rig.In(UdpPacket(Server6, 111, Client6, ClientPort, reply));
        Assert.Equal(reply, Payload(answer.Packet));
        var expectation = Assert.Single(rig.Expectations);
        Assert.Equal(A(Server6), expectation.Tuple.Destination);
        Assert.Equal(ServicePort, expectation.Tuple.DestinationPort);
        var connect = rig.Out(TcpPacket(Client6, 40001, Server6, ServicePort, Syn, seq: 1));
        Assert.Equal(CtInfo.Related, connect.CtInfo);
    }

    [Fact]
    public void A_second_lookup_on_another_connection_while_the_first_expectation_waits_is_answered_and_counted()
    {
        // Untranslated, the first connection's expectation already lets the client in: the answer passes as it is.
        var rig = RpcRig.Routed();
        var reply = GetAddrReply(3, Universal(Server6, ServicePort));
        for (ushort port = 40000; port < 40002; port++)
        {
            Assert.True(rig.Out(UdpPacket(Client6, port, Server6, 111, GetAddrCall(3, "tcp6"))).Accepted);
            var answer = rig.In(UdpPacket(Server6, 111, Client6, port, reply));
            Assert.True(answer.Accepted, rig.DropSummary());
            Assert.Equal(reply, Payload(answer.Packet));
        }

        Assert.Single(rig.Expectations);
        Assert.Equal(1, rig[EngineCounter.HelperExpectationFailed]);
    }

    [Fact]
    public void A_lookup_of_the_portmapper_itself_expects_a_connection_the_helper_helps_too()
    {
        // rpcinfo -p asks rpcbind where rpcbind listens (GETADDR v4 for program 100000), then connects there for its DUMP.
        var rig = RpcRig.PortForward();
        var flow = new RpcTcpFlow(rig, forwarded: true);
        flow.Call(Record(GetAddrCall(1, "tcp", Portmapper, 2)));
        flow.Answer(Record(GetAddrReply(1, Universal(InternalServer, 111))));
        var expectation = Assert.Single(rig.Expectations);
        Assert.IsType<RpcHelper>(expectation.Helper);
        ushort placed = expectation.Tuple.DestinationPort;

        // That connection reaches rpcbind, and a lookup made on it is read as on any portmapper connection.
        var second = new RpcTcpFlow(rig, forwarded: true, clientPort: 40010, serverPort: placed);
        second.Call(Record(GetPortCall(2)));
        second.Answer(Record(GetPortReply(2, ServicePort)));
        Assert.Equal(2, rig[EngineCounter.ExpectationsCreated]);
        Assert.Equal(1, rig[EngineCounter.ConnectionsExpected]);
    }
}
