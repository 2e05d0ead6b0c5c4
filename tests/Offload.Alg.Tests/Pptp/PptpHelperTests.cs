using Offload.Alg.Pptp;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Helpers;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Pptp.PptpMessages;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Pptp;

/// <summary>
/// The PPTP helper inside the engine, through a masquerading router: as the kernel's nf_conntrack_pptp with
/// nf_nat_pptp, a LAN client's Outgoing-Call-Request leaves with its call ID replaced by the control connection's
/// translated port, the server's reply comes back naming the client's own call ID, and the call's GRE passes both
/// ways: out with the router's address, in to the client with the client's call ID. Two clients behind the one address
/// calling one server with the same call ID get calls that do not mix.
/// </summary>
public class PptpHelperTests
{
    private const ushort ClientCall = 0x1111;
    private const ushort ServerCall = 0x2222;

    private static (PptpControl Control, byte[] Request, byte[] Reply) Call(RouterRig rig, string client = Client, ushort clientPort = 40000, ushort clientCall = ClientCall, ushort serverCall = ServerCall, string server = Server)
    {
        var control = new PptpControl(rig, client, clientPort, server).Started();
        var request = control.FromClient(OutgoingCallRequest(clientCall));
        ushort seenCall = Field(request, 0);
        var reply = control.FromServer(OutgoingCallReply(serverCall, seenCall));
        return (control, request, reply);
    }

    [Fact]
    public void Helper_serves_tcp_1723_and_is_built_in()
    {
        var helper = new PptpHelper();
        Assert.Equal("pptp", helper.Name);
        Assert.Equal([(ushort)1723], helper.Ports);
        Assert.Equal(IpProtocol.Tcp, helper.Protocol);
        Assert.IsType<PptpHelper>(BuiltInHelpers.Create("pptp", loose: false));
    }

    [Fact]
    public void Outgoing_call_request_leaves_with_the_translated_port_as_call_id_and_the_reply_names_the_clients_own()
    {
        var rig = Masquerading(new PptpHelper());
        var (control, request, reply) = Call(rig);

        Assert.Equal(control.SeenPort, Field(request, 0)); // the kernel's choice: the translated TCP source port
        Assert.Equal(ServerCall, Field(reply, 0));
        Assert.Equal(ClientCall, Field(reply, 2));
        Assert.Equal(2, rig.Expectations.Count);
        Assert.All(rig.Expectations, e => Assert.Equal(IpProtocol.Gre, e.Tuple.Protocol));
    }

    [Fact]
    public void The_calls_gre_passes_both_ways_translated_and_is_one_connection()
    {
        var rig = Masquerading(new PptpHelper());
        var (control, _, _) = Call(rig);

        var outward = rig.PassOut(Gre(Client, Server, ServerCall));
        Assert.Equal(Ip(WanAddress), Source(outward));
        Assert.Equal(ServerCall, GreCallId(outward));

        var inward = rig.PassIn(Gre(Server, WanAddress, control.SeenPort));
        Assert.Equal(Ip(Client), Destination(inward));
        Assert.Equal(ClientCall, GreCallId(inward));

        var hop = rig.In(Gre(Server, WanAddress, control.SeenPort));
        Assert.Equal(ConnDirection.Reply, hop.Direction);
        Assert.True(hop.Connection!.Value.HasStatus(ConnStatus.Expected));
        Assert.Equal(1, rig[EngineCounter.ConnectionsExpected]);
    }

    [Fact]
    public void A_server_call_id_of_0_works_as_pptpds_first_call_has_it()
    {
        var rig = Masquerading(new PptpHelper());
        var (control, _, _) = Call(rig, serverCall: 0);
        var outward = rig.PassOut(Gre(Client, Server, 0));
        Assert.Equal(Ip(WanAddress), Source(outward));
        var inward = rig.PassIn(Gre(Server, WanAddress, control.SeenPort));
        Assert.Equal(Ip(Client), Destination(inward));
        Assert.Equal(ClientCall, GreCallId(inward));
        Assert.Single(rig.Engine.Connections.Entries(), c => c.Original.Protocol == IpProtocol.Gre);
    }

    [Fact]
    public void Gre_from_the_server_may_come_first()
    {
        var rig = Masquerading(new PptpHelper());
        var (control, _, _) = Call(rig);

        var inward = rig.PassIn(Gre(Server, WanAddress, control.SeenPort));
        Assert.Equal(Ip(Client), Destination(inward));
        Assert.Equal(ClientCall, GreCallId(inward));

        var outward = rig.PassOut(Gre(Client, Server, ServerCall));
        Assert.Equal(Ip(WanAddress), Source(outward));
        Assert.Equal(ServerCall, GreCallId(outward));
    }

    [Fact]
    public void Two_clients_behind_one_address_call_one_server_with_the_same_call_id_and_their_gre_does_not_mix()
    {
        var rig = Masquerading(new PptpHelper());
        var (first, firstRequest, _) = Call(rig, Client, 40000, ClientCall, ServerCall);
        var (second, secondRequest, _) = Call(rig, Client2, 40000, ClientCall, 0x3333);

        Assert.NotEqual(Field(firstRequest, 0), Field(secondRequest, 0));

        var toFirst = rig.PassIn(Gre(Server, WanAddress, first.SeenPort));
        var toSecond = rig.PassIn(Gre(Server, WanAddress, second.SeenPort));
        Assert.Equal(Ip(Client), Destination(toFirst));
        Assert.Equal(Ip(Client2), Destination(toSecond));
        Assert.Equal(ClientCall, GreCallId(toFirst));
        Assert.Equal(ClientCall, GreCallId(toSecond));

        Assert.Equal(Ip(WanAddress), Source(rig.PassOut(Gre(Client, Server, ServerCall))));
        Assert.Equal(Ip(WanAddress), Source(rig.PassOut(Gre(Client2, Server, 0x3333))));
    }

    [Fact]
    public void Gre_of_no_call_is_not_delivered_to_a_client()
    {
        var rig = Masquerading(new PptpHelper());
        var (control, _, _) = Call(rig);

        // The server's GRE to a call ID the router never announced: tracked, but not translated to any client.
        var hop = rig.In(Gre(Server, WanAddress, (ushort)(control.SeenPort + 1)));
        Assert.True(!hop.Accepted || Destination(hop.Packet).Equals(Ip(WanAddress)));
    }

    [Fact]
    public void Without_nat_nothing_is_rewritten_and_gre_is_expected_with_the_call_ids()
    {
        var rig = new RouterRig(helpers: HelperBinding.Defaults(new PptpHelper()));
        var control = new PptpControl(rig, Client, 40000, Server).Started();
        var request = control.FromClient(OutgoingCallRequest(ClientCall));
        var reply = control.FromServer(OutgoingCallReply(ServerCall, ClientCall));
        Assert.Equal(ClientCall, Field(request, 0));
        Assert.Equal(ClientCall, Field(reply, 2));

        var outward = rig.PassOut(Gre(Client, Server, ServerCall));
        Assert.Equal(Ip(Client), Source(outward));
        var inward = rig.PassIn(Gre(Server, Client, ClientCall));
        Assert.Equal(ClientCall, GreCallId(inward));
        Assert.Equal(1, rig[EngineCounter.ConnectionsExpected]);
    }

    [Fact]
    public void Ipv6_calls_are_expected_too()
    {
        var rig = new RouterRig(helpers: HelperBinding.Defaults(new PptpHelper()));
        var control = new PptpControl(rig, Client6, 40000, Server6).Started();
        control.FromClient(OutgoingCallRequest(ClientCall));
        control.FromServer(OutgoingCallReply(ServerCall, ClientCall));
        Assert.Equal(2, rig.Expectations.Count);

        rig.PassOut(Gre(Client6, Server6, ServerCall));
        var inward = rig.PassIn(Gre(Server6, Client6, ClientCall));
        Assert.Equal(Ip(Client6), Destination(inward));
        Assert.Equal(1, rig[EngineCounter.ConnectionsExpected]);
    }

    [Fact]
    public void Call_clear_and_disconnect_carry_the_translated_and_the_own_call_id()
    {
        var rig = Masquerading(new PptpHelper());
        var (control, _, _) = Call(rig);

        var clear = control.FromClient(CallClearRequest(ClientCall));
        Assert.Equal(control.SeenPort, Field(clear, 0));

        var disconnect = control.FromServer(CallDisconnectNotify(control.SeenPort));
        Assert.Equal(ClientCall, Field(disconnect, 0));
        Assert.Empty(rig.Expectations); // the call is over: its GRE is expected no more
    }

    [Fact]
    public void A_disconnect_naming_the_servers_own_call_id_is_left_alone()
    {
        var rig = Masquerading(new PptpHelper());
        var (control, _, _) = Call(rig);
        var disconnect = control.FromServer(CallDisconnectNotify(ServerCall));
        Assert.Equal(ServerCall, Field(disconnect, 0));
    }

    [Fact]
    public void Wan_error_notify_names_the_clients_own_call_id_and_set_link_info_passes_as_sent()
    {
        var rig = Masquerading(new PptpHelper());
        var (control, _, _) = Call(rig);
        Assert.Equal(ClientCall, Field(control.FromServer(WanErrorNotify(control.SeenPort)), 0));
        Assert.Equal(ServerCall, Field(control.FromClient(SetLinkInfo(ServerCall)), 0));
    }

    [Fact]
    public void Incoming_call_is_translated_and_its_gre_expected()
    {
        var rig = Masquerading(new PptpHelper());
        var control = new PptpControl(rig, Client, 40000, Server).Started();
        control.FromServer(IncomingCallRequest(ServerCall));
        var reply = control.FromClient(IncomingCallReply(ClientCall, ServerCall));
        Assert.Equal(control.SeenPort, Field(reply, 0));
        var connected = control.FromServer(IncomingCallConnected(control.SeenPort));
        Assert.Equal(ClientCall, Field(connected, 0));

        var inward = rig.PassIn(Gre(Server, WanAddress, control.SeenPort));
        Assert.Equal(Ip(Client), Destination(inward));
        Assert.Equal(ClientCall, GreCallId(inward));
    }

    [Fact]
    public void A_call_before_the_session_is_confirmed_is_not_followed()
    {
        var rig = Masquerading(new PptpHelper());
        var control = new PptpControl(rig, Client, 40000, Server);
        var request = control.FromClient(OutgoingCallRequest(ClientCall));
        Assert.Equal(ClientCall, Field(request, 0));
        control.FromServer(OutgoingCallReply(ServerCall, ClientCall));
        Assert.Empty(rig.Expectations);
    }

    [Fact]
    public void A_refused_call_expects_nothing()
    {
        var rig = Masquerading(new PptpHelper());
        var control = new PptpControl(rig, Client, 40000, Server).Started();
        var request = control.FromClient(OutgoingCallRequest(ClientCall));
        var reply = control.FromServer(OutgoingCallReply(ServerCall, Field(request, 0), result: 3));
        Assert.Equal(ClientCall, Field(reply, 2));
        Assert.Empty(rig.Expectations);
    }

    [Fact]
    public void Helper_state_survives_save_and_restore_and_garbage_is_refused()
    {
        var helper = new PptpHelper();
        byte[] saved = [4, 3, 0x11, 0x11, 0x9c, 0x40, 0x22, 0x22]; // confirmed session, outgoing call confirmed
        var restored = helper.RestoreState(saved, helper.StateVersion);
        Assert.NotNull(restored);
        var writer = new System.Buffers.ArrayBufferWriter<byte>();
        Assert.True(helper.SaveState(restored!, writer));
        Assert.Equal(saved, writer.WrittenSpan.ToArray());
        Assert.Null(helper.RestoreState([9, 0, 0, 0, 0, 0, 0, 0], helper.StateVersion));
        Assert.Null(helper.RestoreState(saved.AsSpan(0, 7), helper.StateVersion));
        Assert.Null(helper.RestoreState(saved, helper.StateVersion + 1));
    }
}
