using System.Buffers.Binary;
using Offload.Interop.Netlink;
using Offload.Interop.Nfqueue;
using Offload.Interop.Tests.Support;
using Xunit;
using static Offload.Interop.Netlink.NetlinkConstants;
using static Offload.Interop.Nfqueue.NfqConstants;

namespace Offload.Interop.Tests.Nfqueue;

/// <summary>
/// NfQueue's protocol logic over a fake socket that replays recorded kernel datagrams and captures what we send:
/// binding and its errors, malformed input, and exactly which verdict messages leave.
/// </summary>
public sealed class NfQueueReplayTests
{
    private static readonly NfQueueOptions Options = new() { MaxBatch = 8, AckTimeout = TimeSpan.FromMilliseconds(300) };

    [Fact]
    public void Open_sends_one_configuration_and_waits_for_its_acknowledgement()
    {
        var t = new FakeTransport();
        using NfQueue queue = NfQueue.Open(t, 7, new NfQueueOptions { FailOpen = true, Gso = true, MaxQueueLength = 4096, CopyRange = 2048 }, 1 << 20);

        byte[] request = Assert.Single(t.Sent);
        var reader = new NetlinkMessageReader(request);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.Equal(MessageType(NFQNL_MSG_CONFIG), m.Type);
        Assert.Equal(NLM_F_REQUEST | NLM_F_ACK, m.Flags);
        var attrs = new Dictionary<ushort, byte[]>();
        AttributeReader r = m.GetAttributes(4);
        while (r.TryRead(out NetlinkAttribute a))
        {
            attrs[a.Type] = a.Value.ToArray();
        }

        Assert.Equal([NFQNL_CFG_CMD_BIND, 0, 0, 0], attrs[NFQA_CFG_CMD]);
        Assert.Equal([0, 0, 8, 0, NFQNL_COPY_PACKET], attrs[NFQA_CFG_PARAMS]);
        Assert.Equal(4096u, BinaryPrimitives.ReadUInt32BigEndian(attrs[NFQA_CFG_QUEUE_MAXLEN]));
        Assert.Equal(0x1Fu, BinaryPrimitives.ReadUInt32BigEndian(attrs[NFQA_CFG_MASK]));
        Assert.Equal(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO, BinaryPrimitives.ReadUInt32BigEndian(attrs[NFQA_CFG_FLAGS]));
        Assert.Equal(5, attrs.Count);
    }

    [Fact]
    public void Open_refused_by_the_kernel_throws_a_typed_error_with_a_hint()
    {
        var t = new FakeTransport { Answer = (seq, _) => [Recorded.ErrorWithSequence(Recorded.BindEperm, seq)] };
        NetlinkException e = Assert.Throws<NetlinkException>(() => NfQueue.Open(t, 7, Options, 1 << 20));
        Assert.Equal(Errno.EPERM, e.Errno);
        Assert.Equal("bind NFQUEUE 7", e.Operation);
        Assert.Contains("CAP_NET_ADMIN", e.Message, StringComparison.Ordinal);
        Assert.IsAssignableFrom<IOException>(e);
    }

    [Fact]
    public void Open_error_carries_the_kernels_extended_ack_text()
    {
        var t = new FakeTransport { Answer = (seq, _) => [Recorded.ErrorWithSequence(Recorded.PolicyExtack, seq)] };
        NetlinkException e = Assert.Throws<NetlinkException>(() => NfQueue.Open(t, 7, Options, 1 << 20));
        Assert.Equal(Errno.ERANGE, e.Errno);
        Assert.Equal("Attribute failed policy validation", e.KernelMessage);
        Assert.Contains("kernel says: Attribute failed policy validation", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_without_an_answer_times_out()
    {
        var t = new FakeTransport { Answer = null };
        NetlinkException e = Assert.Throws<NetlinkException>(() => NfQueue.Open(t, 7, Options, 1 << 20));
        Assert.Equal(Errno.ETIMEDOUT, e.Errno);
    }

    [Fact]
    public void Packets_that_race_the_acknowledgement_are_kept_for_the_first_receive()
    {
        var t = new FakeTransport();
        t.BeforeAnswer.Add(Recorded.PacketWithId(Recorded.PacketLocalOut, 1));
        t.BeforeAnswer.Add(Recorded.PacketWithId(Recorded.PacketLocalOut, 2));
        using NfQueue queue = NfQueue.Open(t, 7, Options, 1 << 20);
        t.Incoming.Enqueue(new(Recorded.PacketWithId(Recorded.PacketLocalOut, 3)));

        var packets = new QueuedPacket[8];
        Assert.Equal(2, queue.ReceiveBatch(packets));
        Assert.Equal([1u, 2u], packets[..2].Select(p => p.PacketId));
        Assert.Equal(1, queue.ReceiveBatch(packets));
        Assert.Equal(3u, packets[0].PacketId);
    }

    [Fact]
    public void A_run_of_alike_verdicts_in_order_leaves_as_one_batch_message()
    {
        (FakeTransport t, NfQueue queue) = OpenWithPackets(1, 2, 3, 4, 5);
        using (queue)
        {
            for (uint id = 1; id <= 5; id++)
            {
                queue.SetVerdict(id, NfVerdict.Accept);
            }

            queue.FlushVerdicts();
            Assert.Equal(["batch accept 5"], Decode(t.Sent[^1]));
            Assert.Equal(1, queue.Counters.BatchVerdictMessages);
            Assert.Equal(5, queue.Counters.PacketsVerdicted);
        }
    }

    [Fact]
    public void Verdicts_that_differ_split_the_run_in_the_order_given()
    {
        (FakeTransport t, NfQueue queue) = OpenWithPackets(1, 2, 3, 4, 5, 6);
        using (queue)
        {
            queue.SetVerdict(1, NfVerdict.Accept);
            queue.SetVerdict(2, NfVerdict.Accept);
            queue.SetVerdict(3, NfVerdict.Drop);
            queue.SetVerdict(4, NfVerdict.Accept, [0x45, 0, 0, 20]);
            queue.SetVerdict(5, NfVerdict.Accept);
            queue.SetVerdict(6, NfVerdict.Accept, 0x77u);
            queue.FlushVerdicts();

            Assert.Equal(
                ["batch accept 2", "verdict drop 3", "verdict accept 4 payload 4", "verdict accept 5", "verdict accept 6 mark 119"],
                Decode(t.Sent[^1]));
            Assert.Equal(1, queue.Counters.Sends);
        }
    }

    [Fact]
    public void A_run_of_verdicts_with_the_same_mark_leaves_as_one_batch_message_carrying_the_mark()
    {
        (FakeTransport t, NfQueue queue) = OpenWithPackets(1, 2, 3, 4);
        using (queue)
        {
            for (uint id = 1; id <= 4; id++)
            {
                queue.SetVerdict(id, NfVerdict.Accept, 0x10u);
            }

            queue.FlushVerdicts();
            Assert.Equal(["batch accept 4 mark 16"], Decode(t.Sent[^1]));
            Assert.Equal(1, queue.Counters.BatchVerdictMessages);
            Assert.Equal(4, queue.Counters.PacketsVerdicted);
            Assert.Equal(0, queue.PendingVerdictBytes);
        }
    }

    [Fact]
    public void A_run_splits_where_the_mark_or_its_presence_changes()
    {
        (FakeTransport t, NfQueue queue) = OpenWithPackets(1, 2, 3, 4, 5, 6, 7, 8);
        using (queue)
        {
            queue.SetVerdict(1, NfVerdict.Accept, 0x10u);
            queue.SetVerdict(2, NfVerdict.Accept, 0x10u);
            queue.SetVerdict(3, NfVerdict.Accept, 0x20u);
            queue.SetVerdict(4, NfVerdict.Accept, 0x20u);
            queue.SetVerdict(5, NfVerdict.Accept);
            queue.SetVerdict(6, NfVerdict.Accept);

            // Mark 0 is a mark (it clears skb->mark); no mark leaves the packet's own.
            queue.SetVerdict(7, NfVerdict.Accept, 0u);
            queue.SetVerdict(8, NfVerdict.Drop, 0u);
            queue.FlushVerdicts();

            Assert.Equal(
                ["batch accept 2 mark 16", "batch accept 4 mark 32", "batch accept 6", "verdict accept 7 mark 0", "verdict drop 8 mark 0"],
                Decode(t.Sent[^1]));
            Assert.Equal(8, queue.Counters.PacketsVerdicted);
        }
    }

    [Fact]
    public void A_marked_verdict_for_a_packet_with_an_older_one_undecided_leaves_alone()
    {
        (FakeTransport t, NfQueue queue) = OpenWithPackets(1, 2, 3);
        using (queue)
        {
            queue.SetVerdict(2, NfVerdict.Accept, 0x10u);
            queue.SetVerdict(3, NfVerdict.Accept, 0x10u);
            Assert.Equal(2 * NfqMessages.VerdictSize(hasMark: true, -1), queue.PendingVerdictBytes);
            queue.SetVerdict(1, NfVerdict.Accept, 0x10u);
            Assert.Equal(3 * NfqMessages.VerdictSize(hasMark: true, -1), queue.PendingVerdictBytes);
            queue.FlushVerdicts();
            Assert.Equal(["verdict accept 2 mark 16", "verdict accept 3 mark 16", "verdict accept 1 mark 16"], Decode(t.Sent[^1]));
        }
    }

    [Fact]
    public void No_batch_covers_an_older_packet_still_undecided()
    {
        (FakeTransport t, NfQueue queue) = OpenWithPackets(1, 2, 3);
        using (queue)
        {
            // 1 is still being worked on: a batch up to 3 would decide it too.
            queue.SetVerdict(2, NfVerdict.Accept);
            queue.SetVerdict(3, NfVerdict.Accept);
            queue.FlushVerdicts();
            Assert.Equal(["verdict accept 2", "verdict accept 3"], Decode(t.Sent[^1]));

            queue.SetVerdict(1, NfVerdict.Drop);
            queue.FlushVerdicts();
            Assert.Equal(["verdict drop 1"], Decode(t.Sent[^1]));
        }
    }

    [Fact]
    public void Out_of_order_answers_still_merge_once_the_oldest_is_decided()
    {
        (FakeTransport t, NfQueue queue) = OpenWithPackets(1, 2, 3, 4);
        using (queue)
        {
            queue.SetVerdict(3, NfVerdict.Drop);
            queue.SetVerdict(1, NfVerdict.Accept);
            queue.SetVerdict(2, NfVerdict.Accept);
            queue.SetVerdict(4, NfVerdict.Accept);
            queue.FlushVerdicts();

            // The kernel handles 3 first; the batch up to 4 then finds exactly 1, 2 and 4.
            Assert.Equal(["verdict drop 3", "batch accept 4"], Decode(t.Sent[^1]));
        }
    }

    [Fact]
    public void Explicit_batch_through_an_id()
    {
        (FakeTransport t, NfQueue queue) = OpenWithPackets(1, 2, 3);
        using (queue)
        {
            queue.SetVerdictThrough(3, NfVerdict.Repeat);
            queue.FlushVerdicts();
            Assert.Equal(["batch repeat 3"], Decode(t.Sent[^1]));
        }
    }

    [Fact]
    public void Coalescing_can_be_switched_off()
    {
        var t = new FakeTransport();
        using NfQueue queue = NfQueue.Open(t, 7, new NfQueueOptions { CoalesceVerdicts = false }, 1 << 20);
        Deliver(t, queue, 1, 2);
        queue.SetVerdict(1, NfVerdict.Accept);
        queue.SetVerdict(2, NfVerdict.Accept);
        queue.FlushVerdicts();
        Assert.Equal(["verdict accept 1", "verdict accept 2"], Decode(t.Sent[^1]));
    }

    [Fact]
    public void Pending_verdicts_leave_before_the_next_wait()
    {
        (FakeTransport t, NfQueue queue) = OpenWithPackets(1);
        using (queue)
        {
            queue.SetVerdict(1, NfVerdict.Accept);
            t.Log.Clear();
            Assert.Equal(0, queue.ReceiveBatch(new QueuedPacket[4]));
            Assert.Equal(["send", "receive"], t.Log);
            Assert.Equal(["verdict accept 1"], Decode(t.Sent[^1]));
        }
    }

    [Fact]
    public void Malformed_truncated_foreign_and_error_datagrams_are_counted_and_answered_not_thrown()
    {
        var t = new FakeTransport();
        using NfQueue queue = NfQueue.Open(t, 7, new NfQueueOptions { UnreadableVerdict = NfVerdict.Drop }, 1 << 20);
        t.Incoming.Enqueue(new(Recorded.PacketWithId(Recorded.PacketLocalOut, 1)));
        t.Incoming.Enqueue(new(Synth.Packet(2, Synth.Ipv4(2), shortMark: true)));
        t.Incoming.Enqueue(new(Recorded.PacketWithId(Recorded.PacketPrerouting, 3), Truncate: true));
        t.Incoming.Enqueue(new(Recorded.PacketWithId(Recorded.PacketLocalOut, 99), Sender: 4242));
        t.Incoming.Enqueue(new(Recorded.Load(Recorded.VerdictEnoent)));
        t.Incoming.Enqueue(new([1, 2, 3]));
        t.Incoming.Enqueue(new(Recorded.PacketWithId(Recorded.PacketLocalOut, 4)));

        var packets = new QueuedPacket[8];
        Assert.Equal(2, queue.ReceiveBatch(packets));
        Assert.Equal([1u, 4u], packets[..2].Select(p => p.PacketId));
        queue.SetVerdict(1, NfVerdict.Accept);
        queue.SetVerdict(4, NfVerdict.Accept);
        queue.FlushVerdicts();

        NfQueueCounters c = queue.Counters;
        Assert.Equal(2, c.Malformed);
        Assert.Equal(1, c.Truncated);
        Assert.Equal(1, c.ForeignDatagrams);
        Assert.Equal(1, c.VerdictErrors);
        Assert.Equal(Errno.ENOENT, c.LastVerdictError);
        Assert.Equal(2, c.AutomaticVerdicts);

        // 2 and 3 are answered with drop as they are met; the caller's 1 and 4 then merge, since nothing older
        // than 4 is undecided once 1 is (the kernel handles the drops first).
        Assert.Equal(["verdict drop 2", "verdict drop 3", "batch accept 4"], Decode(t.Sent[^1]));
    }

    [Fact]
    public void What_must_precede_the_verdicts_is_sent_just_before_they_leave_and_not_when_none_wait()
    {
        (FakeTransport t, NfQueue queue) = OpenWithPackets(1, 2);
        using (queue)
        {
            var sendsSeen = new List<int>();
            queue.BeforeVerdictsSent = () => sendsSeen.Add(t.Sent.Count);
            queue.FlushVerdicts();
            Assert.Empty(sendsSeen);

            int before = t.Sent.Count;
            queue.SetVerdict(1, NfVerdict.Accept);
            queue.SetVerdict(2, NfVerdict.Drop);
            queue.FlushVerdicts();

            // Called once, when the verdicts had not left yet; then they left in one send.
            Assert.Equal([before], sendsSeen);
            Assert.Equal(before + 1, t.Sent.Count);
        }
    }

    [Fact]
    public void Lost_messages_are_counted_and_receiving_goes_on()
    {
        (FakeTransport t, NfQueue queue) = OpenWithPackets();
        using (queue)
        {
            t.Incoming.Enqueue(new(null));
            t.Incoming.Enqueue(new(Recorded.PacketWithId(Recorded.PacketLocalOut, 10)));
            var packets = new QueuedPacket[4];
            Assert.Equal(1, queue.ReceiveBatch(packets));
            Assert.Equal(10u, packets[0].PacketId);
            Assert.Equal(1, queue.Counters.NoBufferEvents);
        }
    }

    [Fact]
    public void A_datagram_with_more_packets_than_room_is_resumed_without_receiving_again()
    {
        var t = new FakeTransport();
        using NfQueue queue = NfQueue.Open(t, 7, Options, 1 << 20);
        var buffer = new byte[512];
        var w = new NetlinkMessageWriter(buffer);
        Synth.WritePacket(ref w, 1, Synth.Ipv4(1));
        Synth.WritePacket(ref w, 2, Synth.Ipv4(2));
        Synth.WritePacket(ref w, 3, Synth.Ipv4(3));
        t.Incoming.Enqueue(new(buffer[..w.Length]));

        var packets = new QueuedPacket[2];
        Assert.Equal(2, queue.ReceiveBatch(packets));
        Assert.Equal((byte)2, packets[1].Payload[^1]);
        t.Log.Clear();
        Assert.Equal(1, queue.ReceiveBatch(packets));
        Assert.Equal(3u, packets[0].PacketId);
        Assert.Equal((byte)3, packets[0].Payload[^1]);
        Assert.DoesNotContain("receive", t.Log);
    }

    [Fact]
    public void Dispose_sends_pending_verdicts_then_unbinds()
    {
        (FakeTransport t, NfQueue queue) = OpenWithPackets(1);
        queue.SetVerdict(1, NfVerdict.Accept);
        queue.Dispose();
        queue.Dispose();

        Assert.Equal(["verdict accept 1"], Decode(t.Sent[^2]));
        Assert.Equal(["config unbind"], Decode(t.Sent[^1]));
        Assert.True(t.Disposed);
        Assert.Throws<ObjectDisposedException>(() => queue.ReceiveBatch(new QueuedPacket[1]));
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        (_, NfQueue queue) = OpenWithPackets(1);
        using (queue)
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => queue.SetVerdict(1, (NfVerdict)2));
            Assert.Throws<ArgumentOutOfRangeException>(() => queue.SetVerdict(1, NfVerdict.Accept, ReadOnlySpan<byte>.Empty));
            Assert.Throws<ArgumentOutOfRangeException>(() => queue.SetVerdict(1, NfVerdict.Accept, new byte[65532]));
            Assert.Throws<ArgumentOutOfRangeException>(() => NfQueue.Open(new FakeTransport(), 1, new NfQueueOptions { SendBufferSize = 1000 }, 1 << 20));
        }
    }

    [Fact]
    public void Large_payload_verdicts_are_split_over_sends_that_fit_the_socket()
    {
        (FakeTransport t, NfQueue queue) = OpenWithPackets(1, 2, 3, 4, 5);
        using (queue)
        {
            var big = new byte[60000];
            for (uint id = 1; id <= 5; id++)
            {
                queue.SetVerdict(id, NfVerdict.Accept, big);
            }

            queue.FlushVerdicts();
            long sends = queue.Counters.Sends;
            Assert.True(sends >= 2, $"{sends} sends");
            Assert.All(t.Sent.Skip(1), s => Assert.True(s.Length <= 256 * 1024));
            Assert.Equal(5, t.Sent.Skip(1).Sum(s => Decode(s).Count));
        }
    }

    [Fact]
    public void Receiving_and_answering_allocates_nothing()
    {
        var t = new FakeTransport();
        using NfQueue queue = NfQueue.Open(t, 7, new NfQueueOptions { MaxBatch = 16 }, 1 << 20);
        t.RecordSends = false;
        byte[][] datagrams = Enumerable.Range(1, 4000).Select(i => Recorded.PacketWithId(Recorded.PacketLocalOut, (uint)i)).ToArray();
        var packets = new QueuedPacket[16];
        byte[] rewritten = new byte[43];

        Cycle(0, 1000);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Cycle(1000, 4000);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Equal(4000, queue.Counters.PacketsReceived);

        void Cycle(int from, int to)
        {
            for (int chunk = from; chunk < to; chunk += 500)
            {
                Chunk(chunk, Math.Min(chunk + 500, to));
            }
        }

        void Chunk(int from, int to)
        {
            for (int i = from; i < to; i++)
            {
                t.Incoming.Enqueue(new(datagrams[i]));
            }

            int handled = 0;
            while (handled < to - from)
            {
                int n = queue.ReceiveBatch(packets);
                for (int j = 0; j < n; j++)
                {
                    ref QueuedPacket p = ref packets[j];
                    if (p.PacketId % 3 == 0)
                    {
                        p.Payload.CopyTo(rewritten);
                        queue.SetVerdict(p.PacketId, NfVerdict.Accept, rewritten, 5u);
                    }
                    else if (p.PacketId % 3 == 1)
                    {
                        queue.SetVerdict(p.PacketId, NfVerdict.Accept, 7u);
                    }
                    else
                    {
                        queue.SetVerdict(p.PacketId, NfVerdict.Accept);
                    }
                }

                handled += n;
            }

            queue.FlushVerdicts();
        }
    }

    private static (FakeTransport, NfQueue) OpenWithPackets(params uint[] ids)
    {
        var t = new FakeTransport();
        NfQueue queue = NfQueue.Open(t, 7, Options, 1 << 20);
        Deliver(t, queue, ids);
        return (t, queue);
    }

    private static void Deliver(FakeTransport t, NfQueue queue, params uint[] ids)
    {
        if (ids.Length == 0)
        {
            return;
        }

        foreach (uint id in ids)
        {
            t.Incoming.Enqueue(new(Recorded.PacketWithId(Recorded.PacketLocalOut, id)));
        }

        var packets = new QueuedPacket[ids.Length];
        int n = 0;
        while (n < ids.Length)
        {
            int got = queue.ReceiveBatch(packets.AsSpan(n));
            Assert.NotEqual(0, got);
            n += got;
        }

        Assert.Equal(ids, packets.Select(p => p.PacketId));
    }

    /// <summary>What a sent datagram says, one line per message.</summary>
    private static List<string> Decode(byte[] datagram)
    {
        var lines = new List<string>();
        var reader = new NetlinkMessageReader(datagram);
        while (reader.TryRead(out NetlinkMessage m))
        {
            Assert.Equal(7, BinaryPrimitives.ReadUInt16BigEndian(m.Payload[2..]));
            string line = "";
            AttributeReader attrs = m.GetAttributes(4);
            while (attrs.TryRead(out NetlinkAttribute a))
            {
                line += a.Type switch
                {
                    NFQA_VERDICT_HDR => $" {Verdict(BinaryPrimitives.ReadUInt32BigEndian(a.Value))} {BinaryPrimitives.ReadUInt32BigEndian(a.Value[4..])}",
                    NFQA_MARK => $" mark {BinaryPrimitives.ReadUInt32BigEndian(a.Value)}",
                    NFQA_PAYLOAD => $" payload {a.Value.Length}",
                    NFQA_CFG_CMD => a.Value[0] == NFQNL_CFG_CMD_UNBIND ? " unbind" : $" cmd {a.Value[0]}",
                    _ => $" attr {a.Type}",
                };
            }

            string kind = m.Type switch
            {
                _ when m.Type == MessageType(NFQNL_MSG_VERDICT) => "verdict",
                _ when m.Type == MessageType(NFQNL_MSG_VERDICT_BATCH) => "batch",
                _ when m.Type == MessageType(NFQNL_MSG_CONFIG) => "config",
                _ => $"type {m.Type}",
            };
            lines.Add(kind + line);
        }

        Assert.False(reader.IsMalformed);
        return lines;
    }

    private static string Verdict(uint v) => v switch
    {
        NF_ACCEPT => "accept",
        NF_DROP => "drop",
        NF_REPEAT => "repeat",
        _ => v.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
