using System.Buffers.Binary;
using Offload.Engine.Conntrack;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Packets;
using Offload.Engine.Tests.Packets;
using Xunit;

namespace Offload.Engine.Tests.Conntrack;

public class EngineTrackingTests
{
    private const string Client = "192.168.1.10";
    private const string Server = "198.51.100.7";
    private const string Client6 = "fd00::10";
    private const string Server6 = "2001:db8::7";
    private const uint C = 1000;
    private const uint S = 5000;

    private static byte[] ToServer(uint seq, uint ack, byte flags, byte[]? payload = null, ushort sport = 40000, ushort window = 64240) =>
        Wire.V4(Client, Server, 6, Wire.Tcp(sport, 80, seq, ack, flags, window, payload: payload));

    private static byte[] ToClient(uint seq, uint ack, byte flags, byte[]? payload = null, ushort dport = 40000, ushort window = 65160) =>
        Wire.V4(Server, Client, 6, Wire.Tcp(80, dport, seq, ack, flags, window, payload: payload));

    private static byte[] UdpOut(ushort sport = 5000, byte[]? payload = null) => Wire.V4(Client, Server, 17, Wire.Udp(sport, 53, payload ?? [1]));

    private static byte[] UdpBack(ushort dport = 5000) => Wire.V4(Server, Client, 17, Wire.Udp(53, dport, [2]));

    /// <summary>Runs the three-way handshake and asserts each step; returns the connection.</summary>
    private static Connection Handshake(EngineRig rig, ushort sport = 40000)
    {
        var syn = rig.Out(ToServer(C, 0, Wire.Syn, sport: sport));
        Assert.True(syn.Accepted);
        var synAck = rig.In(ToClient(S, C + 1, Wire.Syn | Wire.Ack, dport: sport));
        Assert.True(synAck.Accepted);
        var ack = rig.Out(ToServer(C + 1, S + 1, Wire.Ack, sport: sport));
        Assert.True(ack.Accepted);
        Assert.Equal(syn.Connection, ack.Connection);
        return ack.Connection!.Value;
    }

    [Fact]
    public void Tcp_handshake_sets_ctinfo_states_timeouts_and_assured_like_the_kernel()
    {
        var rig = new EngineRig();

        var syn = rig.Out(ToServer(C, 0, Wire.Syn));
        Assert.True(syn.Accepted);
        var conn = syn.Connection!;
        Assert.Equal(CtInfo.New, syn.CtInfo);
        Assert.Equal(ConnDirection.Original, syn.Direction);
        Assert.Equal(TcpConntrackState.SynSent, conn!.Value.TcpState);
        Assert.Equal(120, rig.SecondsLeft(conn!.Value));
        Assert.True(conn!.Value.HasStatus(ConnStatus.Confirmed));
        Assert.False(conn!.Value.HasStatus(ConnStatus.SeenReply));
        Assert.False(conn!.Value.HasStatus(ConnStatus.Assured));
        Assert.Equal(1, rig.Engine.Connections.Count);
        Assert.Equal(1, rig[EngineCounter.ConnectionsCreated]);

        // The SYN retransmitted: still NEW, and the timeout is not extended.
        rig.Advance(3);
        var again = rig.Out(ToServer(C, 0, Wire.Syn));
        Assert.Equal(conn, again.Connection);
        Assert.Equal(CtInfo.New, again.CtInfo);
        Assert.Equal(117, rig.SecondsLeft(conn!.Value));

        var synAck = rig.In(ToClient(S, C + 1, Wire.Syn | Wire.Ack));
        Assert.True(synAck.Accepted);
        Assert.Equal(conn, synAck.Connection);
        Assert.Equal(CtInfo.EstablishedReply, synAck.CtInfo);
        Assert.Equal(ConnDirection.Reply, synAck.Direction);
        Assert.Equal(TcpConntrackState.SynRecv, conn!.Value.TcpState);
        Assert.Equal(60, rig.SecondsLeft(conn!.Value));
        Assert.True(conn!.Value.HasStatus(ConnStatus.SeenReply));
        Assert.False(conn!.Value.HasStatus(ConnStatus.Assured));

        var ack = rig.Out(ToServer(C + 1, S + 1, Wire.Ack));
        Assert.Equal(CtInfo.Established, ack.CtInfo);
        Assert.Equal(TcpConntrackState.Established, conn!.Value.TcpState);
        Assert.True(conn!.Value.HasStatus(ConnStatus.Assured));
        Assert.Equal(432_000, rig.SecondsLeft(conn!.Value));

        // Unacknowledged data caps the timeout at 300 s; the ACK for it lifts the cap.
        var data = rig.Out(ToServer(C + 1, S + 1, Wire.Ack | Wire.Psh, new byte[100]));
        Assert.Equal(CtInfo.Established, data.CtInfo);
        Assert.Equal(300, rig.SecondsLeft(conn!.Value));
        var dataAck = rig.In(ToClient(S + 1, C + 101, Wire.Ack));
        Assert.Equal(CtInfo.EstablishedReply, dataAck.CtInfo);
        Assert.Equal(432_000, rig.SecondsLeft(conn!.Value));

        Assert.Equal(1, rig[EngineCounter.ConnectionsCreated]);
        Assert.Equal(0, rig[EngineCounter.PacketsDropped]);
        Assert.Equal(6, rig[EngineCounter.PacketsOut]);
    }

    [Fact]
    public void Ipv6_tcp_handshake_is_tracked_the_same_way()
    {
        var rig = new EngineRig();
        var syn = rig.Out(Wire.V6(Client6, Server6, 6, Wire.Tcp(1111, 443, C, 0, Wire.Syn), [Ext.HopByHop()]));
        Assert.True(syn.Accepted);
        var synAck = rig.In(Wire.V6(Server6, Client6, 6, Wire.Tcp(443, 1111, S, C + 1, Wire.Syn | Wire.Ack)));
        Assert.Equal(CtInfo.EstablishedReply, synAck.CtInfo);
        var ack = rig.Out(Wire.V6(Client6, Server6, 6, Wire.Tcp(1111, 443, C + 1, S + 1, Wire.Ack)));
        Assert.Equal(CtInfo.Established, ack.CtInfo);
        Assert.Equal(syn.Connection, ack.Connection);
        Assert.True(ack.Connection!.Value.HasStatus(ConnStatus.Assured));
        Assert.Equal(6, ack.Connection!.Value.Original.Family);
    }

    [Fact]
    public void Tcp_segment_out_of_window_is_dropped_as_invalid_and_changes_nothing()
    {
        var rig = new EngineRig();
        var conn = Handshake(rig);
        long expires = conn.ExpiresAtNanoseconds;
        rig.Advance(1);

        var wild = rig.Out(ToServer(C + 1 + 50_000_000, S + 1, Wire.Ack | Wire.Psh, new byte[10]));
        Assert.Equal(Verdict.Drop, wild.Pre);
        Assert.Equal(1, rig[EngineCounter.DroppedTcpInvalid]);
        Assert.Equal(expires, conn.ExpiresAtNanoseconds);
        Assert.Equal(TcpConntrackState.Established, conn.TcpState);

        // Acknowledging data the server never sent.
        var ackOver = rig.Out(ToServer(C + 1, S + 1 + 10_000_000, Wire.Ack));
        Assert.Equal(Verdict.Drop, ackOver.Pre);
        Assert.Equal(2, rig[EngineCounter.DroppedTcpInvalid]);

        // Impossible flags on a tracked connection.
        var synFin = rig.Out(ToServer(C + 1, S + 1, Wire.Syn | Wire.Fin | Wire.Ack));
        Assert.Equal(Verdict.Drop, synFin.Pre);
        Assert.Equal(3, rig[EngineCounter.DroppedTcpInvalid]);

        // The connection still works.
        Assert.True(rig.Out(ToServer(C + 1, S + 1, Wire.Ack | Wire.Psh, [1, 2, 3])).Accepted);
        Assert.Equal(3, rig[EngineCounter.PacketsDropped]);
    }

    [Fact]
    public void Tcp_segments_that_cannot_start_a_connection()
    {
        var rig = new EngineRig();
        var synFin = rig.Out(ToServer(C, 0, Wire.Syn | Wire.Fin));
        Assert.Equal(Verdict.Drop, synFin.Pre);
        Assert.Equal(1, rig[EngineCounter.DroppedCannotStart]);
        Assert.Equal(0, rig.Engine.Connections.Count);
        Assert.Equal(0, rig[EngineCounter.ConnectionsCreated]);

        // With pickup on (the kernel's default nf_conntrack_tcp_loose=1), a mid-stream ACK starts an entry,
        // but without a reply it only gets the unacknowledged timeout.
        var picked = rig.Out(ToServer(C, S, Wire.Ack, [1]));
        Assert.True(picked.Accepted);
        Assert.Equal(TcpConntrackState.Established, picked.Connection!.Value.TcpState);
        Assert.Equal(300, rig.SecondsLeft(picked.Connection!.Value));
        Assert.False(picked.Connection!.Value.HasStatus(ConnStatus.Assured));

        var strict = new EngineRig(tcp: s => s.Loose = false);
        Assert.Equal(Verdict.Drop, strict.Out(ToServer(C, S, Wire.Ack, [1])).Pre);
        Assert.Equal(1, strict[EngineCounter.DroppedCannotStart]);
    }

    [Fact]
    public void Syn_on_time_wait_reopens_the_connection()
    {
        var rig = new EngineRig();
        var old = Handshake(rig);
        Assert.True(rig.Out(ToServer(C + 1, S + 1, Wire.Fin | Wire.Ack)).Accepted);
        Assert.Equal(TcpConntrackState.FinWait, old.TcpState);
        Assert.True(rig.In(ToClient(S + 1, C + 2, Wire.Ack)).Accepted);
        Assert.Equal(TcpConntrackState.CloseWait, old.TcpState);
        Assert.True(rig.In(ToClient(S + 1, C + 2, Wire.Fin | Wire.Ack)).Accepted);
        Assert.Equal(TcpConntrackState.LastAck, old.TcpState);
        Assert.Equal(30, rig.SecondsLeft(old));
        Assert.True(rig.Out(ToServer(C + 2, S + 2, Wire.Ack)).Accepted);
        Assert.Equal(TcpConntrackState.TimeWait, old.TcpState);
        Assert.Equal(120, rig.SecondsLeft(old));

        rig.Advance(5);
        var syn = rig.Out(ToServer(C + 100_000, 0, Wire.Syn));
        Assert.True(syn.Accepted);
        Assert.NotEqual(old, syn.Connection);
        Assert.Equal(CtInfo.New, syn.CtInfo);
        Assert.Equal(TcpConntrackState.SynSent, syn.Connection!.Value.TcpState);
        Assert.Equal(120, rig.SecondsLeft(syn.Connection!.Value));
        Assert.Equal(1, rig[EngineCounter.ConnectionsReopened]);
        Assert.Equal(2, rig[EngineCounter.ConnectionsCreated]);
        Assert.Equal(1, rig.Engine.Connections.Count);
        Assert.False(old.IsAlive);
        Assert.True(rig.Engine.Connections.TryFind(syn.Connection!.Value.Original, out var found, out _));
        Assert.Equal(syn.Connection, found);

        // The new connection completes its own handshake.
        Assert.Equal(CtInfo.EstablishedReply, rig.In(ToClient(S + 7, C + 100_001, Wire.Syn | Wire.Ack)).CtInfo);
    }

    [Fact]
    public void Rst_before_any_reply_ends_the_entry_at_once()
    {
        var rig = new EngineRig();
        var syn = rig.Out(ToServer(C, 0, Wire.Syn));
        var rst = rig.Out(ToServer(C + 1, 0, Wire.Rst));
        Assert.True(rst.Accepted);
        Assert.Equal(syn.Connection, rst.Connection);
        Assert.True(rig.SecondsLeft(syn.Connection!.Value) <= 0);
        Assert.Equal(1, rig.Engine.CollectGarbage(rig.Engine.Connections.Capacity));
        Assert.Equal(0, rig.Engine.Connections.Count);
    }

    [Fact]
    public void Udp_timeouts_30_s_unreplied_and_120_s_once_a_stream_after_2_s()
    {
        var rig = new EngineRig();
        var first = rig.Out(UdpOut());
        var conn = first.Connection!;
        Assert.Equal(CtInfo.New, first.CtInfo);
        Assert.Equal(30, rig.SecondsLeft(conn!.Value));

        rig.Advance(0.5);
        var second = rig.Out(UdpOut());
        Assert.Equal(CtInfo.New, second.CtInfo); // no reply yet: still NEW, as in the kernel
        Assert.Equal(30, rig.SecondsLeft(conn!.Value));

        rig.Advance(0.5);
        var reply = rig.In(UdpBack());
        Assert.Equal(conn, reply.Connection);
        Assert.Equal(CtInfo.EstablishedReply, reply.CtInfo);
        Assert.True(conn!.Value.HasStatus(ConnStatus.SeenReply));
        Assert.Equal(30, rig.SecondsLeft(conn!.Value));
        Assert.False(conn!.Value.HasStatus(ConnStatus.Assured));

        // Replied but younger than 2 s: not yet a stream.
        rig.Advance(0.5);
        var third = rig.Out(UdpOut());
        Assert.Equal(CtInfo.Established, third.CtInfo);
        Assert.Equal(30, rig.SecondsLeft(conn!.Value));
        Assert.False(conn!.Value.HasStatus(ConnStatus.Assured));

        // Still active after 2 s: a stream, 120 s and assured.
        rig.Advance(0.6);
        rig.Out(UdpOut());
        Assert.Equal(120, rig.SecondsLeft(conn!.Value));
        Assert.True(conn!.Value.HasStatus(ConnStatus.Assured));
        rig.Advance(100);
        rig.In(UdpBack());
        Assert.Equal(120, rig.SecondsLeft(conn!.Value));
    }

    [Fact]
    public void Icmp_echo_is_tracked_30_s_and_the_reply_matches()
    {
        var rig = new EngineRig();
        var request = rig.Out(Wire.V4(Client, Server, 1, Wire.IcmpQuery(8, 0x1234, 1)));
        Assert.True(request.Accepted);
        var conn = request.Connection!;
        Assert.Equal(CtInfo.New, request.CtInfo);
        Assert.Equal(30, rig.SecondsLeft(conn!.Value));
        Assert.Equal(0x1234, conn!.Value.Original.SourcePort);
        Assert.Equal(0, conn!.Value.Reply.IcmpType);

        rig.Advance(1);
        var reply = rig.In(Wire.V4(Server, Client, 1, Wire.IcmpQuery(0, 0x1234, 1)));
        Assert.True(reply.Accepted);
        Assert.Equal(conn, reply.Connection);
        Assert.Equal(CtInfo.EstablishedReply, reply.CtInfo);
        Assert.Equal(30, rig.SecondsLeft(conn!.Value));

        // A reply with another identifier belongs to nothing and cannot start anything.
        var stray = rig.In(Wire.V4(Server, Client, 1, Wire.IcmpQuery(0, 0x9999, 1)));
        Assert.Equal(Verdict.Drop, stray.Pre);
        Assert.Equal(1, rig[EngineCounter.DroppedCannotStart]);

        // ICMPv6 the same.
        var request6 = rig.Out(Wire.V6(Client6, Server6, 58, Wire.IcmpQuery(128, 7, 1)));
        Assert.True(request6.Accepted);
        var reply6 = rig.In(Wire.V6(Server6, Client6, 58, Wire.IcmpQuery(129, 7, 1)));
        Assert.Equal(request6.Connection, reply6.Connection);
        Assert.Equal(CtInfo.EstablishedReply, reply6.CtInfo);

        // A neighbour solicitation or a router advertisement is not a query: no entry.
        Assert.Equal(Verdict.Drop, rig.Out(Wire.V6(Client6, Server6, 58, Wire.IcmpQuery(135, 0))).Pre);
        Assert.Equal(Verdict.Drop, rig.Out(Wire.V4(Client, Server, 1, Wire.IcmpQuery(9, 0))).Pre);
        Assert.Equal(3, rig[EngineCounter.DroppedCannotStart]);
    }

    [Fact]
    public void Neighbour_discovery_and_mld_that_stay_on_their_link_pass_untracked_as_in_the_kernel()
    {
        var rig = new EngineRig();

        // The router's own solicitation out of a steered interface (hop limit 255, to a solicited-node group).
        var solicitation = rig.Send(Wire.V6("2001:db8:ffff::1", "ff02::1:ff00:2", 58, Wire.IcmpQuery(135, 0), hopLimit: 255), 0, EngineRig.Wan);
        Assert.True(solicitation.Accepted);
        Assert.Null(solicitation.Connection);

        // A neighbour's advertisement to the router's link-local address, and a router advertisement.
        Assert.True(rig.Send(Wire.V6("fe80::2", "fe80::1", 58, Wire.IcmpQuery(136, 0), hopLimit: 255), EngineRig.Wan, 0).Accepted);
        Assert.True(rig.Send(Wire.V6("fe80::2", "ff02::1", 58, Wire.IcmpQuery(134, 0), hopLimit: 255), EngineRig.Wan, 0).Accepted);

        // MLDv2 report and an MLD query from a link-local address, hop limit 1, behind the router alert option.
        Assert.True(rig.Send(Wire.V6("fe80::1", "ff02::16", 58, Wire.IcmpQuery(143, 0), [Ext.HopByHop()], hopLimit: 1), 0, EngineRig.Wan).Accepted);
        Assert.True(rig.Send(Wire.V6("fe80::2", "ff02::1", 58, Wire.IcmpQuery(130, 0), [Ext.HopByHop()], hopLimit: 1), EngineRig.Wan, 0).Accepted);

        // A duplicate address detection probe comes from the unspecified address.
        Assert.True(rig.Send(Wire.V6("::", "ff02::1:ff00:1", 58, Wire.IcmpQuery(135, 0), hopLimit: 255), 0, EngineRig.Wan).Accepted);

        Assert.Equal(6, rig[EngineCounter.AcceptedUntracked]);
        Assert.Equal(0, rig.Engine.Connections.Count);

        // The same types forwarded (global source, hop limit below 255) are not let through untracked.
        Assert.Equal(Verdict.Drop, rig.Out(Wire.V6(Client6, Server6, 58, Wire.IcmpQuery(135, 0), hopLimit: 254)).Pre);
        Assert.Equal(Verdict.Drop, rig.Out(Wire.V6(Client6, Server6, 58, Wire.IcmpQuery(143, 0), hopLimit: 1)).Pre);
        Assert.Equal(6, rig[EngineCounter.AcceptedUntracked]);

        // A bad checksum is still a bad checksum.
        var broken = Wire.V6("fe80::2", "fe80::1", 58, Wire.IcmpQuery(136, 0), hopLimit: 255);
        broken[^1] ^= 0xFF;
        Assert.Equal(Verdict.Drop, rig.Send(broken, EngineRig.Wan, 0).Pre);
        Assert.Equal(1, rig[EngineCounter.MalformedBadChecksum]);
    }

    [Fact]
    public void Icmp_error_for_a_tracked_flow_is_related_and_for_an_unknown_flow_is_dropped()
    {
        var rig = new EngineRig();
        var sent = rig.Out(UdpOut());
        var conn = sent.Connection!;

        // Port unreachable from the server, quoting the datagram as it left (cut to 28 bytes).
        var error = rig.In(Wire.V4(Server, Client, 1, Wire.IcmpError(3, 3, sent.Output.AsSpan(0, 28))));
        Assert.True(error.Accepted);
        Assert.Equal(conn, error.Connection);
        Assert.Equal(CtInfo.RelatedReply, error.CtInfo);
        Assert.Equal(1, rig.Engine.Connections.Count); // an error creates nothing

        // The same error about a datagram nobody sent.
        var other = UdpOut(sport: 6000);
        var unrelated = rig.In(Wire.V4(Server, Client, 1, Wire.IcmpError(3, 3, other.AsSpan(0, 28))));
        Assert.Equal(Verdict.Drop, unrelated.Pre);
        Assert.Equal(1, rig[EngineCounter.DroppedIcmpUnrelated]);

        // Quoting too little to find the ports.
        var tooShort = rig.In(Wire.V4(Server, Client, 1, Wire.IcmpError(3, 3, sent.Output.AsSpan(0, 27))));
        Assert.Equal(Verdict.Drop, tooShort.Pre);
        Assert.Equal(2, rig[EngineCounter.DroppedIcmpUnrelated]);

        // An IPv6 packet quoted in an ICMPv4 error.
        var v6 = Wire.V6(Client6, Server6, 17, Wire.Udp(1, 2));
        Assert.Equal(Verdict.Drop, rig.In(Wire.V4(Server, Client, 1, Wire.IcmpError(3, 3, v6))).Pre);
        Assert.Equal(3, rig[EngineCounter.DroppedIcmpUnrelated]);

        // After the flow expired, its errors are unrelated too.
        rig.Advance(31);
        Assert.Equal(Verdict.Drop, rig.In(Wire.V4(Server, Client, 1, Wire.IcmpError(3, 3, sent.Output.AsSpan(0, 28)))).Pre);
        Assert.Equal(4, rig[EngineCounter.DroppedIcmpUnrelated]);
    }

    [Fact]
    public void Icmpv6_error_for_a_tracked_flow_is_related()
    {
        var rig = new EngineRig();
        var sent = rig.Out(Wire.V6(Client6, Server6, 17, Wire.Udp(7000, 53, new byte[30])));
        var error = rig.In(Wire.V6("2001:db8::fe", Client6, 58, Wire.IcmpError(1, 4, sent.Output.AsSpan(0, 48))));
        Assert.True(error.Accepted);
        Assert.Equal(sent.Connection, error.Connection);
        Assert.Equal(CtInfo.RelatedReply, error.CtInfo);

        // Packet too big about the whole datagram.
        var big = rig.In(Wire.V6("2001:db8::fe", Client6, 58, Wire.IcmpError(2, 0, sent.Output, rest: 1280)));
        Assert.True(big.Accepted);
    }

    [Fact]
    public void Expiry_by_garbage_collection_and_by_lookup()
    {
        var rig = new EngineRig(maxConnections: 10);
        var a = rig.Out(UdpOut(1)).Connection!;
        rig.Advance(10);
        var b = rig.Out(UdpOut(2)).Connection!;
        rig.Advance(21); // a is 31 s old, b 21 s

        Assert.Equal(1, rig.Engine.CollectGarbage(10));
        Assert.Equal(1, rig[EngineCounter.ConnectionsExpired]);
        Assert.False(rig.Engine.Connections.TryFind(a!.Value.Original, out _, out _));
        Assert.True(rig.Engine.Connections.TryFind(b!.Value.Original, out _, out _));
        Assert.False(a!.Value.IsAlive);

        // b expired but not yet collected: the next packet finds it dead and starts afresh.
        rig.Advance(9);
        var again = rig.Out(UdpOut(2));
        Assert.True(again.Accepted);
        Assert.NotEqual(b, again.Connection);
        Assert.Equal(CtInfo.New, again.CtInfo);
        Assert.Equal(2, rig[EngineCounter.ConnectionsExpired]);
        Assert.Equal(3, rig[EngineCounter.ConnectionsCreated]);
        Assert.Equal(1, rig.Engine.Connections.Count);

        // A reply to the expired entry's tuple is now just the reply of the new one.
        Assert.Equal(CtInfo.EstablishedReply, rig.In(UdpBack(2)).CtInfo);
    }

    [Fact]
    public void Garbage_collection_works_within_its_budget_and_resumes_where_it_stopped()
    {
        var rig = new EngineRig(maxConnections: 10);
        for (ushort port = 1; port <= 10; port++)
        {
            Assert.True(rig.Out(UdpOut(port)).Accepted);
        }

        Assert.True(rig.Engine.Connections.IsFull);
        Assert.Equal(0, rig.Engine.CollectGarbage(10)); // nothing expired yet
        rig.Advance(30);
        int removed = 0;
        for (int call = 0; call < 4; call++)
        {
            int now = rig.Engine.CollectGarbage(3);
            Assert.InRange(now, 0, 3);
            removed += now;
        }

        Assert.Equal(10, removed);
        Assert.Equal(0, rig.Engine.Connections.Count);
        Assert.Equal(10, rig[EngineCounter.ConnectionsExpired]);
    }

    [Fact]
    public void Full_table_drops_an_unassured_entry_early()
    {
        var rig = new EngineRig(maxConnections: 2);
        var a = rig.Out(UdpOut(1)).Connection!;
        var b = rig.Out(UdpOut(2)).Connection!;
        Assert.True(rig.Engine.Connections.IsFull);

        // A new flow whose bucket scan (its bucket and the 7 after it) reaches one of the entries.
        var table = rig.Engine.Connections;
        int mask = table.BucketCount - 1;
        bool Reaches(ConnTuple t) => new[] { a!.Value.Original, a!.Value.Reply, b!.Value.Original, b!.Value.Reply }
            .Any(x => ((table.BucketOf(x) - table.BucketOf(t)) & mask) < 8);
        ushort port = 100;
        while (!Reaches(PortTuple(port)))
        {
            port++;
        }

        var c = rig.Out(UdpOut(port));
        Assert.True(c.Accepted);
        Assert.Equal(1, rig[EngineCounter.ConnectionsEarlyDropped]);
        Assert.Equal(2, table.Count);
        Assert.True(a!.Value.IsAlive ^ b!.Value.IsAlive);
        Assert.True(table.TryFind(c.Connection!.Value.Original, out _, out _));
        Assert.Equal(0, rig[EngineCounter.PacketsDropped]);
    }

    [Fact]
    public void A_syn_flood_into_a_full_table_of_unassured_entries_never_drops_for_a_full_table()
    {
        // Issue 14: with the kernel's 8-bucket scan alone, about e^-8 of the SYNs found no unassured entry to evict
        // (about 45 in 100,000 at 4,096 entries) although every entry but the assured ones was unassured.
        var rig = new EngineRig(maxConnections: 4096);
        var assured = Enumerable.Range(0, 16).Select(i => Handshake(rig, (ushort)(1001 + i))).ToList();
        Assert.All(assured, a => Assert.True(a.HasStatus(ConnStatus.Assured)));

        for (int i = 0; i < 40_000; i++)
        {
            var c = rig.Out(ToServer(C, 0, Wire.Syn, sport: (ushort)(2000 + i)));
            Assert.True(c.Accepted, $"SYN {i} dropped");
        }

        Assert.Equal(0, rig[EngineCounter.DroppedTableFull]);
        Assert.Equal(40_000 + 16 - 4096, rig[EngineCounter.ConnectionsEarlyDropped]);
        Assert.Equal(4096, rig.Engine.Connections.Count);
        Assert.All(assured, a => Assert.True(a.IsInTable));
    }

    [Fact]
    public void Full_table_of_assured_entries_drops_the_new_packet_and_keeps_them()
    {
        var rig = new EngineRig(maxConnections: 2);
        var a = Handshake(rig, 1001);
        var b = Handshake(rig, 1002);
        Assert.True(a.HasStatus(ConnStatus.Assured) && b.HasStatus(ConnStatus.Assured));

        for (ushort port = 2000; port < 2040; port++)
        {
            var c = rig.Out(ToServer(C, 0, Wire.Syn, sport: port));
            Assert.Equal(Verdict.Drop, c.Pre);
        }

        Assert.Equal(40, rig[EngineCounter.DroppedTableFull]);
        Assert.Equal(0, rig[EngineCounter.ConnectionsEarlyDropped]);
        Assert.Equal(2, rig.Engine.Connections.Count);
        Assert.True(a.IsInTable && b.IsInTable);

        // The tracked ones go on, and once one expires a new flow fits again.
        Assert.True(rig.Out(ToServer(C + 1, S + 1, Wire.Ack | Wire.Psh, [1], sport: 1001)).Accepted);
        rig.Advance(432_001);
        rig.Engine.CollectGarbage(2);
        Assert.True(rig.Out(ToServer(C, 0, Wire.Syn, sport: 3000)).Accepted);
    }

    private static ConnTuple PortTuple(ushort port) =>
        new(4, IpProtocol.Udp, EngineRig.Addr(Client), port, EngineRig.Addr(Server), 53);

    [Fact]
    public void Bad_checksums_are_dropped_before_tracking_unless_validation_is_off()
    {
        var rig = new EngineRig();
        var badTcp = ToServer(C, 0, Wire.Syn);
        badTcp[^1] ^= 0x40; // in the TCP header's urgent pointer: covered by the TCP checksum only
        Assert.Equal(Verdict.Drop, rig.Out(badTcp).Pre);
        Assert.Equal(1, rig[EngineCounter.MalformedBadChecksum]);
        Assert.Equal(0, rig.Engine.Connections.Count);

        var badIp = ToServer(C, 0, Wire.Syn);
        badIp[8] = 1; // TTL changed without fixing the header checksum
        Assert.Equal(Verdict.Drop, rig.Out(badIp).Pre);

        var badUdp = UdpOut(payload: [1, 2, 3]);
        badUdp[^2] ^= 0xFF;
        Assert.Equal(Verdict.Drop, rig.Out(badUdp).Pre);

        var badIcmp6 = Wire.V6(Client6, Server6, 58, Wire.IcmpQuery(128, 1));
        badIcmp6[^1] ^= 1;
        Assert.Equal(Verdict.Drop, rig.Out(badIcmp6).Pre);
        Assert.Equal(4, rig[EngineCounter.MalformedBadChecksum]);
        Assert.Equal(0, rig[EngineCounter.ConnectionsCreated]);

        // IPv4 UDP without a checksum is fine.
        Assert.True(rig.Out(Wire.V4(Client, Server, 17, Wire.Udp(9, 9, [1]), fixTransport: false)).Accepted);

        var lax = new EngineRig(validateChecksums: false);
        Assert.True(lax.Out(badTcp).Accepted);
        Assert.True(lax.Out(badUdp).Accepted);
        Assert.Equal(0, lax[EngineCounter.MalformedBadChecksum]);
        Assert.Equal(2, lax[EngineCounter.ConnectionsCreated]);
    }

    [Fact]
    public void Ipv6_udp_with_zero_checksum_is_tracked_like_the_kernel()
    {
        var rig = new EngineRig();
        var zero = Wire.V6(Client6, Server6, 17, Wire.Udp(4789, 4789, new byte[20]), fixTransport: false);
        Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(zero.AsSpan(46)));
        var outcome = rig.Out(zero);
        Assert.True(outcome.Accepted);
        Assert.NotNull(outcome.Connection);
    }

    [Fact]
    public void Malformed_packets_are_counted_by_reason()
    {
        var rig = new EngineRig();
        rig.Out([]);
        rig.Out([0x30, 1, 2, 3]);
        var shortUdp = UdpOut();
        BinaryPrimitives.WriteUInt16BigEndian(shortUdp.AsSpan(24), 3);
        rig.Out(shortUdp);
        var tcp = ToServer(C, 0, Wire.Syn);
        tcp[32] = 0x20;
        rig.Out(tcp);
        Assert.Equal(1, rig[EngineCounter.MalformedTruncated]);
        Assert.Equal(1, rig[EngineCounter.MalformedBadVersion]);
        Assert.Equal(1, rig[EngineCounter.MalformedBadUdpLength]);
        Assert.Equal(1, rig[EngineCounter.MalformedBadTcpDataOffset]);

        // Each PacketError has its counter at the same position.
        Assert.Equal(
            (int)PacketError.BadChecksum - (int)PacketError.Truncated,
            (int)EngineCounter.MalformedBadChecksum - (int)EngineCounter.MalformedTruncated);
        foreach (var error in Enum.GetValues<PacketError>().Where(e => e != PacketError.None))
        {
            Assert.Equal("Malformed" + error, (EngineCounter.MalformedTruncated + ((int)error - 1)).ToString());
        }
    }

    [Fact]
    public void Later_fragments_are_dropped_and_first_fragments_tracked()
    {
        var rig = new EngineRig();
        var udp = Wire.Udp(5353, 53, new byte[100]);
        var first = Wire.V4(Client, Server, 17, udp[..48], moreFragments: true, fixTransport: false);
        var later = Wire.V4(Client, Server, 17, udp[48..], fragmentOffsetUnits: 6, fixTransport: false);
        var f = rig.Out(first);
        Assert.True(f.Accepted);
        Assert.Equal(5353, f.Connection!.Value.Original.SourcePort);
        Assert.Equal(Verdict.Drop, rig.Out(later).Pre);
        Assert.Equal(1, rig[EngineCounter.DroppedLaterFragment]);

        var later6 = Wire.V6(Client6, Server6, 6, new byte[24], [Ext.Fragment(3, false)], fixTransport: false);
        Assert.Equal(Verdict.Drop, rig.Out(later6).Pre);
        Assert.Equal(2, rig[EngineCounter.DroppedLaterFragment]);
    }

    [Fact]
    public void Ethernet_padding_is_cut_off_the_packet()
    {
        var rig = new EngineRig();
        var syn = ToServer(C, 0, Wire.Syn);
        var padded = syn.Concat(new byte[] { 0xDE, 0xAD, 0xBE, 0xEF, 0, 0 }).ToArray();
        var outcome = rig.Out(padded);
        Assert.True(outcome.Accepted);
        Assert.Equal(syn, outcome.Output);
    }

    [Fact]
    public void Counters_count_each_packet_in_once_and_out_or_dropped_once()
    {
        var rig = new EngineRig();
        var engine = rig.Engine;
        var packet = UdpOut();
        var buffer = new byte[packet.Length + 16];
        packet.CopyTo(buffer, 0);
        var ctx = new PacketContext(buffer, packet.Length, EngineRig.Lan);

        // Between the hooks a packet is in but neither out nor dropped; a new entry is not in the table yet.
        Assert.Equal(Verdict.Accept, engine.PreRouting(ref ctx));
        Assert.Equal(1, rig[EngineCounter.PacketsIn]);
        Assert.Equal(0, rig[EngineCounter.PacketsOut]);
        Assert.Equal(0, rig[EngineCounter.PacketsDropped]);
        Assert.Equal(0, engine.Connections.Count);
        var conn = ctx.Connection;
        Assert.NotNull(conn);
        Assert.False(conn!.Value.HasStatus(ConnStatus.Confirmed));

        ctx.OutInterface = EngineRig.Wan;
        Assert.Equal(Verdict.Accept, engine.PostRouting(ref ctx));
        Assert.Equal(1, rig[EngineCounter.PacketsOut]);
        Assert.Equal(1, engine.Connections.Count);
        Assert.True(conn!.Value.HasStatus(ConnStatus.Confirmed));

        // A drop counts once, under its reason, and nothing goes out.
        var bad = new PacketContext(new byte[10], 10, EngineRig.Lan);
        Assert.Equal(Verdict.Drop, engine.PreRouting(ref bad));
        Assert.Equal(2, rig[EngineCounter.PacketsIn]);
        Assert.Equal(1, rig[EngineCounter.PacketsDropped]);
        Assert.Equal(1, rig[EngineCounter.MalformedBadVersion]);
        Assert.Equal(1, rig[EngineCounter.PacketsOut]);
        EngineRig.AssertCounterInvariants(engine);
    }

    [Fact]
    public void Generic_protocols_are_tracked_by_addresses_for_600_s()
    {
        var rig = new EngineRig();
        var esp = rig.Out(Wire.V4(Client, Server, 50, [0, 0, 0x88, 0x0B, 1, 2, 3, 4]));
        Assert.True(esp.Accepted);
        Assert.Equal(600, rig.SecondsLeft(esp.Connection!.Value));
        var back = rig.In(Wire.V4(Server, Client, 50, [0, 0, 0x88, 0x0B, 5, 6, 7, 8]));
        Assert.Equal(esp.Connection, back.Connection);
        Assert.Equal(CtInfo.EstablishedReply, back.CtInfo);
    }
}
