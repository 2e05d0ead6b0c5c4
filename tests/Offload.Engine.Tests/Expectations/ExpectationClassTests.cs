using System.Buffers.Text;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Expectations;

/// <summary>
/// Expectation classes as the kernel's nf_conntrack_expect_policy table gives them to a helper: each class has its own
/// limit per master (the master's oldest of that class is evicted, never one of another class) and its own timeout;
/// a class the helper did not declare is a helper bug. Pairs on consecutive ports (the kernel's nf_nat_sdp_media) are
/// registered both or neither, and moved two ports at a time at a translated address; a master's expectations can be
/// counted and withdrawn one by one.
/// </summary>
public class ExpectationClassTests
{
    private const ushort ControlPort = 5000;

    private static readonly ExpectationClass[] Table =
    [
        new("control", 1, TimeSpan.FromSeconds(10)),
        new("media", 3, TimeSpan.FromSeconds(60)),
    ];

    /// <summary>"E class port" expects one connection, "P class port" a pair, "U class port" withdraws one, "D..." as E then drops.</summary>
    private sealed class ClassedHelper(IReadOnlyList<ExpectationClass> classes) : ConntrackHelper("classed", classes)
    {
        public List<(ExpectResult Result, ushort Port)> Results { get; } = [];

        public List<int> Counts { get; } = [];

        public List<bool> Withdrawn { get; } = [];

        public override HelperVerdict Help(ref HelperContext context)
        {
            var p = context.Payload;
            if (p.Length < 5 || !Utf8Parser.TryParse(p[2..], out int expectClass, out int used) || !Utf8Parser.TryParse(p[(3 + used)..], out ushort port, out _))
            {
                return HelperVerdict.Accept;
            }

            var request = context.FromPeer(IpProtocol.Udp, port);
            request.Class = expectClass;
            switch (p[0])
            {
                case (byte)'E' or (byte)'D':
                    Results.Add((context.Expect(ref request), request.DestinationPort));
                    break;
                case (byte)'P':
                    Results.Add((context.ExpectPair(ref request), request.DestinationPort));
                    break;
                case (byte)'U':
                    Withdrawn.Add(context.Unexpect(in request));
                    break;
            }

            Counts.Add(context.CountExpected(expectClass));
            return p[0] == (byte)'D' ? HelperVerdict.Drop : HelperVerdict.Accept;
        }
    }

    private static (RouterRig Rig, ClassedHelper Helper) Setup(bool masquerade = false, (ushort, ushort) natPorts = default)
    {
        var helper = new ClassedHelper(Table);
        NatRule[] rules = masquerade ? [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }] : [];
        return (new RouterRig(rules, [new HelperBinding(helper, 17, ControlPort)], natPorts: natPorts), helper);
    }

    private static Hop Say(RouterRig rig, string command, string client = Client, ushort clientPort = 3000) =>
        rig.Out(UdpPacket(client, clientPort, Server, ControlPort, Ascii(command)));

    private static ushort[] PortsOf(RouterRig rig, int expectClass) =>
        [.. rig.Expectations.Where(e => e.Class == expectClass).Select(e => e.Tuple.DestinationPort).Order()];

    [Fact]
    public void Each_class_keeps_its_own_limit_and_the_oldest_of_that_class_is_evicted()
    {
        var (rig, helper) = Setup();
        Say(rig, "E 1 6000");
        Say(rig, "E 1 6002");
        Say(rig, "E 0 7000");
        Say(rig, "E 1 6004");
        Assert.Equal([6000, 6002, 6004], PortsOf(rig, 1));
        Assert.Equal([7000], PortsOf(rig, 0));

        Say(rig, "E 0 7002"); // control holds one: 7000 goes, media untouched
        Assert.Equal([7002], PortsOf(rig, 0));
        Assert.Equal([6000, 6002, 6004], PortsOf(rig, 1));

        Say(rig, "E 1 6006"); // media holds three: the oldest media (6000) goes, control untouched
        Assert.Equal([6002, 6004, 6006], PortsOf(rig, 1));
        Assert.Equal([7002], PortsOf(rig, 0));
        Assert.All(helper.Results, r => Assert.Equal(ExpectResult.Added, r.Result));
        Assert.Equal([1, 2, 1, 3, 1, 3], helper.Counts);
    }

    [Fact]
    public void Each_class_gives_its_expectations_its_own_timeout()
    {
        var (rig, helper) = Setup();
        Say(rig, "E 0 7000");
        Say(rig, "E 1 6000");
        rig.Clock.Advance(TimeSpan.FromSeconds(11));

        // The control expectation (10 s) has lapsed; the media one (60 s) still admits its connection.
        Assert.Equal(ExpectResult.Added, helper.Results[1].Result);
        Assert.Equal(CtInfo.New, rig.In(UdpPacket(Server, 9000, Client, 7000, Ascii("late"))).CtInfo);
        Assert.Equal(CtInfo.Related, rig.In(UdpPacket(Server, 9000, Client, 6000, Ascii("rtp"))).CtInfo);
        Say(rig, "N 0 0");
        Assert.Equal(0, helper.Counts[^1]); // lapsed ones are not counted
    }

    [Fact]
    public void A_class_the_helper_did_not_declare_disables_it_and_registers_nothing()
    {
        var (rig, _) = Setup();
        var hop = Say(rig, "E 2 6000");
        Assert.True(hop.Accepted); // a failed helper's packet goes on untouched
        Assert.Equal(1, rig[EngineCounter.HelperFailures]);
        Assert.Empty(rig.Expectations);
    }

    [Fact]
    public void A_helper_with_one_policy_shares_it_between_every_class_number()
    {
        var helper = new ScriptedHelper((ref HelperContext _) => HelperVerdict.Accept, new ExpectationPolicy(2, TimeSpan.FromSeconds(30)));
        Assert.Empty(helper.ExpectationClasses);
        Assert.Equal(new ExpectationPolicy(2, TimeSpan.FromSeconds(30)), helper.PolicyOf(0));
        Assert.Equal(new ExpectationPolicy(2, TimeSpan.FromSeconds(30)), helper.PolicyOf(7));
        Assert.Equal("7", helper.ClassName(7));

        var classed = new ClassedHelper(Table);
        Assert.Equal(Table[0].Policy, classed.Policy);
        Assert.Equal(Table[1].Policy, classed.PolicyOf(1));
        Assert.Equal("media", classed.ClassName(1));
    }

    [Theory]
    [InlineData(0, "x", 1, 10)]
    [InlineData(1, "", 1, 10)]
    [InlineData(1, "x", 0, 10)]
    [InlineData(1, "x", 1, 0)]
    [InlineData(17, "x", 1, 10)]
    public void Classes_without_a_name_room_or_timeout_or_too_many_are_refused(int count, string name, int max, int seconds)
    {
        var classes = Enumerable.Repeat(new ExpectationClass(name, max, TimeSpan.FromSeconds(seconds)), count).ToArray();
        Assert.Throws<ArgumentOutOfRangeException>(() => new ClassedHelper(classes));
    }

    [Fact]
    public void A_pair_at_a_translated_address_moves_two_ports_at_a_time_and_each_half_reaches_its_own_port()
    {
        var (rig, helper) = Setup(masquerade: true);
        Say(rig, "P 1 6000", Client);
        Say(rig, "P 1 6000", Client2); // 6000 and 6001 are the first client's: the second gets 6002 and 6003
        Assert.Equal([(ExpectResult.Added, (ushort)6000), (ExpectResult.Added, (ushort)6002)], helper.Results);
        Assert.Equal([6000, 6001, 6002, 6003], PortsOf(rig, 1));

        var rtcp = rig.In(UdpPacket(Server, 9001, WanAddress, 6003, Ascii("rtcp")));
        Assert.Equal(CtInfo.Related, rtcp.CtInfo);
        Assert.Equal(Ip(Client2), Destination(rtcp.Packet));
        Assert.Equal(6001, DestinationPort(rtcp.Packet)); // the announced RTCP port behind the router
    }

    [Fact]
    public void A_pair_inside_the_nat_ports_stays_whole_in_the_range()
    {
        var (rig, helper) = Setup(masquerade: true, natPorts: (61000, 61003));
        Say(rig, "P 1 61002", Client);
        Say(rig, "P 1 61002", Client2);
        Say(rig, "P 1 61002", "192.168.1.12");
        Assert.Equal(
            [(ExpectResult.Added, (ushort)61002), (ExpectResult.Added, (ushort)61000), (ExpectResult.NoFreePort, (ushort)61002)],
            helper.Results);
        Assert.Equal(4, rig.Expectations.Count);
    }

    [Fact]
    public void A_pair_whose_second_half_clashes_is_withdrawn_whole()
    {
        var (rig, helper) = Setup();
        Say(rig, "E 1 6001", Client, 3000);
        Say(rig, "P 1 6000", Client, 3001); // another master; untranslated: only the announced pair is tried, and 6001 is taken
        Assert.Equal(ExpectResult.Clash, helper.Results[1].Result);
        Assert.Equal([6001], PortsOf(rig, 1));
        Assert.Single(rig.Expectations);
        Assert.Equal(1, rig[EngineCounter.ExpectationsFailed]);
    }

    [Fact]
    public void A_dropped_packet_takes_back_both_halves_of_its_pair()
    {
        var (rig, _) = Setup();
        var hop = rig.Out(UdpPacket(Client, 3000, Server, ControlPort, Ascii("P 1 6000")));
        Assert.True(hop.Accepted);
        Assert.Equal(2, rig.Expectations.Count);
        Assert.False(Say(rig, "D 0 7000").Accepted);
        Assert.Equal(2, rig.Expectations.Count); // the dropped call's own expectation went, the earlier pair stays
    }

    [Fact]
    public void One_expectation_can_be_withdrawn_by_what_was_asked()
    {
        var (rig, helper) = Setup();
        Say(rig, "P 1 6000");
        Say(rig, "U 1 6001");
        Say(rig, "U 1 6001");
        Say(rig, "U 0 6000"); // the same port in another class is another expectation
        Assert.Equal([true, false, false], helper.Withdrawn);
        Assert.Equal([6000], PortsOf(rig, 1));
        Assert.Equal([2, 1, 1, 0], helper.Counts);
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(true, false)]
    public void Expect_and_announce_rewrites_the_endpoint_as_registered_or_drops_and_withdraws_when_it_cannot(bool masquerade, bool formats)
    {
        var helper = new ScriptedHelper((ref HelperContext context) =>
        {
            var request = context.FromPeer(IpProtocol.Tcp, 6000);
            return context.ExpectAndAnnounce(
                ref request,
                5,
                4,
                formats,
                static (in ExpectationRequest registered, bool ok, Span<byte> text) =>
                    ok && Utf8Formatter.TryFormat(registered.DestinationPort, text, out int written) ? written : -1);
        });
        NatRule[] rules = masquerade ? [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }] : [];
        var rig = new RouterRig(rules, [new HelperBinding(helper, 17, ControlPort)]);
        var hop = rig.Out(UdpPacket(Client, 3000, Server, ControlPort, Ascii("PORT 6000")));

        Assert.Equal(formats, hop.Accepted);
        Assert.Equal(formats ? 1 : 0, rig.Expectations.Count); // a dropped announcement takes its expectation back
        Assert.Equal(formats ? 0 : 1, rig[EngineCounter.HelperRewriteFailed]);
        if (formats)
        {
            AssertValid(hop.Packet);
            Assert.Equal("PORT 6000", PayloadText(hop.Packet)); // untranslated: left as it was; translated: the same port, free
        }
    }
}
