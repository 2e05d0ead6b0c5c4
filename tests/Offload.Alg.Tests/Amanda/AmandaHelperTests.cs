using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.Amanda;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Amanda;

/// <summary>
/// The Amanda helper inside the engine, through a router: the Amanda server sits on the LAN (behind MASQUERADE
/// in the translated cases) and asks the client's amandad on the WAN side; the client's reply announces the TCP
/// ports the server then opens.
/// </summary>
public class AmandaHelperTests
{
    private const ushort ServerPort = 850; // the Amanda server's UDP port (bsd auth uses a reserved one)
    private const string Request = "Amanda 3.5 REQ HANDLE 000-00A1B2C3 SEQ 1700000000\nSECURITY USER backup\nSERVICE sendbackup\nOPTIONS features=ffff;hostname=client;\n";

    private static string Reply(string connect) =>
        "Amanda 3.5 REP HANDLE 000-00A1B2C3 SEQ 1700000000\nSECURITY USER backup\n" + connect + "OPTIONS features=ffff;\n";

    private static readonly NatRule Masquerade = new() { Action = NatAction.Masquerade, OutInterface = Wan };

    private static (RouterRig Rig, AmandaHelper Helper) Setup(bool natted, int maxExpectations = 0)
    {
        var helper = new AmandaHelper();
        var rig = new RouterRig(natted ? [Masquerade] : [], [new HelperBinding(helper, helper.Protocol, helper.Ports[0])], maxExpectations: maxExpectations);
        return (rig, helper);
    }

    /// <summary>The server's request out, the client's reply in; returns the reply as the server receives it (or the drop).</summary>
    private static (Hop Reply, Connection Master) Exchange(RouterRig rig, bool natted, string reply, string server = Client, ushort serverPort = ServerPort, string amandad = RouterRig.Server) =>
        Exchange(rig, natted, Ascii(reply), server, serverPort, amandad);

    private static (Hop Reply, Connection Master) Exchange(RouterRig rig, bool natted, byte[] reply, string server = Client, ushort serverPort = ServerPort, string amandad = RouterRig.Server)
    {
        var request = rig.Out(UdpPacket(server, serverPort, amandad, AmandaHelper.DefaultPort, Ascii(Request)));
        Assert.True(request.Accepted, rig.DropSummary());
        var seenAs = natted ? WanAddress : server;
        var answer = rig.In(UdpPacket(amandad, AmandaHelper.DefaultPort, seenAs, SourcePort(request.Packet), reply));
        return (answer, request.Connection!.Value);
    }

    private static Hop OpenFromServer(RouterRig rig, ushort port, ushort from = 40000) =>
        rig.Out(TcpPacket(Client, from, RouterRig.Server, port, Syn, seq: 777));

    [Fact]
    public void Helper_is_bound_to_udp_10080_by_its_own_defaults()
    {
        var helper = new AmandaHelper();
        Assert.Equal("amanda", helper.Name);
        Assert.Equal(IpProtocol.Udp, helper.Protocol);
        Assert.Equal([(ushort)10080], helper.Ports);
        Assert.Equal(new ExpectationPolicy(4, TimeSpan.FromMinutes(3)), helper.Policy);
        Assert.IsType<AmandaHelper>(BuiltInHelpers.Create("amanda", loose: false));
    }

    [Fact]
    public void Untranslated_reply_expects_each_stream_and_passes_unchanged()
    {
        var (rig, _) = Setup(natted: false);
        string text = Reply("CONNECT DATA 50000 MESG 50001 INDEX 50002 STATE 50003\n");
        var (reply, master) = Exchange(rig, natted: false, text);

        Assert.True(reply.Accepted, rig.DropSummary());
        Assert.Equal(text, PayloadText(reply.Packet));
        var expected = rig.Engine.Expectations.Entries().OrderBy(e => e.Tuple.DestinationPort).ToList();
        Assert.Equal([50000, 50001, 50002, 50003], expected.Select(e => (int)e.Tuple.DestinationPort));
        Assert.All(expected, e =>
        {
            Assert.Equal(master, e.Master);
            Assert.Equal(IpProtocol.Tcp, e.Tuple.Protocol);
            Assert.Equal(A(Client), e.Tuple.Source);
            Assert.Equal(A(RouterRig.Server), e.Tuple.Destination);
            Assert.False(e.FollowMasterNat);
        });

        var data = OpenFromServer(rig, 50002);
        Assert.True(data.Accepted);
        Assert.Equal(CtInfo.Related, data.CtInfo);
        Assert.Equal(master, data.Connection!.Value.Master);
        Assert.Equal(3, rig.Engine.Expectations.Count);
    }

    [Fact]
    public void Translated_reply_follows_the_masters_nat_and_keeps_ports_that_did_not_move()
    {
        var (rig, _) = Setup(natted: true);
        string text = Reply("CONNECT DATA 50000 MESG 50001 INDEX 50002\n");
        var (reply, master) = Exchange(rig, natted: true, text);

        Assert.True(master.IsNatted);
        Assert.True(reply.Accepted, rig.DropSummary());
        Assert.Equal(Ip(Client), Destination(reply.Packet));
        Assert.Equal(text, PayloadText(reply.Packet));
        Assert.Equal(0, rig[EngineCounter.PayloadRewrites]);
        Assert.All(rig.Engine.Expectations.Entries(), e => Assert.True(e.FollowMasterNat));

        var data = OpenFromServer(rig, 50001);
        Assert.True(data.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, data.CtInfo);
        AssertValid(data.Packet);
        Assert.Equal(Ip(WanAddress), Source(data.Packet)); // translated as the master is
        Assert.Equal(Ip(RouterRig.Server), Destination(data.Packet));
        Assert.Equal((ushort)50001, DestinationPort(data.Packet));
    }

    [Fact]
    public void A_port_the_engine_moves_is_rewritten_and_its_connection_reaches_the_announced_port()
    {
        var (rig, helper) = Setup(natted: true);
        string text = Reply("CONNECT DATA 50000 MESG 50010 INDEX 9999\n");
        Exchange(rig, natted: true, text);

        // A second backup from the same server, answered with the same ports while the first ones still wait.
        var (second, secondMaster) = Exchange(rig, natted: true, text, serverPort: ServerPort + 1);

        Assert.True(second.Accepted, rig.DropSummary());
        AssertValid(second.Packet);
        Assert.Equal(Reply("CONNECT DATA 50001 MESG 50011 INDEX 10000\n"), PayloadText(second.Packet)); // 9999 grew a digit
        Assert.Equal(1, rig[EngineCounter.PayloadRewrites]);
        Assert.Equal(6, rig.Engine.Expectations.Count);

        // The server connects to the ports it was told; the connection arrives where amandad listens.
        var data = OpenFromServer(rig, 10000, from: 40001);
        Assert.True(data.Accepted, rig.DropSummary());
        Assert.Equal(secondMaster, data.Connection!.Value.Master);
        Assert.Equal((ushort)9999, DestinationPort(data.Packet));
        Assert.Equal(Ip(WanAddress), Source(data.Packet));

        var first = OpenFromServer(rig, 9999, from: 40002);
        Assert.Equal(CtInfo.Related, first.CtInfo);
        Assert.NotEqual(secondMaster, first.Connection!.Value.Master);
        Assert.Equal(0, rig[EngineCounter.HelperMalformedCommand]);
        Assert.Null(ConntrackEngine.DisabledReason(helper));
    }

    [Fact]
    public void Translated_reply_writes_ports_in_plain_decimal_as_the_kernel()
    {
        var (rig, _) = Setup(natted: true);
        var (reply, _) = Exchange(rig, natted: true, Reply("CONNECT DATA 00080\n"));

        Assert.True(reply.Accepted, rig.DropSummary());
        AssertValid(reply.Packet);
        Assert.Equal(Reply("CONNECT DATA 80\n"), PayloadText(reply.Packet));
        Assert.Equal(80, rig.Engine.Expectations.Entries().Single().Tuple.DestinationPort);
    }

    [Fact]
    public void The_servers_own_datagrams_are_never_read()
    {
        var (rig, _) = Setup(natted: false);
        var hop = rig.Out(UdpPacket(Client, ServerPort, RouterRig.Server, AmandaHelper.DefaultPort, Ascii("CONNECT DATA 50000\n")));

        Assert.True(hop.Accepted);
        Assert.Equal(0, rig.Engine.Expectations.Count);
    }

    [Theory]
    [InlineData("CONNECT DATA 70000 MESG 50001\n", 0)]
    [InlineData("CONNECT DATA 50000 MESG 123456 INDEX 50002\n", 1)]
    [InlineData("CONNECT DATA 0\n", 0)]
    public void Malformed_ports_are_counted_and_not_expected(string connect, int expected)
    {
        var (rig, helper) = Setup(natted: true);
        string text = Reply(connect);
        var (reply, _) = Exchange(rig, natted: true, text);

        Assert.True(reply.Accepted);
        Assert.Equal(text, PayloadText(reply.Packet));
        Assert.Equal(1, rig[EngineCounter.HelperMalformedCommand]);
        Assert.Equal(expected, rig.Engine.Expectations.Count);
        Assert.Null(ConntrackEngine.DisabledReason(helper));
    }

    [Fact]
    public void Reply_is_dropped_when_its_streams_cannot_all_be_expected()
    {
        var (rig, _) = Setup(natted: false, maxExpectations: 2);
        var (reply, _) = Exchange(rig, natted: false, Reply("CONNECT DATA 50000 MESG 50001 INDEX 50002\n"));

        Assert.False(reply.Accepted);
        Assert.Equal(1, rig[EngineCounter.HelperExpectationFailed]);
    }

    [Fact]
    public void A_retransmitted_reply_renews_its_expectations_instead_of_moving_them()
    {
        var (rig, _) = Setup(natted: true);
        string text = Reply("CONNECT DATA 50000 MESG 50001\n");
        var (_, master) = Exchange(rig, natted: true, text);
        var again = rig.In(UdpPacket(RouterRig.Server, AmandaHelper.DefaultPort, WanAddress, master.Reply.DestinationPort, Ascii(text)));

        Assert.True(again.Accepted, rig.DropSummary());
        Assert.Equal(text, PayloadText(again.Packet));
        Assert.Equal(2, rig.Engine.Expectations.Count);
    }

    [Fact]
    public void IPv6_reply_expects_the_streams_between_the_same_hosts()
    {
        var (rig, _) = Setup(natted: false);
        var (reply, _) = Exchange(rig, natted: false, Reply("CONNECT DATA 50000\n"), server: Client6, amandad: Server6);

        Assert.True(reply.Accepted, rig.DropSummary());
        var expectation = rig.Engine.Expectations.Entries().Single();
        Assert.Equal(6, expectation.Tuple.Family);
        Assert.Equal(A(Client6), expectation.Tuple.Source);
        Assert.Equal(A(Server6), expectation.Tuple.Destination);
    }

    [Fact]
    public void Random_replies_never_fail_the_helper_and_rewrites_touch_only_the_ports()
    {
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(400), Prop.ForAll(AmandaParserTests.Payloads.ToArbitrary(), payload =>
        {
            var (rig, helper) = Setup(natted: true);

            // The same payload twice, from two masters: the second one's ports are moved and rewritten.
            var first = Exchange(rig, natted: true, payload).Reply;
            var second = Exchange(rig, natted: true, payload, serverPort: ServerPort + 1).Reply;
            if (ConntrackEngine.DisabledReason(helper) is not null)
            {
                return false;
            }

            foreach (var hop in new[] { first, second }.Where(h => h.Accepted))
            {
                AssertValid(hop.Packet);
                if (!SameOutsidePorts(payload, Payload(hop.Packet)))
                {
                    return false;
                }
            }

            return first.Accepted || rig[EngineCounter.HelperExpectationFailed] > 0;
        }));
    }

    // The rewritten payload equals the original once every announced port's digits are taken out of both.
    private static bool SameOutsidePorts(byte[] original, byte[] rewritten)
    {
        var before = new AmandaPort[AmandaParser.MaxPorts];
        var after = new AmandaPort[AmandaParser.MaxPorts];
        AmandaParser.Scan(original, before, out int n);
        AmandaParser.Scan(rewritten, after, out int m);
        if (n != m)
        {
            return false;
        }

        return Strip(original, before[..n]).SequenceEqual(Strip(rewritten, after[..m]));
    }

    private static byte[] Strip(byte[] data, AmandaPort[] ports)
    {
        var kept = new List<byte>(data);
        foreach (var port in ports.Reverse())
        {
            kept.RemoveRange(port.Offset, port.Length);
        }

        return [.. kept];
    }
}
