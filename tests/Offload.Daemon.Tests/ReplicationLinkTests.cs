using System.Buffers.Binary;
using System.Text;
using Offload.Daemon.Replication;
using Offload.Engine.Snapshot;
using Xunit;

namespace Offload.Daemon.Tests;

/// <summary>
/// The replication protocol between two routers, without sockets (datagrams handed over in memory, a clock set by
/// the test): in the shape of conntrackd's FTFW, data is applied once and in order, a gap is NACKed and resent from
/// the bounded queue, a cumulative ACK frees it, a HELLO gets a full resync; every datagram is authenticated, and a
/// bad key, a replay, a reflected or truncated or oversized datagram, and a flood are each refused and counted, never applied.
/// </summary>
public sealed class ReplicationLinkTests
{
    private static readonly byte[] Key = Encoding.ASCII.GetBytes("0123456789abcdef0123456789abcdef");
    private const uint IdA = 0xA;
    private const uint IdB = 0xB;

    /// <summary>Two ends, A active and B standby, and what each sent, not yet delivered.</summary>
    private sealed class Wire
    {
        public long Now = 1_000_000_000_000;
        public readonly List<byte[]> ToB = [];
        public readonly List<byte[]> ToA = [];
        public readonly List<string> AppliedAtB = [];
        public int ResyncsAtA;

        public Wire(long epochA = 100, long epochB = 200, byte[]? keyB = null, FloodLimiter? limiterB = null)
        {
            A = NewA(epochA);
            B = new ReplicationLink(keyB ?? Key, IdB, IdA, epochB, (d, n) => ToA.Add(d.AsSpan(0, n).ToArray()), () => Now, limiterB)
            {
                Apply = (buffer, offset, count) => AppliedAtB.Add(Encoding.ASCII.GetString(buffer, offset, count)),
            };
        }

        public ReplicationLink A { get; set; }

        public ReplicationLink B { get; }

        public ReplicationLink NewA(long epoch) =>
            new(Key, IdA, IdB, epoch, (d, n) => ToB.Add(d.AsSpan(0, n).ToArray()), () => Now)
            {
                Active = true,
                ResyncRequested = () => ResyncsAtA++,
            };

        /// <summary>Delivers everything in flight both ways until nothing moves; returns B's refusals.</summary>
        public List<Refusal> Settle(Func<byte[], bool>? dropToB = null)
        {
            var refused = new List<Refusal>();
            while (ToB.Count > 0 || ToA.Count > 0)
            {
                var toB = ToB.ToList();
                ToB.Clear();
                foreach (var d in toB.Where(d => dropToB?.Invoke(d) != true))
                {
                    var r = B.Receive(d, d.Length);
                    if (r != Refusal.None)
                    {
                        refused.Add(r);
                    }
                }

                var toA = ToA.ToList();
                ToA.Clear();
                foreach (var d in toA)
                {
                    A.Receive(d, d.Length);
                }
            }

            return refused;
        }

        public void Tick(long milliseconds)
        {
            Now += milliseconds * 1_000_000;
            A.Tick();
            B.Tick();
        }

        /// <summary>Both send HELLO and answer each other's.</summary>
        public void Handshake()
        {
            A.Tick();
            B.Tick();
            Settle();
            Assert.True(A.CanSend);
            ResyncsAtA = 0;
        }
    }

    private static MessageType TypeOf(byte[] datagram) => (MessageType)datagram[5];

    private static uint SeqOf(byte[] datagram) => BinaryPrimitives.ReadUInt32BigEndian(datagram.AsSpan(20));

    [Fact]
    public void Data_is_applied_once_in_order_and_a_cumulative_ack_empties_the_resend_queue()
    {
        var wire = new Wire();
        wire.Handshake();
        foreach (var text in new[] { "one", "two", "three" })
        {
            wire.A.SendData(Encoding.ASCII.GetBytes(text));
        }

        Assert.Empty(wire.Settle());
        Assert.Equal(["one", "two", "three"], wire.AppliedAtB);
        Assert.Equal(3, wire.A.Unacknowledged);
        wire.Tick(25); // B's delayed ACK
        wire.Settle();
        Assert.Equal(0, wire.A.Unacknowledged);
        Assert.Equal(3, wire.A.Acked);
        Assert.Equal(0, wire.A.Resent);
    }

    [Fact]
    public void A_hello_from_the_standby_makes_the_active_node_resync_it()
    {
        var wire = new Wire();
        wire.A.Tick();
        wire.B.Tick();
        wire.Settle();

        Assert.True(wire.ResyncsAtA >= 1);
        Assert.Equal(wire.ResyncsAtA, wire.A.HellosReceived); // one resync per HELLO
        Assert.True(wire.A.CanSend);
        Assert.True(wire.B.PeerUp);
    }

    [Fact]
    public void A_gap_is_nacked_and_resent_and_the_datagram_after_it_is_refused_until_then()
    {
        var wire = new Wire();
        wire.Handshake();
        wire.A.SendData("a"u8);
        wire.A.SendData("b"u8);
        wire.A.SendData("c"u8);
        uint lost = SeqOf(wire.ToB[1]);

        var refused = wire.Settle(d => TypeOf(d) == MessageType.Data && SeqOf(d) == lost && wire.A.Resent == 0);

        Assert.Contains(Refusal.OutOfOrder, refused);
        Assert.Equal(["a", "b", "c"], wire.AppliedAtB);
        Assert.True(wire.A.Resent >= 2); // b and c again (go-back-N from the gap)
        Assert.Equal(1, wire.B.Refused(Refusal.OutOfOrder));
    }

    [Fact]
    public void A_lost_tail_is_resent_after_the_timeout()
    {
        var wire = new Wire();
        wire.Handshake();
        wire.A.SendData("tail"u8);
        wire.ToB.Clear(); // lost

        wire.Tick(400);
        wire.Settle();

        Assert.Equal(["tail"], wire.AppliedAtB);
        Assert.Equal(1, wire.A.Resent);
    }

    [Fact]
    public void A_replayed_datagram_is_refused_and_not_applied_twice()
    {
        var wire = new Wire();
        wire.Handshake();
        wire.A.SendData("once"u8);
        var copy = wire.ToB[0].ToArray();
        wire.Settle();

        Assert.Equal(Refusal.Replayed, wire.B.Receive(copy, copy.Length));
        Assert.Equal(["once"], wire.AppliedAtB);
        Assert.Equal(1, wire.B.Refused(Refusal.Replayed));
    }

    [Fact]
    public void After_the_active_node_restarts_its_old_datagrams_are_refused_as_replays()
    {
        var wire = new Wire();
        wire.Handshake();
        wire.A.SendData("old"u8);
        var old = wire.ToB[0].ToArray();
        wire.Settle();

        wire.A = wire.NewA(epoch: 150); // restarted: a larger epoch
        wire.Handshake();
        wire.A.SendData("new"u8);
        wire.Settle();

        Assert.Equal(Refusal.Replayed, wire.B.Receive(old, old.Length));
        Assert.Equal(["old", "new"], wire.AppliedAtB);
        Assert.Equal(150, wire.B.PeerEpoch);
    }

    [Fact]
    public void A_datagram_under_another_key_or_altered_on_the_way_is_refused()
    {
        var wire = new Wire(keyB: Encoding.ASCII.GetBytes("another key of thirty-two bytes!"));
        wire.A.Tick();
        wire.B.Tick();
        var refused = wire.Settle();

        Assert.NotEmpty(refused);
        Assert.All(refused, r => Assert.Equal(Refusal.BadKey, r));
        Assert.False(wire.B.PeerUp);

        var good = new Wire();
        good.Handshake();
        good.A.SendData("payload"u8);
        var altered = good.ToB[0].ToArray();
        altered[ReplicationWire.HeaderLength] ^= 1;
        Assert.Equal(Refusal.BadKey, good.B.Receive(altered, altered.Length));
        Assert.Empty(good.AppliedAtB);
    }

    [Fact]
    public void A_reflected_datagram_is_refused_though_its_key_is_right()
    {
        var wire = new Wire();
        wire.Handshake();
        wire.A.SendData("mine"u8);
        var own = wire.ToB[0].ToArray();

        Assert.Equal(Refusal.WrongSender, wire.A.Receive(own, own.Length));
    }

    [Fact]
    public void Truncated_oversized_and_foreign_datagrams_are_refused_and_counted()
    {
        var wire = new Wire();
        wire.Handshake();
        wire.A.SendData("data"u8);
        var d = wire.ToB[0];

        Assert.Equal(Refusal.Truncated, wire.B.Receive(d, d.Length - 1));
        Assert.Equal(Refusal.Truncated, wire.B.Receive(d, 20));
        var huge = new byte[ReplicationWire.MaxDatagram + 1];
        Assert.Equal(Refusal.Oversized, wire.B.Receive(huge, huge.Length));
        var foreign = d.ToArray();
        foreign[0] = (byte)'X';
        Assert.Equal(Refusal.Foreign, wire.B.Receive(foreign, foreign.Length));
        Assert.Empty(wire.AppliedAtB);
        Assert.Equal(Refusal.None, wire.B.Receive(d, d.Length));
        Assert.Equal(["data"], wire.AppliedAtB);
    }

    [Fact]
    public void A_datagram_far_beyond_the_window_is_refused_without_a_nack()
    {
        var wire = new Wire();
        wire.Handshake();
        var far = new byte[ReplicationWire.HeaderLength + 1 + ReplicationWire.MacLength];
        int length = ReplicationWire.Seal(far, Key, MessageType.Data, IdA, wire.A.Epoch, wire.B.ExpectedSeq + ReplicationLink.Window + 1, 1);

        Assert.Equal(Refusal.OutOfWindow, wire.B.Receive(far, length));
        Assert.DoesNotContain(wire.ToA, d => TypeOf(d) == MessageType.Nack);
        Assert.Empty(wire.AppliedAtB);
    }

    [Fact]
    public void A_peer_that_floods_is_cut_to_the_rate_limit_before_any_mac_is_computed()
    {
        var wire = new Wire(limiterB: new FloodLimiter(perSecond: 1000, burst: 100));
        var junk = new byte[200];
        int length = ReplicationWire.Seal(junk, Encoding.ASCII.GetBytes("not the key, but thirty-two long"), MessageType.Data, IdA, 1, 1, 100);
        int limited = 0;
        for (int i = 0; i < 10_000; i++)
        {
            if (wire.B.Receive(junk, length) == Refusal.RateLimited)
            {
                limited++;
            }
        }

        Assert.Equal(10_000 - 100, limited);
        Assert.Equal(100, wire.B.Refused(Refusal.BadKey));
        wire.Now += 1_000_000_000; // a second later the bucket is full again
        Assert.Equal(Refusal.BadKey, wire.B.Receive(junk, length));
    }

    [Fact]
    public void Data_before_any_hello_is_refused_as_unsynced_and_answered_with_a_hello()
    {
        var wire = new Wire();
        wire.A.SendData("early"u8);
        var early = wire.ToB[0];

        Assert.Equal(Refusal.Unsynced, wire.B.Receive(early, early.Length));
        Assert.Contains(wire.ToA, d => TypeOf(d) == MessageType.Hello);
        Assert.Empty(wire.AppliedAtB);
    }

    [Fact]
    public void A_nack_for_what_the_queue_no_longer_holds_asks_for_a_resync()
    {
        var wire = new Wire();
        wire.Handshake();
        wire.A.SendData("a"u8);
        wire.Settle();
        wire.Tick(25);
        wire.Settle();
        Assert.Equal(0, wire.A.Unacknowledged);

        // B says it misses sequence 1 (acknowledged and dropped long ago): only a resync can help.
        var nack = Nack(wire, from: 1);
        Assert.Equal(Refusal.None, wire.A.Receive(nack, nack.Length));
        Assert.Equal(1, wire.ResyncsAtA);
        Assert.Equal(1, wire.A.Lost);
    }

    private static byte[] Nack(Wire wire, uint from)
    {
        var d = new byte[ReplicationWire.HeaderLength + 12 + ReplicationWire.MacLength];
        BinaryPrimitives.WriteInt64BigEndian(d.AsSpan(ReplicationWire.HeaderLength), wire.A.Epoch);
        BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(ReplicationWire.HeaderLength + 8), from);
        ReplicationWire.Seal(d, Key, MessageType.Nack, IdB, wire.B.Epoch, 1000, 12);
        return d;
    }

    [Fact]
    public void A_body_the_standby_cannot_read_is_counted_as_malformed_and_not_resent_forever()
    {
        var wire = new Wire();
        wire.B.Apply = (_, _, _) => throw new SnapshotException(SnapshotRefusal.Corrupt, "test");
        wire.Handshake();
        wire.A.SendData("bad"u8);
        var refused = wire.Settle();
        wire.Tick(25);
        wire.Settle();

        Assert.Equal([Refusal.Malformed], refused);
        Assert.Equal(0, wire.A.Unacknowledged);
    }
}
