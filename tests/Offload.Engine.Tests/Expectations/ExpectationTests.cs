using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Expectations;

/// <summary>
/// Expectations as the kernel's nf_conntrack_expect keeps them: registered by a helper for its master, taken by
/// the connection they announce (which is RELATED, marked expected, with its master), translated like the master,
/// limited per master (oldest evicted), refused on a clash, lapsing after their timeout, dying with their master.
/// </summary>
public class ExpectationTests
{
    private const ushort ControlPort = 5000;

    private static readonly ExpectationPolicy Generous = new(8, TimeSpan.FromSeconds(60));

    private static (RouterRig Rig, AnnouncingHelper Helper) Setup(
        ExpectationPolicy? policy = null,
        IEnumerable<NatRule>? rules = null,
        ExpectationFlags flags = ExpectationFlags.None,
        ConntrackHelper? child = null,
        int sourcePrefix = -1,
        ushort? sourcePort = null,
        int maxExpectations = 0)
    {
        var helper = new AnnouncingHelper(policy ?? Generous) { Flags = flags, ChildHelper = child, SourcePrefixLength = sourcePrefix, SourcePort = sourcePort };
        var rig = new RouterRig(rules, [new HelperBinding(helper, 17, ControlPort)], maxExpectations: maxExpectations);
        return (rig, helper);
    }

    /// <summary>Sends a control datagram from a client to the server; returns the master connection.</summary>
    private static Connection Announce(RouterRig rig, string client, ushort clientPort, string command)
    {
        var hop = rig.Out(UdpPacket(client, clientPort, Server, ControlPort, Ascii(command)));
        Assert.True(hop.Accepted, rig.DropSummary());
        AssertValid(hop.Packet);
        return hop.Connection!.Value;
    }

    private static Hop OpenFromServer(RouterRig rig, string to, ushort port, ushort from = 20) =>
        rig.In(TcpPacket(Server, from, to, port, Syn, seq: 777));

    [Fact]
    public void Expected_connection_is_related_expected_and_has_its_master()
    {
        var child = new ScriptedHelper((ref HelperContext _) => HelperVerdict.Accept, name: "child");
        var (rig, helper) = Setup(child: child);
        var master = Announce(rig, Client, 3000, "EXPECT 6001");

        Assert.Equal([(ExpectResult.Added, (ushort)6001)], helper.Results);
        Assert.Equal(1, rig.Engine.Expectations.Count);
        Assert.Equal(1, rig[EngineCounter.ExpectationsCreated]);
        var expectation = rig.Engine.Expectations.Entries().Single();
        Assert.Equal(master, expectation.Master);
        Assert.Equal(A(Client), expectation.Tuple.Destination);
        Assert.Equal((ushort)6001, expectation.Tuple.DestinationPort);
        Assert.Equal(6, expectation.Tuple.Protocol);
        Assert.False(expectation.FollowMasterNat);

        var syn = TcpPacket(Server, 20, Client, 6001, Syn, seq: 777);
        var hop = rig.In(syn);

        Assert.True(hop.Accepted);
        Assert.Equal(syn, hop.Packet);
        Assert.Equal(CtInfo.Related, hop.CtInfo);
        var conn = hop.Connection!;
        Assert.True(conn!.Value.HasStatus(ConnStatus.Expected));
        Assert.Equal(master, conn!.Value.Master);
        Assert.Same(child, conn!.Value.Helper);
        Assert.Equal(1, child.Calls);
        Assert.Equal(0, rig.Engine.Expectations.Count);
        Assert.Equal(1, rig[EngineCounter.ConnectionsExpected]);

        // Until it sees a reply, the expected connection stays RELATED; then it is established like any other.
        Assert.Equal(CtInfo.Related, rig.In(syn).CtInfo);
        Assert.Equal(CtInfo.EstablishedReply, rig.Forward(TcpPacket(Client, 6001, Server, 20, Syn | Ack, seq: 4000, ack: 778), Lan, Wan).CtInfo);
        Assert.Equal(CtInfo.Established, rig.In(TcpPacket(Server, 20, Client, 6001, Ack, seq: 778, ack: 4001)).CtInfo);

        // The expectation admitted one connection only.
        var second = OpenFromServer(rig, Client, 6001, from: 21);
        Assert.Equal(CtInfo.New, second.CtInfo);
        Assert.Null(second.Connection!.Value.Master);
        Assert.False(second.Connection!.Value.HasStatus(ConnStatus.Expected));
    }

    [Fact]
    public void Expectation_waits_for_the_announced_source_protocol_and_port()
    {
        var (rig, _) = Setup();
        Announce(rig, Client, 3000, "EXPECT 6001");

        Assert.Equal(CtInfo.New, rig.In(TcpPacket(Server2, 20, Client, 6001, Syn)).CtInfo); // another source
        Assert.Equal(CtInfo.New, rig.In(UdpPacket(Server, 20, Client, 6001, Ascii("x"))).CtInfo); // another protocol
        Assert.Equal(CtInfo.New, rig.In(TcpPacket(Server, 20, Client, 6002, Syn)).CtInfo); // another port
        Assert.Equal(1, rig.Engine.Expectations.Count);
        Assert.Equal(CtInfo.Related, OpenFromServer(rig, Client, 6001).CtInfo);
    }

    [Fact]
    public void Expectation_with_a_source_prefix_or_port_matches_accordingly()
    {
        var (rig, _) = Setup(sourcePrefix: 24, sourcePort: 20);
        Announce(rig, Client, 3000, "EXPECT 6001");

        Assert.Equal(CtInfo.New, rig.In(TcpPacket("192.0.3.80", 20, Client, 6001, Syn)).CtInfo); // outside the /24
        Assert.Equal(CtInfo.New, rig.In(TcpPacket(Server2, 21, Client, 6001, Syn)).CtInfo); // wrong source port
        Assert.Equal(CtInfo.Related, rig.In(TcpPacket(Server2, 20, Client, 6001, Syn)).CtInfo); // another host of the /24
    }

    [Fact]
    public void Expected_connection_follows_the_masters_nat()
    {
        var (rig, helper) = Setup(rules: [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }]);
        var master = Announce(rig, Client, 3000, "EXPECT 6001");
        Assert.True(master.IsNatted);
        Assert.Equal([(ExpectResult.Added, (ushort)6001)], helper.Results);

        var expectation = rig.Engine.Expectations.Entries().Single();
        Assert.True(expectation.FollowMasterNat);
        Assert.Equal(A(WanAddress), expectation.Tuple.Destination);
        Assert.Equal((ushort)6001, expectation.SavedPort);

        var hop = OpenFromServer(rig, WanAddress, 6001);
        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, hop.CtInfo);
        Assert.Equal(master, hop.Connection!.Value.Master);
        AssertValid(hop.Packet);
        Assert.Equal(Ip(Client), Destination(hop.AfterPreRouting)); // before routing, as DNAT
        Assert.Equal((ushort)6001, DestinationPort(hop.Packet));
        Assert.Equal(Ip(Server), Source(hop.Packet));
        Assert.Equal((ushort)20, SourcePort(hop.Packet));

        var synAck = rig.PassOut(TcpPacket(Client, 6001, Server, 20, Syn | Ack, seq: 4000, ack: 778));
        Assert.Equal(Ip(WanAddress), Source(synAck));
        Assert.Equal((ushort)6001, SourcePort(synAck));
    }

    [Fact]
    public void Nat_moves_the_port_of_a_clashing_expectation_and_writes_it_back()
    {
        var (rig, helper) = Setup(rules: [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }]);
        Announce(rig, Client, 3000, "EXPECT 6001");

        var hop = rig.Out(UdpPacket(Client2, 3000, Server, ControlPort, Ascii("EXPECT 6001")));
        Assert.True(hop.Accepted, rig.DropSummary());

        Assert.Equal([(ExpectResult.Added, (ushort)6001), (ExpectResult.Added, (ushort)6002)], helper.Results);
        Assert.Equal(2, rig.Engine.Expectations.Count);
        AssertValid(hop.Packet);
        Assert.Equal("EXPECT 6002", PayloadText(hop.Packet)); // what the server is told
        Assert.Equal(1, rig[EngineCounter.PayloadRewrites]);

        var toSecond = OpenFromServer(rig, WanAddress, 6002);
        Assert.Equal(CtInfo.Related, toSecond.CtInfo);
        Assert.Equal(Ip(Client2), Destination(toSecond.Packet));
        Assert.Equal((ushort)6001, DestinationPort(toSecond.Packet)); // the port the client announced

        var toFirst = OpenFromServer(rig, WanAddress, 6001);
        Assert.Equal(CtInfo.Related, toFirst.CtInfo);
        Assert.Equal(Ip(Client), Destination(toFirst.Packet));
        Assert.Equal((ushort)6001, DestinationPort(toFirst.Packet));

        var synAck = rig.PassOut(TcpPacket(Client2, 6001, Server, 20, Syn | Ack, seq: 4000, ack: 778));
        Assert.Equal(Ip(WanAddress), Source(synAck));
        Assert.Equal((ushort)6002, SourcePort(synAck));
    }

    [Fact]
    public void A_moved_port_never_replaces_another_expectation_of_the_same_master()
    {
        // One master announces 6001 and 6002, another then announces the same two: its 6001 moves up, and must skip
        // 6002 (expected by the first master) and the port its own 6001 just took, rather than replace it.
        var (rig, helper) = Setup(rules: [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }]);
        Announce(rig, Client, 3000, "EXPECT 6001");
        Announce(rig, Client, 3000, "EXPECT 6002");
        Announce(rig, Client2, 3000, "EXPECT 6001");
        Announce(rig, Client2, 3000, "EXPECT 6002");

        Assert.Equal([6001, 6002, 6003, 6004], helper.Results.Select(r => (int)r.Port));
        Assert.All(helper.Results, r => Assert.Equal(ExpectResult.Added, r.Result));
        Assert.Equal(4, rig.Engine.Expectations.Count);
        Assert.Equal(Ip(Client2), Destination(OpenFromServer(rig, WanAddress, 6003).Packet));
        Assert.Equal(Ip(Client2), Destination(OpenFromServer(rig, WanAddress, 6004).Packet));
    }

    [Fact]
    public void Max_expected_evicts_the_masters_oldest()
    {
        var (rig, helper) = Setup(policy: new ExpectationPolicy(2, TimeSpan.FromSeconds(60)));
        Announce(rig, Client, 3000, "EXPECT 6001");
        Announce(rig, Client, 3000, "EXPECT 6002");
        Announce(rig, Client, 3000, "EXPECT 6003");

        Assert.All(helper.Results, r => Assert.Equal(ExpectResult.Added, r.Result));
        Assert.Equal(2, rig.Engine.Expectations.Count);
        Assert.Equal(CtInfo.New, OpenFromServer(rig, Client, 6001).CtInfo);
        Assert.Equal(CtInfo.Related, OpenFromServer(rig, Client, 6002).CtInfo);
        Assert.Equal(CtInfo.Related, OpenFromServer(rig, Client, 6003).CtInfo);
    }

    [Fact]
    public void Max_expected_counts_per_master_and_per_class()
    {
        var (rig, _) = Setup(policy: new ExpectationPolicy(1, TimeSpan.FromSeconds(60)));
        Announce(rig, Client, 3000, "EXPECT 6001 0");
        Announce(rig, Client, 3000, "EXPECT 6002 1");
        Announce(rig, Client, 3001, "EXPECT 6003 0");

        Assert.Equal(3, rig.Engine.Expectations.Count);
        Assert.Equal(CtInfo.Related, OpenFromServer(rig, Client, 6001).CtInfo);
        Assert.Equal(CtInfo.Related, OpenFromServer(rig, Client, 6002).CtInfo);
        Assert.Equal(CtInfo.Related, OpenFromServer(rig, Client, 6003).CtInfo);
    }

    [Fact]
    public void Clash_with_another_masters_expectation_is_refused()
    {
        var (rig, helper) = Setup();
        var first = Announce(rig, Client, 3000, "EXPECT 6001");
        var second = Announce(rig, Client, 3001, "EXPECT 6001");
        Assert.NotEqual(first, second);

        Assert.Equal(ExpectResult.Added, helper.Results[0].Result);
        Assert.Equal(ExpectResult.Clash, helper.Results[1].Result);
        Assert.Equal(1, rig.Engine.Expectations.Count);
        Assert.Equal(1, rig[EngineCounter.ExpectationsCreated]);
        Assert.Equal(1, rig[EngineCounter.ExpectationsFailed]);
        Assert.Equal(1, rig[EngineCounter.HelperExpectationFailed]);

        Assert.Equal(first, OpenFromServer(rig, Client, 6001).Connection!.Value.Master);
    }

    [Fact]
    public void Same_master_announcing_again_replaces_its_expectation()
    {
        var (rig, helper) = Setup(policy: new ExpectationPolicy(1, TimeSpan.FromSeconds(60)));
        Announce(rig, Client, 3000, "EXPECT 6001");
        rig.Clock.Advance(TimeSpan.FromSeconds(50));
        Announce(rig, Client, 3000, "EXPECT 6001");

        Assert.All(helper.Results, r => Assert.Equal(ExpectResult.Added, r.Result));
        Assert.Equal(1, rig.Engine.Expectations.Count);

        // The replacement runs from its own registration.
        rig.Clock.Advance(TimeSpan.FromSeconds(50));
        Assert.Equal(CtInfo.Related, OpenFromServer(rig, Client, 6001).CtInfo);
    }

    [Fact]
    public void Expectations_that_need_different_source_ports_do_not_clash()
    {
        // Three control ports, three helpers: two insist on distinct source ports, the third accepts any.
        var from20 = new AnnouncingHelper(Generous) { SourcePort = 20 };
        var from21 = new AnnouncingHelper(Generous) { SourcePort = 21 };
        var fromAny = new AnnouncingHelper(Generous);
        var rig = new RouterRig(helpers:
        [
            new HelperBinding(from20, 17, ControlPort), new HelperBinding(from21, 17, ControlPort + 1), new HelperBinding(fromAny, 17, ControlPort + 2),
        ]);
        var a = rig.PassOut(UdpPacket(Client, 3000, Server, ControlPort, Ascii("EXPECT 6001")));
        var b = rig.PassOut(UdpPacket(Client, 3001, Server, ControlPort + 1, Ascii("EXPECT 6001")));
        rig.PassOut(UdpPacket(Client, 3002, Server, ControlPort + 2, Ascii("EXPECT 6001")));

        Assert.Equal(ExpectResult.Added, from20.Results.Single().Result);
        Assert.Equal(ExpectResult.Added, from21.Results.Single().Result);
        Assert.Equal(ExpectResult.Clash, fromAny.Results.Single().Result); // any source port overlaps both
        Assert.Equal(2, rig.Engine.Expectations.Count);

        var via21 = rig.In(TcpPacket(Server, 21, Client, 6001, Syn));
        var via20 = rig.In(TcpPacket(Server, 20, Client, 6001, Syn));
        Assert.Equal((ushort)3001, via21.Connection!.Value.Master!.Value.Original.SourcePort);
        Assert.Equal((ushort)3000, via20.Connection!.Value.Master!.Value.Original.SourcePort);
        Assert.NotEmpty(a);
        Assert.NotEmpty(b);
    }

    [Fact]
    public void Expectation_lapses_after_its_timeout()
    {
        var (rig, _) = Setup(policy: new ExpectationPolicy(4, TimeSpan.FromSeconds(10)));
        Announce(rig, Client, 3000, "EXPECT 6001");
        Announce(rig, Client, 3000, "EXPECT 6002");

        rig.Clock.Advance(TimeSpan.FromSeconds(9));
        Assert.Equal(CtInfo.Related, OpenFromServer(rig, Client, 6001).CtInfo);

        rig.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(CtInfo.New, OpenFromServer(rig, Client, 6002).CtInfo);

        rig.Engine.CollectGarbage(rig.Engine.Connections.Capacity);
        Assert.Equal(0, rig.Engine.Expectations.Count);
        Assert.Equal(1, rig[EngineCounter.ExpectationsExpired]);
    }

    [Fact]
    public void Lapsed_expectation_does_not_block_a_new_one()
    {
        var (rig, helper) = Setup(policy: new ExpectationPolicy(4, TimeSpan.FromSeconds(10)));
        Announce(rig, Client, 3000, "EXPECT 6001");
        rig.Clock.Advance(TimeSpan.FromSeconds(11));

        var second = Announce(rig, Client, 3001, "EXPECT 6001");
        Assert.Equal(ExpectResult.Added, helper.Results[1].Result);
        Assert.Equal(second, OpenFromServer(rig, Client, 6001).Connection!.Value.Master);
    }

    [Fact]
    public void Lapsed_expectations_do_not_fill_the_table()
    {
        // The table's own comment: a lapsed expectation "must not block a new one". Nor should it count against the global limit.
        var (rig, helper) = Setup(policy: new ExpectationPolicy(4, TimeSpan.FromSeconds(10)), maxExpectations: 1);
        Announce(rig, Client, 3000, "EXPECT 6001");
        rig.Clock.Advance(TimeSpan.FromSeconds(11));

        Announce(rig, Client, 3001, "EXPECT 6002");

        Assert.Equal(ExpectResult.Added, helper.Results[1].Result);
        Assert.Equal(CtInfo.Related, OpenFromServer(rig, Client, 6002).CtInfo);
    }

    [Fact]
    public void Expectation_announced_by_a_dnat_server_follows_the_masters_nat()
    {
        // A passive-mode announcement: the server behind DNAT tells the remote client where to connect; the client
        // connects to the public address and must reach the server.
        var helper = new AnnouncingHelper(Generous);
        var rig = new RouterRig(
            [new NatRule { Action = NatAction.Dnat, InInterface = Wan, Protocol = 17, DestinationPortMin = 6000, DestinationPortMax = 6000, Range = Range(InternalServer, minPort: ControlPort) }],
            [new HelperBinding(helper, 17, 6000)]);
        var request = rig.PassIn(UdpPacket(Remote, 3000, WanAddress, 6000, Ascii("hello")));
        Assert.Equal(Ip(InternalServer), Destination(request));
        Assert.Equal((ushort)ControlPort, DestinationPort(request));

        var answer = rig.PassOut(UdpPacket(InternalServer, ControlPort, Remote, 3000, Ascii("EXPECT 7001")));
        Assert.Equal(Ip(WanAddress), Source(answer));
        Assert.Equal([(ExpectResult.Added, (ushort)7001)], helper.Results);
        var expectation = rig.Engine.Expectations.Entries().Single();
        Assert.Equal(A(Remote), expectation.Tuple.Source);
        Assert.Equal(A(WanAddress), expectation.Tuple.Destination);

        var hop = rig.In(TcpPacket(Remote, 45000, WanAddress, 7001, Syn, seq: 1));
        Assert.Equal(CtInfo.Related, hop.CtInfo);
        AssertValid(hop.Packet);
        Assert.Equal(Ip(InternalServer), Destination(hop.Packet));
        Assert.Equal((ushort)7001, DestinationPort(hop.Packet));
        Assert.Equal(Ip(Remote), Source(hop.Packet));

        var synAck = rig.PassOut(TcpPacket(InternalServer, 7001, Remote, 45000, Syn | Ack, seq: 9, ack: 2));
        Assert.Equal(Ip(WanAddress), Source(synAck));
        Assert.Equal((ushort)7001, SourcePort(synAck));
    }

    [Fact]
    public void Destroying_the_master_takes_its_expectations_with_it()
    {
        var (rig, _) = Setup();
        var master = Announce(rig, Client, 3000, "EXPECT 6001");
        Announce(rig, Client, 3000, "EXPECT 6002");
        var other = Announce(rig, Client, 3001, "EXPECT 6003");
        Assert.Equal(3, rig.Engine.Expectations.Count);

        rig.Engine.Destroy(master);

        Assert.Equal(1, rig.Engine.Expectations.Count);
        Assert.Equal(other, rig.Engine.Expectations.Entries().Single().Master);
        Assert.Equal(CtInfo.New, OpenFromServer(rig, Client, 6001).CtInfo);
        Assert.Equal(CtInfo.New, OpenFromServer(rig, Client, 6002).CtInfo);
        Assert.Equal(CtInfo.Related, OpenFromServer(rig, Client, 6003).CtInfo);
    }

    [Fact]
    public void Expectation_expiry_looks_at_one_bucket_per_unit_of_budget_and_resumes_where_it_stopped()
    {
        var (rig, _) = Setup(policy: new ExpectationPolicy(64, TimeSpan.FromSeconds(10)));
        for (int port = 6001; port <= 6032; port++)
        {
            Announce(rig, Client, 3000, $"EXPECT {port}");
        }

        var table = rig.Engine.Expectations;
        Assert.Equal(32, table.Count);
        rig.Clock.Advance(TimeSpan.FromSeconds(11));

        // One bucket per call: the lapsed expectations go a few at a time, and one pass over the buckets takes them all.
        int calls = 0;
        int mostAtOnce = 0;
        while (table.Count > 0 && calls < table.BucketCount)
        {
            int before = table.Count;
            rig.Engine.CollectGarbage(1);
            mostAtOnce = Math.Max(mostAtOnce, before - table.Count);
            calls++;
        }

        Assert.Equal(0, table.Count);
        Assert.InRange(mostAtOnce, 1, 31);
        Assert.True(calls > 1, "all expectations went in one call of budget 1");
        Assert.Equal(32, rig[EngineCounter.ExpectationsExpired]);
    }

    [Fact]
    public void Master_expiring_takes_its_expectations_with_it()
    {
        var (rig, _) = Setup(policy: new ExpectationPolicy(4, TimeSpan.FromHours(1)));
        Announce(rig, Client, 3000, "EXPECT 6001");

        rig.Clock.Advance(rig.Engine.Options.UdpTimeout + TimeSpan.FromSeconds(1));
        rig.Engine.CollectGarbage(rig.Engine.Connections.Capacity);

        Assert.Equal(0, rig.Engine.Expectations.Count);
        Assert.Equal(CtInfo.New, OpenFromServer(rig, Client, 6001).CtInfo);
    }

    [Fact]
    public void Permanent_expectation_survives_a_match()
    {
        var (rig, _) = Setup(flags: ExpectationFlags.Permanent);
        var master = Announce(rig, Client, 3000, "EXPECT 6001");

        var a = OpenFromServer(rig, Client, 6001, from: 20);
        var b = OpenFromServer(rig, Client, 6001, from: 21);

        Assert.Equal(CtInfo.Related, a.CtInfo);
        Assert.Equal(CtInfo.Related, b.CtInfo);
        Assert.NotEqual(a.Connection, b.Connection);
        Assert.Equal(master, b.Connection!.Value.Master);
        Assert.Equal(1, rig.Engine.Expectations.Count);
        Assert.Equal(2, rig[EngineCounter.ConnectionsExpected]);

        rig.Engine.Destroy(master);
        Assert.Equal(0, rig.Engine.Expectations.Count);
        Assert.Equal(CtInfo.New, OpenFromServer(rig, Client, 6001, from: 22).CtInfo);
    }

    [Fact]
    public void Inactive_expectation_is_not_matched()
    {
        var (rig, _) = Setup(flags: ExpectationFlags.Inactive);
        Announce(rig, Client, 3000, "EXPECT 6001");
        Assert.Equal(1, rig.Engine.Expectations.Count);
        Assert.Equal(CtInfo.New, OpenFromServer(rig, Client, 6001).CtInfo);
        Assert.Equal(1, rig.Engine.Expectations.Count);
    }

    [Fact]
    public void Global_limit_refuses_with_table_full()
    {
        var (rig, helper) = Setup(maxExpectations: 2);
        Announce(rig, Client, 3000, "EXPECT 6001");
        Announce(rig, Client, 3001, "EXPECT 6002");
        Announce(rig, Client, 3002, "EXPECT 6003");

        Assert.Equal(ExpectResult.TableFull, helper.Results[2].Result);
        Assert.Equal(2, rig.Engine.Expectations.Count);
        Assert.Equal(1, rig[EngineCounter.ExpectationsFailed]);
    }

    [Fact]
    public void Expectations_of_a_master_dropped_before_confirmation_are_withdrawn()
    {
        // The helper announces, then asks for a rewrite the buffer has no room for: the first packet is dropped,
        // its connection never confirmed, and the expectation it registered must not outlive it.
        var helper = new ScriptedHelper((ref HelperContext context) =>
        {
            var request = new ExpectationRequest
            {
                Protocol = 6,
                Source = context.OtherTuple.Source,
                SourcePrefixLength = 32,
                Destination = context.OtherTuple.Destination,
                DestinationPort = 6001,
            };
            Assert.Equal(ExpectResult.Added, context.Expect(ref request));
            Assert.True(context.Rewrite(0, 1, Ascii("longer")));
            return HelperVerdict.Accept;
        });
        var rig = new RouterRig(helpers: [new HelperBinding(helper, 17, ControlPort)]);
        var packet = UdpPacket(Client, 3000, Server, ControlPort, Ascii("x"));

        var hop = rig.ForwardInBuffer(packet, packet.Length, Lan, Wan);

        Assert.Equal(Verdict.Drop, hop.Verdict);
        Assert.Equal(1, rig[EngineCounter.DroppedRewriteFailed]);
        Assert.Equal(0, rig.Engine.Connections.Count);
        Assert.Equal(0, rig.Engine.Expectations.Count);
        Assert.Equal(CtInfo.New, OpenFromServer(rig, Client, 6001).CtInfo);
    }
}
