using Offload.Engine.Conntrack;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Replication;
using Offload.Engine.Snapshot;
using Offload.Engine.Tests.Expectations;
using Offload.Sdk.Testing;
using Offload.Engine.Tests.SequenceAdjustment;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Engine.Tests.Support.MasqueradedTcp;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Replication;

/// <summary>
/// The active router's changes, collected as replication records and applied to the standby's engine: after a
/// failover the standby translates a connection's next packets with the same NAT port and sequence offsets, admits an
/// expected connection, forgets what the active node destroyed, hears of a TCP state change through the sweep, and
/// gets a whole table in one resync (as conntrackd's FTFW does on a peer's HELLO). Records are whole state: applying
/// one twice leaves one entry.
/// </summary>
public class ReplicationTests
{
    private sealed class Pair
    {
        public Pair(ConntrackHelper? helper = null, byte protocol = 6, ushort port = ServicePort, int maxConnections = 4096)
        {
            HelperBinding[] helpers = helper is null ? [] : [new HelperBinding(helper, protocol, port)];
            Active = new RouterRig(Masquerade, helpers, maxConnections: maxConnections);
            Standby = new RouterRig(Masquerade, helpers, maxConnections: maxConnections);
            Tracker = new ChangeTracker(Active.Engine, null);
            Active.Engine.Observer = Tracker;
            Applier = new ReplicationApplier(Standby.Engine);
        }

        public RouterRig Active { get; }

        public RouterRig Standby { get; }

        public ChangeTracker Tracker { get; }

        public ReplicationApplier Applier { get; }

        /// <summary>One round of the replication thread: collect, cut into datagram bodies, apply each.</summary>
        public int Round(int maxBody = 8100)
        {
            using var batch = new ReplicationBatch();
            Tracker.Collect(batch, long.MaxValue);
            int records = 0;
            foreach (var piece in batch.Pieces(maxBody))
            {
                var bytes = piece.ToArray();
                records += Applier.Apply(bytes, 0, bytes.Length);
            }

            return records;
        }
    }

    [Fact]
    public void The_standby_translates_a_rewritten_connection_with_the_active_nodes_port_and_sequence_offsets()
    {
        var helper = new TokenRewriteHelper("ADDR", "ADDRESS-LONGER");
        var pair = new Pair(helper) { Tracker = { Recording = true } };
        ushort natPort = SourcePort(Establish(pair.Active));
        pair.Active.PassOut(TcpPacket(Client, ClientPort, Server, ServicePort, Ack | Psh, seq: C + 1, ack: S + 1, payload: Ascii("PORT ADDR\r\n")));

        Assert.True(pair.Round() > 0);

        // Failover: the next segments reach the standby, whose sequence numbers moved on meanwhile (liberal tracking).
        var next = pair.Standby.PassOut(TcpPacket(Client, ClientPort, Server, ServicePort, Ack | Psh, seq: C + 12, ack: S + 1, payload: Ascii("NOOP\r\n")));
        Assert.Equal(natPort, SourcePort(next));
        Assert.Equal(Ip(WanAddress), Source(next));
        Assert.Equal(C + 1 + 21, Seq(next));
        var ack = pair.Standby.PassIn(TcpPacket(Server, ServicePort, WanAddress, natPort, Ack, seq: S + 1, ack: C + 1 + 21 + 6));
        Assert.Equal(Ip(Client), Destination(ack));
        Assert.Equal(C + 12 + 6, AckNumber(ack));
        Assert.Equal(0, pair.Standby[EngineCounter.ConnectionsCreated]);
        Assert.Equal(0, pair.Standby[EngineCounter.PacketsDropped]);
        var conn = pair.Standby.Engine.Connections.Entries().Single();
        Assert.Same(helper, conn.Helper);
        Assert.Equal(TcpTrackFlags.BeLiberal, conn.Tcp.Original.Flags & TcpTrackFlags.BeLiberal);
    }

    [Fact]
    public void A_pptp_calls_gre_reaches_the_standby_which_delivers_it_with_the_clients_call_id()
    {
        var pair = new Pair(Gre.GreTrackingTests.CallHelper()) { Tracker = { Recording = true } };
        var syn = Establish(pair.Active);
        pair.Active.PassIn(TcpPacket(Server, ServicePort, WanAddress, SourcePort(syn), Ack | Psh, seq: S + 1, ack: C + 1, payload: Ascii("CALL")));
        pair.Active.PassOut(Gre.GreTrackingTests.Gre(Client, Server, Gre.GreTrackingTests.PacCall));
        pair.Round();

        // The keymap is the standby's own, rebuilt from the replicated connection: the server's GRE finds the call.
        Assert.Equal(pair.Active.Engine.Connections.GreKeys.Count, pair.Standby.Engine.Connections.GreKeys.Count);
        var inward = pair.Standby.PassIn(Gre.GreTrackingTests.Gre(Server, WanAddress, Gre.GreTrackingTests.TranslatedCall));
        Assert.Equal(Ip(Client), Destination(inward));
        Assert.Equal(Gre.GreTrackingTests.PnsCall, Gre.GreTrackingTests.CallId(inward));
        Assert.Equal(0, pair.Standby[EngineCounter.ConnectionsCreated]);
    }

    [Fact]
    public void A_record_applied_twice_leaves_one_entry_updated_in_place()
    {
        var pair = new Pair { Tracker = { Recording = true } };
        Establish(pair.Active);
        using var batch = new ReplicationBatch();
        pair.Tracker.Collect(batch, long.MaxValue);
        var body = batch.Pieces(8100).Single().ToArray();

        pair.Applier.Apply(body, 0, body.Length);
        var first = pair.Standby.Engine.Connections.Entries().Single();
        pair.Applier.Apply(body, 0, body.Length);

        Assert.Equal(first, pair.Standby.Engine.Connections.Entries().Single());
        Assert.Equal(0, pair.Applier.Replaced);
        Assert.Equal(pair.Active.Engine.Connections.Entries().Single().Reply, first.Reply);
    }

    [Fact]
    public void A_connection_the_active_node_destroys_leaves_the_standby_too()
    {
        var pair = new Pair { Tracker = { Recording = true } };
        Establish(pair.Active);
        pair.Round();
        Assert.Equal(1, pair.Standby.Engine.Connections.Count);

        pair.Active.Engine.Destroy(pair.Active.Engine.Connections.Entries().Single());
        pair.Round();

        Assert.Equal(0, pair.Standby.Engine.Connections.Count);
        Assert.Equal(1, pair.Applier.ConnectionsGone);
    }

    [Fact]
    public void An_expectation_reaches_the_standby_and_admits_its_connection_related_to_the_master()
    {
        var helper = new AnnouncingHelper(new ExpectationPolicy(4, TimeSpan.FromSeconds(60)));
        var pair = new Pair(helper, protocol: 17, port: 5000) { Tracker = { Recording = true } };
        var announced = pair.Active.PassOut(UdpPacket(Client, 3000, Server, 5000, Ascii("EXPECT 6001")));
        ushort port = ushort.Parse(PayloadText(announced).AsSpan(7), provider: null);

        pair.Round();

        Assert.Equal(1, pair.Standby.Engine.Expectations.Count);
        var hop = pair.Standby.In(TcpPacket(Server, 20, WanAddress, port, Syn, seq: 777));
        Assert.True(hop.Accepted, pair.Standby.DropSummary());
        Assert.Equal(Ip(Client), Destination(hop.Packet));
        Assert.Equal((ushort)6001, DestinationPort(hop.Packet));
        Assert.Equal(CtInfo.Related, hop.CtInfo);
        Assert.Equal(pair.Standby.Engine.Connections.Entries().Single(c => c.Original.DestinationPort == 5000), hop.Connection!.Value.Master);
    }

    [Fact]
    public void A_tcp_state_change_reaches_the_standby_through_the_sweep()
    {
        var pair = new Pair { Tracker = { Recording = true } };
        ushort natPort = SourcePort(Establish(pair.Active));
        pair.Round();
        pair.Active.PassOut(TcpPacket(Client, ClientPort, Server, ServicePort, Fin | Ack, seq: C + 1, ack: S + 1));
        var state = pair.Active.Engine.Connections.Entries().Single().TcpState;
        Assert.NotEqual(TcpConntrackState.Established, state);

        for (int i = 0; i < ChangeTracker.SweepCycleRounds; i++)
        {
            pair.Round();
        }

        Assert.Equal(state, pair.Standby.Engine.Connections.Entries().Single().TcpState);
        Assert.Equal(natPort, pair.Standby.Engine.Connections.Entries().Single().Reply.DestinationPort);
    }

    [Fact]
    public void Becoming_active_sends_the_whole_table_in_batches_within_one_sweep_cycle()
    {
        var pair = new Pair(maxConnections: 65536);
        for (int i = 0; i < 3000; i++)
        {
            pair.Active.PassOut(UdpPacket(Client, 3000, Server, (ushort)(10000 + i), Ascii("q")));
        }

        Assert.Equal(0, pair.Round()); // a standby sends nothing

        pair.Tracker.Recording = true;
        int rounds = 0;
        while (pair.Tracker.Resyncing)
        {
            pair.Round();
            rounds++;
        }

        Assert.Equal(ChangeTracker.SweepCycleRounds, rounds);
        Assert.Equal(1, pair.Tracker.ResyncsCompleted);
        Assert.Equal(3000, pair.Standby.Engine.Connections.Count);
        var active = pair.Active.Engine.Connections.Entries().Select(c => (c.Original, c.Reply)).ToHashSet();
        Assert.True(active.SetEquals(pair.Standby.Engine.Connections.Entries().Select(c => (c.Original, c.Reply))));
        Assert.Equal(0, pair.Round()); // nothing changed since
    }

    [Fact]
    public void A_record_that_is_not_well_formed_is_refused_with_a_snapshot_error()
    {
        var pair = new Pair();
        byte[] garbage = [9, 1, 2, 3];
        Assert.Throws<SnapshotException>(() => pair.Applier.Apply(garbage, 0, garbage.Length));
        byte[] cut = [ReplicationBatch.KindConnectionGone, 4, 6];
        Assert.Throws<SnapshotException>(() => pair.Applier.Apply(cut, 0, cut.Length));
        Assert.Equal(0, pair.Standby.Engine.Connections.Count);
    }
}
