using System.Buffers;
using System.Buffers.Binary;
using Offload.Engine.Conntrack;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Snapshot;
using Offload.Engine.Tests.Expectations;
using Offload.Sdk.Testing;
using Offload.Engine.Tests.SequenceAdjustment;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;
using static Offload.Engine.Tests.Support.MasqueradedTcp;

namespace Offload.Engine.Tests.Snapshots;

/// <summary>
/// The engine's state saved by one daemon and loaded by the next (a restart, an upgrade): a translated connection keeps
/// its NAT port, TCP window state and sequence offsets, so the peers never notice; expectations still admit their
/// connection; helpers get their per-connection state back when they can carry it; the time the daemon was down is
/// taken off every timeout. A snapshot that is corrupt, truncated, foreign or of another format version is refused whole
/// and the engine stays empty: no connection is better than a wrong one.
/// </summary>
public class SnapshotTests
{
    private const long Second = 1_000_000_000L;
    private const long WrittenAt = 1_800_000_000 * Second;

    private static RouterRig Router(ConntrackHelper helper, byte protocol = 6, ushort port = ServicePort) =>
        new(Masquerade, [new HelperBinding(helper, protocol, port)]);

    private static byte[] Save(RouterRig rig, bool final = true)
    {
        using var image = EngineSnapshot.Capture(rig.Engine, WrittenAt, final);
        using var stream = new MemoryStream();
        image.WriteTo(stream);
        Assert.Equal(image.Length, stream.Length);
        return stream.ToArray();
    }

    private static SnapshotLoadResult Restore(RouterRig rig, byte[] snapshot, long downSeconds = 1) =>
        EngineSnapshot.Load(rig.Engine, new MemoryStream(snapshot), WrittenAt + (downSeconds * Second));

    [Fact]
    public void A_rewritten_masqueraded_connection_goes_on_after_a_restore_with_its_port_and_sequence_offsets()
    {
        var helper = new TokenRewriteHelper("ADDR", "ADDRESS-LONGER");
        var before = Router(helper);
        ushort natPort = SourcePort(Establish(before));
        before.PassOut(TcpPacket(Client, ClientPort, Server, ServicePort, Ack | Psh, seq: C + 1, ack: S + 1, payload: Ascii("PORT ADDR\r\n")));

        var after = Router(helper);
        var result = Restore(after, Save(before));

        Assert.Equal(1, result.Connections);
        var next = after.PassOut(TcpPacket(Client, ClientPort, Server, ServicePort, Ack | Psh, seq: C + 12, ack: S + 1, payload: Ascii("NOOP\r\n")));
        Assert.Equal(natPort, SourcePort(next));
        Assert.Equal(Ip(WanAddress), Source(next));
        Assert.Equal(C + 1 + 21, Seq(next)); // shifted by the +10 of the rewrite before the restart
        var ack = after.PassIn(TcpPacket(Server, ServicePort, WanAddress, natPort, Ack, seq: S + 1, ack: C + 1 + 21 + 6));
        Assert.Equal(Ip(Client), Destination(ack));
        Assert.Equal(C + 12 + 6, AckNumber(ack));
        var conn = after.Engine.Connections.Entries().Single();
        Assert.Equal(Offload.Engine.Conntrack.Tcp.TcpConntrackState.Established, conn.TcpState);
        Assert.Same(helper, conn.Helper);
        Assert.Equal(0, after[EngineCounter.PacketsDropped]);
        Assert.Equal(0, after[EngineCounter.ConnectionsCreated]);
    }

    [Fact]
    public void A_clean_stop_restores_tcp_tracking_exactly_and_a_checkpoint_relaxes_its_window_checks()
    {
        var rig = new RouterRig(Masquerade);
        Establish(rig);

        var exact = new RouterRig(Masquerade);
        var fromStop = Restore(exact, Save(rig, final: true));
        var relaxed = new RouterRig(Masquerade);
        var fromCheckpoint = Restore(relaxed, Save(rig, final: false));

        Assert.False(fromStop.FromCheckpoint);
        Assert.True(fromCheckpoint.FromCheckpoint);
        var liberal = Offload.Engine.Conntrack.Tcp.TcpTrackFlags.BeLiberal;
        var before = rig.Engine.Connections.Entries().Single().Tcp;
        var afterStop = exact.Engine.Connections.Entries().Single().Tcp;
        var afterCheckpoint = relaxed.Engine.Connections.Entries().Single().Tcp;
        Assert.Equal(before, afterStop);
        Assert.Equal(liberal, afterCheckpoint.Original.Flags & liberal);
        Assert.Equal(liberal, afterCheckpoint.Reply.Flags & liberal);
        Assert.Equal(0, (int)(afterStop.Original.Flags & liberal));

        // A segment far ahead of what the checkpoint knew (the packets after it were lost with the daemon) still passes.
        var ahead = relaxed.Out(TcpPacket(Client, ClientPort, Server, ServicePort, Ack | Psh, seq: C + 1 + 200_000, ack: S + 1, payload: Ascii("late")));
        Assert.True(ahead.Accepted, relaxed.DropSummary());
    }

    [Fact]
    public void IPv6_and_UDP_entries_come_back_with_their_addresses_and_state()
    {
        // An IPv6 entry keeps its addresses out of line, and UDP's stream time shares its bytes with TCP's tracking.
        var rig = new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }]);
        var syn = rig.PassOut(TcpPacket(Client6, 40000, Server6, 443, Syn, seq: C));
        rig.PassIn(TcpPacket(Server6, 443, Source(syn).ToString(), SourcePort(syn), Syn | Ack, seq: S, ack: C + 1));
        rig.PassOut(TcpPacket(Client6, 40000, Server6, 443, Ack, seq: C + 1, ack: S + 1));
        var query = rig.PassOut(UdpPacket(Client, 5353, Server, 53, payload: Ascii("query")));
        rig.PassIn(UdpPacket(Server, 53, WanAddress, SourcePort(query), payload: Ascii("answer")));
        rig.PassOut(UdpPacket(Client6, 5353, Server6, 53, payload: Ascii("query6")));
        var before = rig.Engine.Connections.Entries().ToDictionary(c => c.Original);
        Assert.Equal(3, before.Count);

        var after = new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }]);
        Assert.Equal(3, Restore(after, Save(rig), downSeconds: 0).Connections);

        foreach (var conn in after.Engine.Connections.Entries())
        {
            var was = before[conn.Original];
            Assert.Equal(was.Reply, conn.Reply);
            Assert.Equal(was.Status, conn.Status);
            Assert.Equal(was.TcpState, conn.TcpState);
            if (conn.Original.Protocol == IpProtocol.Tcp)
            {
                Assert.Equal(was.Tcp, conn.Tcp);
            }
            else
            {
                Assert.Equal(was.ExpiresAt - was.StreamAt, conn.ExpiresAt - conn.StreamAt);
            }
        }

        Assert.Equal(2, after.Engine.Connections.AddressBlocksInUse);
        var next = after.PassOut(TcpPacket(Client6, 40000, Server6, 443, Ack | Psh, seq: C + 1, ack: S + 1, payload: Ascii("hello")));
        Assert.Equal(Source(syn), Source(next));
        Assert.Equal(SourcePort(syn), SourcePort(next));
        Assert.Equal(0, after[EngineCounter.ConnectionsCreated]);
    }

    [Fact]
    public void An_expectation_survives_the_restore_and_admits_its_connection_related_to_its_master()
    {
        var helper = new AnnouncingHelper(new ExpectationPolicy(4, TimeSpan.FromSeconds(60)));
        var before = Router(helper, protocol: 17, port: 5000);
        var announced = before.PassOut(UdpPacket(Client, 3000, Server, 5000, Ascii("EXPECT 6001")));
        ushort port = ushort.Parse(PayloadText(announced).AsSpan(7), provider: null);

        var after = Router(helper, protocol: 17, port: 5000);
        var result = Restore(after, Save(before));

        Assert.Equal((1, 1), (result.Connections, result.Expectations));
        var hop = after.In(TcpPacket(Server, 20, WanAddress, port, Syn, seq: 777));
        Assert.True(hop.Accepted, after.DropSummary());
        Assert.Equal(Ip(Client), Destination(hop.Packet));
        Assert.Equal((ushort)6001, DestinationPort(hop.Packet));
        Assert.Equal(CtInfo.Related, hop.CtInfo);
        Assert.Equal(after.Engine.Connections.Entries().Single(c => c.Original.DestinationPort == 5000), hop.Connection!.Value.Master);
    }

    [Fact]
    public void A_helper_that_saves_its_state_gets_it_back_and_one_that_does_not_starts_afresh()
    {
        var counting = new CountingHelper();
        var before = Router(counting, protocol: 17, port: 7000);
        for (int i = 0; i < 3; i++)
        {
            before.PassOut(UdpPacket(Client, 3000, Server, 7000, Ascii("x")));
        }

        var after = Router(counting, protocol: 17, port: 7000);
        var result = Restore(after, Save(before));
        after.PassOut(UdpPacket(Client, 3000, Server, 7000, Ascii("x")));

        Assert.Equal((1, 0), (result.HelperStatesRestored, result.HelperStatesReset));
        Assert.Equal(4, counting.LastCount);

        var silent = new ScriptedHelper((ref HelperContext context) =>
        {
            context.GetState<List<int>>().Add(1);
            return HelperVerdict.Accept;
        });
        var plain = Router(silent, protocol: 17, port: 7000);
        plain.PassOut(UdpPacket(Client, 3000, Server, 7000, Ascii("x")));
        var fresh = Router(silent, protocol: 17, port: 7000);
        result = Restore(fresh, Save(plain));
        Assert.Equal((1, 0, 0), (result.Connections, result.HelperStatesRestored, result.HelperStatesReset));
        Assert.Same(silent, fresh.Engine.Connections.Entries().Single().Helper);
    }

    [Fact]
    public void A_connection_and_an_expectation_whose_helper_another_helper_attached_get_it_back_by_name()
    {
        // As H.323's H.245 helper: bound to no port, named by no configuration, attached by the bound helper.
        var parent = new AttachingHelper();
        var before = Router(parent, protocol: 17, port: 5000);
        before.PassOut(UdpPacket(Client, 3000, Server, 5000, Ascii("6001")));
        ushort port = before.Expectations.Single().Tuple.DestinationPort;
        var child = before.In(TcpPacket(Server, 20, WanAddress, port, Syn, seq: 777));
        Assert.True(child.Accepted, before.DropSummary());
        Assert.Same(parent.Child, child.Connection!.Value.Helper);
        before.PassOut(UdpPacket(Client, 3000, Server, 5000, Ascii("6003"))); // one still waiting at the restart

        var again = new AttachingHelper();
        var after = Router(again, protocol: 17, port: 5000);
        var result = Restore(after, Save(before));

        Assert.Equal((2, 1, 0), (result.Connections, result.Expectations, result.HelpersMissing));
        var restored = after.Engine.Connections.Entries().Single(c => c.Original.Protocol == 6);
        Assert.Same(again.Child, restored.Helper);
        Assert.Same(again.Child, after.Expectations.Single().Helper);
        Assert.Same(again, after.Engine.Connections.Entries().Single(c => c.Original.DestinationPort == 5000).Helper);
    }

    [Fact]
    public void The_time_the_daemon_was_down_is_taken_off_and_what_ran_out_meanwhile_is_left_out()
    {
        var rig = new RouterRig(Masquerade);
        rig.PassOut(UdpPacket(Client, 3000, Server, 53, Ascii("q"))); // UDP: 30 s
        Establish(rig); // TCP established: days
        var snapshot = Save(rig);

        var after = new RouterRig(Masquerade);
        var result = Restore(after, snapshot, downSeconds: 40);

        Assert.Equal((1, 1), (result.Connections, result.ExpiredWhileDown));
        Assert.Equal(TimeSpan.FromSeconds(40), result.Downtime);
        var tcp = after.Engine.Connections.Entries().Single();
        var original = rig.Engine.Connections.Entries().Single(c => c.Original.Protocol == 6);
        long remainingBefore = original.ExpiresAtNanoseconds - rig.Clock.NowNanoseconds;
        Assert.Equal(remainingBefore - (40 * Second), tcp.ExpiresAtNanoseconds - after.Clock.NowNanoseconds);
    }

    public static TheoryData<string, SnapshotRefusal> Damages => new()
    {
        { "a flipped byte in the body", SnapshotRefusal.Corrupt },
        { "the last bytes missing", SnapshotRefusal.Truncated },
        { "another file's magic", SnapshotRefusal.Foreign },
        { "a newer format version", SnapshotRefusal.Incompatible },
        { "a header alone", SnapshotRefusal.Truncated },
        { "an empty file", SnapshotRefusal.Truncated },
    };

    [Theory]
    [MemberData(nameof(Damages))]
    public void A_damaged_snapshot_is_refused_whole_and_the_engine_stays_empty(string damage, SnapshotRefusal reason)
    {
        var helper = new TokenRewriteHelper("ADDR", "ADDRESS-LONGER");
        var before = Router(helper);
        Establish(before);
        before.PassOut(UdpPacket(Client, 3000, Server, 53, Ascii("q")));
        var snapshot = Save(before);
        snapshot = damage switch
        {
            "a flipped byte in the body" => Flip(snapshot, snapshot.Length - 20),
            "the last bytes missing" => snapshot[..^7],
            "another file's magic" => Flip(snapshot, 0),
            "a newer format version" => WithVersion(snapshot, SnapshotFormat.Version + 1),
            "a header alone" => snapshot[..SnapshotFormat.HeaderLength],
            _ => [],
        };

        var after = Router(helper);
        var refused = Assert.Throws<SnapshotException>(() => Restore(after, snapshot));

        Assert.Equal(reason, refused.Reason);
        Assert.Equal(0, after.Engine.Connections.Count);
        Assert.Equal(0, after.Engine.Expectations.Count);
    }

    [Fact]
    public void A_snapshot_larger_than_the_table_is_refused_whole()
    {
        var rig = new RouterRig(Masquerade);
        for (ushort port = 3000; port < 3010; port++)
        {
            rig.PassOut(UdpPacket(Client, port, Server, 53, Ascii("q")));
        }

        var small = new RouterRig(Masquerade, maxConnections: 5);
        var refused = Assert.Throws<SnapshotException>(() => Restore(small, Save(rig)));

        Assert.Equal(SnapshotRefusal.TooLarge, refused.Reason);
        Assert.Equal(0, small.Engine.Connections.Count);
    }

    [Fact]
    public void A_snapshot_written_to_a_file_replaces_the_old_one_whole()
    {
        var rig = new RouterRig(Masquerade);
        rig.PassOut(UdpPacket(Client, 3000, Server, 53, Ascii("q")));
        string path = Path.Combine(Path.GetTempPath(), $"offload-snapshot-{Guid.NewGuid():N}");
        try
        {
            File.WriteAllText(path, "an older snapshot");
            using (var image = EngineSnapshot.Capture(rig.Engine, WrittenAt))
            {
                image.WriteFile(path);
            }

            Assert.False(File.Exists(path + ".new"));
            var after = new RouterRig(Masquerade);
            Assert.Equal(1, EngineSnapshot.LoadFile(after.Engine, path, WrittenAt).Connections);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static byte[] Flip(byte[] snapshot, int at)
    {
        var copy = snapshot.ToArray();
        copy[at] ^= 0x40;
        return copy;
    }

    private static byte[] WithVersion(byte[] snapshot, int version)
    {
        var copy = snapshot.ToArray();
        BinaryPrimitives.WriteInt32LittleEndian(copy.AsSpan(8), version);
        return copy;
    }

    /// <summary>A payload "port" expects a TCP connection from the peer to it, helped by <see cref="Child"/>, which it declares as attached.</summary>
    private sealed class AttachingHelper() : ConntrackHelper("attaching", new ExpectationPolicy(4, TimeSpan.FromMinutes(1)))
    {
        public CountingHelper Child { get; } = new();

        public override IReadOnlyList<ConntrackHelper> AttachedHelpers => [Child];

        public override HelperVerdict Help(ref HelperContext context)
        {
            if (ushort.TryParse(context.Payload, out ushort port))
            {
                var request = context.FromPeer(IpProtocol.Tcp, port);
                request.Helper = Child;
                context.Expect(ref request);
            }

            return HelperVerdict.Accept;
        }
    }

    /// <summary>Counts the packets of each connection, and carries the count across a restart.</summary>
    private sealed class CountingHelper() : ConntrackHelper("counting", new ExpectationPolicy(1, TimeSpan.FromMinutes(1)))
    {
        public int LastCount { get; private set; }

        public override int StateVersion => 1;

        public override HelperVerdict Help(ref HelperContext context)
        {
            var counter = context.GetState<Counter>();
            LastCount = ++counter.Value;
            return HelperVerdict.Accept;
        }

        public override bool SaveState(object state, IBufferWriter<byte> writer)
        {
            BinaryPrimitives.WriteInt32LittleEndian(writer.GetSpan(4), ((Counter)state).Value);
            writer.Advance(4);
            return true;
        }

        public override object? RestoreState(ReadOnlySpan<byte> data, int version) =>
            version == 1 && data.Length == 4 ? new Counter { Value = BinaryPrimitives.ReadInt32LittleEndian(data) } : null;

        private sealed class Counter
        {
            public int Value;
        }
    }
}
