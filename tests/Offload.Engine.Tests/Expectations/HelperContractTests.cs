using Offload.Engine.Conntrack;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Expectations;

/// <summary>
/// The parts of the helper contract beyond announcing: how an expected connection is translated (following the
/// master, not at all, or redirected), the master's helper asked when one arrives, and a helper that fails being
/// disabled while its connections go on with plain tracking.
/// </summary>
public class HelperContractTests
{
    private const ushort ControlPort = 5000;

    private static readonly ExpectationPolicy Generous = new(8, TimeSpan.FromSeconds(60));

    private static readonly NatRule[] Masquerade = [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }];

    private static Connection Announce(RouterRig rig, string command)
    {
        var hop = rig.Out(UdpPacket(Client, 3000, Server, ControlPort, Ascii(command)));
        Assert.True(hop.Accepted, rig.DropSummary());
        return hop.Connection!.Value;
    }

    [Fact]
    public void An_expectation_with_nat_none_is_not_translated_even_when_its_master_is()
    {
        var helper = new AnnouncingHelper(Generous) { Nat = ExpectationNat.None };
        var rig = new RouterRig(Masquerade, [new HelperBinding(helper, 17, ControlPort)]);
        var master = Announce(rig, "EXPECT 6001");
        Assert.True(master.IsNatted);

        var expectation = rig.Engine.Expectations.Entries().Single();
        Assert.False(expectation.FollowMasterNat);
        Assert.Equal(ExpectationNat.None, expectation.Nat);

        // It waits at the address announced (the masqueraded one) and is let through untranslated.
        var hop = rig.In(TcpPacket(Server, 20, WanAddress, 6001, Syn, seq: 777));
        Assert.Equal(CtInfo.Related, hop.CtInfo);
        Assert.False(hop.Connection!.Value.IsNatted);
        Assert.Equal(Ip(WanAddress), Destination(hop.Packet));
    }

    [Fact]
    public void A_redirected_expectation_sends_the_connection_where_the_helper_said()
    {
        var helper = new AnnouncingHelper(Generous) { Nat = ExpectationNat.Redirect, RedirectTo = (A(Client2), 7000) };
        var rig = new RouterRig(Masquerade, [new HelperBinding(helper, 17, ControlPort)]);
        Announce(rig, "EXPECT 6001");

        var hop = rig.In(TcpPacket(Server, 20, WanAddress, 6001, Syn, seq: 777));
        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, hop.CtInfo);
        AssertValid(hop.Packet);
        Assert.Equal(Ip(Client2), Destination(hop.Packet));
        Assert.Equal((ushort)7000, DestinationPort(hop.Packet));

        // The answer leaves as if from the address and port the peer connected to.
        var synAck = rig.PassOut(TcpPacket(Client2, 7000, Server, 20, Syn | Ack, seq: 4000, ack: 778));
        Assert.Equal(Ip(WanAddress), Source(synAck));
        Assert.Equal((ushort)6001, SourcePort(synAck));
    }

    [Fact]
    public void The_masters_helper_is_told_of_an_expected_connection_and_may_refuse_it()
    {
        var helper = new AnnouncingHelper(Generous) { ExpectedVerdict = HelperVerdict.Drop };
        var rig = new RouterRig(null, [new HelperBinding(helper, 17, ControlPort)]);
        var master = Announce(rig, "EXPECT 6001 3");
        master.EnsureExtras().HelperState = "master state";

        var hop = rig.In(TcpPacket(Server, 20, Client, 6001, Syn, seq: 777));

        Assert.False(hop.Accepted);
        Assert.Equal(1, rig[EngineCounter.DroppedByHelper]);
        var arrived = Assert.Single(helper.Arrived);
        Assert.Equal((ushort)6001, arrived.Tuple.DestinationPort);
        Assert.Equal(master.OriginalTuple, arrived.MasterTuple);
        Assert.Equal(3, arrived.Class);
        Assert.Equal("master state", arrived.MasterState);
        Assert.Equal(1, rig.Engine.Connections.Count); // the master only
    }

    [Fact]
    public void Expectations_announced_by_a_dropped_packet_are_withdrawn()
    {
        var results = new List<ExpectResult>();
        var helper = new ScriptedHelper((ref HelperContext context) =>
        {
            var request = new ExpectationRequest
            {
                Protocol = IpProtocol.Tcp,
                Source = context.OtherTuple.Source,
                SourcePrefixLength = 32,
                Destination = context.OtherTuple.Destination,
                DestinationPort = 6001,
            };
            results.Add(context.Expect(ref request));
            return context.Payload.StartsWith("keep"u8) ? HelperVerdict.Accept : HelperVerdict.Drop;
        });
        var rig = new RouterRig(Masquerade, [new HelperBinding(helper, 17, ControlPort)]);

        Assert.False(rig.Out(UdpPacket(Client, 3000, Server, ControlPort, Ascii("drop"))).Accepted);
        Assert.Equal([ExpectResult.Added], results);
        Assert.Equal(0, rig.Engine.Expectations.Count);
        Assert.Equal(CtInfo.New, rig.In(TcpPacket(Server, 20, WanAddress, 6001, Syn)).CtInfo);

        Assert.True(rig.Out(UdpPacket(Client, 3000, Server, ControlPort, Ascii("keep"))).Accepted);
        Assert.Equal(1, rig.Engine.Expectations.Count);
    }

    [Fact]
    public void A_helper_that_throws_is_disabled_and_its_connections_go_on_with_plain_tracking()
    {
        var observer = new RecordingObserver();
        int calls = 0;
        var faulty = new ScriptedHelper((ref HelperContext context) =>
        {
            calls++;
            context.Rewrite(0, 1, "X"u8);
            throw new InvalidOperationException("broken helper");
        });
        var rig = new RouterRig(Masquerade, [new HelperBinding(faulty, 17, ControlPort)]);
        rig.Engine.Observer = observer;

        var payload = Ascii("hello");
        var first = rig.Out(UdpPacket(Client, 3000, Server, ControlPort, payload));

        // The packet leaves translated but untouched by the helper's half-done rewrite.
        Assert.True(first.Accepted, rig.DropSummary());
        AssertValid(first.Packet);
        Assert.Equal(Ip(WanAddress), Source(first.Packet));
        Assert.True(Payload(first.Packet).SequenceEqual(payload));
        Assert.Equal("InvalidOperationException: broken helper", ConntrackEngine.DisabledReason(faulty));
        Assert.Equal(1, rig[EngineCounter.HelperFailures]);
        Assert.Same(faulty, Assert.Single(observer.Disabled));

        // Later packets of the connection, and new connections to the port, are tracked without the helper.
        Assert.True(rig.Out(UdpPacket(Client, 3000, Server, ControlPort, payload)).Accepted);
        var other = rig.Out(UdpPacket(Client2, 3001, Server, ControlPort, payload));
        Assert.True(other.Accepted);
        Assert.Null(other.Connection!.Value.Helper);
        Assert.Equal(1, calls);

        // Enabled again (its plugin replaced, say), it binds new connections again.
        ConntrackEngine.Enable(faulty);
        Assert.Same(faulty, rig.Out(UdpPacket(Client2, 3002, Server, ControlPort, payload)).Connection!.Value.Helper);
    }

    [Fact]
    public void Replacing_a_helper_moves_connections_and_expectations_and_drops_the_old_state()
    {
        var old = new AnnouncingHelper(Generous);
        var child = new ScriptedHelper((ref HelperContext _) => HelperVerdict.Accept, name: "child");
        var announcing = new AnnouncingHelper(Generous) { ChildHelper = child };
        var rig = new RouterRig(null, [new HelperBinding(announcing, 17, ControlPort)]);
        var master = Announce(rig, "EXPECT 6001");
        master.EnsureExtras().HelperState = new object();

        var replacement = new ScriptedHelper((ref HelperContext _) => HelperVerdict.Accept, name: "announce");
        Assert.Equal(1, rig.Engine.ReplaceHelper(announcing, replacement));
        Assert.Same(replacement, master.Helper);
        Assert.Null(master.Extras!.HelperState);
        Assert.Equal(1, rig.Engine.Expectations.Count); // kept: the new version would announce the same

        var childReplacement = new ScriptedHelper((ref HelperContext _) => HelperVerdict.Accept, name: "child");
        rig.Engine.ReplaceHelper(child, childReplacement);
        var hop = rig.In(TcpPacket(Server, 20, Client, 6001, Syn, seq: 777));
        Assert.Same(childReplacement, hop.Connection!.Value.Helper);

        // Unloading detaches: no helper, no status bit, and the expectations it announced are withdrawn.
        Announce(rig, "EXPECT 6002");
        Assert.Equal(1, rig.Engine.ReplaceHelper(replacement, null));
        Assert.Null(master.Helper);
        Assert.False(master.HasStatus(ConnStatus.Helper));
        Assert.Equal(0, rig.Engine.Expectations.Count);
        Assert.Equal(0, rig.Engine.ReplaceHelper(old, null));
    }

    [Fact]
    public void An_expected_connection_dropped_before_confirmation_is_reported_gone()
    {
        // The observer (the daemon's ipset steering) heard the expectation fulfilled; it must hear the connection go.
        var observer = new RecordingObserver();
        var child = new ScriptedHelper((ref HelperContext _) => HelperVerdict.Drop, name: "child");
        var helper = new AnnouncingHelper(Generous) { ChildHelper = child };
        var rig = new RouterRig(null, [new HelperBinding(helper, 17, ControlPort)]);
        rig.Engine.Observer = observer;
        Announce(rig, "EXPECT 6001");

        var hop = rig.In(TcpPacket(Server, 20, Client, 6001, Syn, seq: 777));

        Assert.False(hop.Accepted);
        var fulfilled = Assert.Single(observer.Fulfilled);
        Assert.Equal([fulfilled], observer.Destroyed);
        Assert.Equal(1, rig.Engine.Connections.Count); // the master only
    }

    [Fact]
    public void A_helper_may_refresh_its_connections_timeout_and_look_at_its_state_without_creating_it()
    {
        bool? hadState = null;
        var helper = new ScriptedHelper((ref HelperContext context) =>
        {
            hadState = context.TryGetState<List<int>>(out var seen);
            if (context.Payload.StartsWith("remember"u8))
            {
                context.GetState<List<int>>().Add(1);
            }

            context.RefreshTimeout(TimeSpan.FromMinutes(5));
            return HelperVerdict.Accept;
        });
        var rig = new RouterRig(null, [new HelperBinding(helper, 17, ControlPort)]);

        var conn = rig.Out(UdpPacket(Client, 3000, Server, ControlPort, Ascii("hello"))).Connection!;
        Assert.False(hadState);
        Assert.Null(conn!.Value.Extras?.HelperState);
        Assert.Equal(rig.Clock.NowNanoseconds + 300_000_000_000L, conn!.Value.ExpiresAtNanoseconds); // not UDP's 30 s

        rig.Out(UdpPacket(Client, 3000, Server, ControlPort, Ascii("remember")));
        rig.Out(UdpPacket(Client, 3000, Server, ControlPort, Ascii("again")));
        Assert.True(hadState);
    }

    private sealed class RecordingObserver : IConntrackObserver
    {
        public List<ConntrackHelper> Disabled { get; } = [];

        public List<Connection> Fulfilled { get; } = [];

        public List<Connection> Destroyed { get; } = [];

        public void HelperDisabled(ConntrackHelper helper, Exception error) => Disabled.Add(helper);

        public void ExpectationFulfilled(Offload.Engine.Expectations.Expectation expectation, Connection connection) => Fulfilled.Add(connection);

        public void ConnectionDestroyed(Connection connection) => Destroyed.Add(connection);
    }
}
