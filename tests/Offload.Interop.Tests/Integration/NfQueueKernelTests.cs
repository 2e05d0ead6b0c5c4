using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Offload.Interop.Netlink;
using Offload.Interop.Nfqueue;
using Offload.Interop.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Offload.Interop.Tests.Integration;

/// <summary>
/// NfQueue against the real kernel, in a namespace lab: UDP from A (192.0.2.1) to B (192.0.2.2) port 9 is
/// queued at A's raw OUTPUT hook, and B's socket shows what the kernel did with our verdicts.
/// </summary>
[Collection("kernel")]
public sealed class NfQueueKernelTests(ITestOutputHelper output)
{
    private const ushort QueueNumber = 7;
    private static readonly IPEndPoint Discard = new(Lab.AddressB, 9);
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(5);

    [LinuxRootFact]
    public void Packet_arrives_whole_and_a_modified_payload_with_a_fixed_checksum_reaches_the_receiver()
    {
        using Lab lab = Lab.Create();
        QueueUdpToDiscard(lab);
        using NfQueue queue = Lab.In(lab.A, () => NfQueue.Open(QueueNumber));
        using Socket sender = Lab.Udp(lab.A);
        using Socket receiver = Lab.Udp(lab.B, Discard);
        int vethA = InterfaceIndex(lab.A, "veth-a");

        sender.SendTo("offload-test-1"u8, Discard);
        var packets = new QueuedPacket[8];
        Assert.Equal(1, ReceiveAtLeast(queue, packets, 1));
        QueuedPacket p = packets[0];

        Assert.Equal(NfHook.LocalOut, p.Hook);
        Assert.Equal((byte)2, p.Family);
        Assert.Equal((ushort)0x0800, p.HwProtocol);
        Assert.Equal(0u, p.InputInterface);
        Assert.Equal((uint)vethA, p.OutputInterface);
        Assert.False(p.IsTruncated);
        Assert.Equal(20 + 8 + 14, p.CapturedLength);
        Assert.Equal(p.CapturedLength, p.OriginalLength);
        Span<byte> payload = p.Payload;
        Assert.Equal(0x45, payload[0]);
        Assert.Equal(17, payload[9]);
        Assert.Equal(Lab.AddressA.GetAddressBytes(), payload[12..16].ToArray());
        Assert.Equal(Lab.AddressB.GetAddressBytes(), payload[16..20].ToArray());
        Assert.Equal((ushort)9, Ipv4Udp.DestinationPort(payload));
        Assert.Equal("offload-test-1", Encoding.ASCII.GetString(Ipv4Udp.UdpPayload(payload)));

        // Rewrite in place (the payload is ours until the next receive), fix the checksum, hand it back.
        Ipv4Udp.UdpPayload(payload)[0] = (byte)'O';
        Ipv4Udp.FixUdpChecksum(payload);
        queue.SetVerdict(p.PacketId, NfVerdict.Accept, payload);
        queue.FlushVerdicts();

        Assert.Equal("Offload-test-1", ReceiveText(receiver));
        Assert.Equal(0, queue.Counters.VerdictErrors);
    }

    [LinuxRootFact]
    public void A_wrong_checksum_is_refused_by_the_receiver_which_proves_the_receiver_checks()
    {
        // Control for the test above: were B's stack to trust checksums (offload flags), a correct checksum
        // would prove nothing.
        using Lab lab = Lab.Create();
        QueueUdpToDiscard(lab);
        using NfQueue queue = Lab.In(lab.A, () => NfQueue.Open(QueueNumber));
        using Socket sender = Lab.Udp(lab.A);
        using Socket receiver = Lab.Udp(lab.B, Discard);
        var packets = new QueuedPacket[8];

        sender.SendTo("bad-checksum"u8, Discard);
        Assert.Equal(1, ReceiveAtLeast(queue, packets, 1));
        Span<byte> payload = packets[0].Payload;
        Ipv4Udp.UdpPayload(payload)[0] = (byte)'B';
        Ipv4Udp.FixUdpChecksum(payload);
        payload[Ipv4Udp.HeaderLength(payload) + 7] ^= 0x01;
        queue.SetVerdict(packets[0].PacketId, NfVerdict.Accept, payload);

        sender.SendTo("good-checksum"u8, Discard);
        Assert.Equal(1, ReceiveAtLeast(queue, packets, 1));
        queue.SetVerdict(packets[0].PacketId, NfVerdict.Accept);
        queue.FlushVerdicts();

        Assert.Equal("good-checksum", ReceiveText(receiver));
        Assert.False(receiver.Poll(TimeSpan.FromMilliseconds(300), SelectMode.SelectRead));
    }

    [LinuxRootFact]
    public void Dropped_packet_never_arrives()
    {
        using Lab lab = Lab.Create();
        QueueUdpToDiscard(lab);
        using NfQueue queue = Lab.In(lab.A, () => NfQueue.Open(QueueNumber));
        using Socket sender = Lab.Udp(lab.A);
        using Socket receiver = Lab.Udp(lab.B, Discard);
        var packets = new QueuedPacket[8];

        sender.SendTo("drop-me"u8, Discard);
        Assert.Equal(1, ReceiveAtLeast(queue, packets, 1));
        uint dropped = packets[0].PacketId;
        queue.SetVerdict(dropped, NfVerdict.Drop);

        sender.SendTo("keep-me"u8, Discard);
        Assert.Equal(1, ReceiveAtLeast(queue, packets, 1));
        Assert.Equal(dropped + 1, packets[0].PacketId);
        queue.SetVerdict(packets[0].PacketId, NfVerdict.Accept);
        queue.FlushVerdicts();

        Assert.Equal("keep-me", ReceiveText(receiver));
        Assert.False(receiver.Poll(TimeSpan.FromMilliseconds(300), SelectMode.SelectRead));
        Assert.Equal(0, queue.Counters.VerdictErrors);
    }

    [LinuxRootFact]
    public void A_mark_given_with_the_verdict_is_what_later_rules_see()
    {
        using Lab lab = Lab.Create();
        QueueUdpToDiscard(lab);

        // mangle OUTPUT comes after raw OUTPUT: it sees the mark we set.
        Lab.Exec(lab.A, "iptables", "-t", "mangle", "-A", "OUTPUT", "-m", "mark", "--mark", "0x99", "-j", "DROP");
        using NfQueue queue = Lab.In(lab.A, () => NfQueue.Open(QueueNumber));
        using Socket sender = Lab.Udp(lab.A);
        using Socket receiver = Lab.Udp(lab.B, Discard);
        var packets = new QueuedPacket[8];

        sender.SendTo("marked"u8, Discard);
        Assert.Equal(1, ReceiveAtLeast(queue, packets, 1));
        Assert.Equal(0u, packets[0].Mark);
        queue.SetVerdict(packets[0].PacketId, NfVerdict.Accept, 0x99u);

        sender.SendTo("unmarked"u8, Discard);
        Assert.Equal(1, ReceiveAtLeast(queue, packets, 1));
        queue.SetVerdict(packets[0].PacketId, NfVerdict.Accept);
        queue.FlushVerdicts();

        Assert.Equal("unmarked", ReceiveText(receiver));
        Assert.False(receiver.Poll(TimeSpan.FromMilliseconds(300), SelectMode.SelectRead));
        string rules = Lab.Exec(lab.A, "iptables", "-t", "mangle", "-L", "OUTPUT", "-v", "-x", "-n");
        Assert.Matches(@"(?m)^\s*1\s+\d+\s+DROP", rules);
    }

    [LinuxRootFact]
    public void Marks_given_by_one_coalesced_batch_verdict_reach_every_packet_it_covers()
    {
        const int count = 5;
        using Lab lab = Lab.Create();
        QueueUdpToDiscard(lab);

        // mangle OUTPUT comes after raw OUTPUT: its counters say which mark each packet left our verdict with.
        Lab.Exec(lab.A, "iptables", "-t", "mangle", "-A", "OUTPUT", "-p", "udp", "--dport", "9", "-m", "mark", "--mark", "0x5a", "-j", "ACCEPT");
        Lab.Exec(lab.A, "iptables", "-t", "mangle", "-A", "OUTPUT", "-p", "udp", "--dport", "9", "-m", "mark", "--mark", "0x0", "-j", "ACCEPT");
        using NfQueue queue = Lab.In(lab.A, () => NfQueue.Open(QueueNumber));
        using Socket sender = Lab.Udp(lab.A);
        using Socket receiver = Lab.Udp(lab.B, Discard);
        var packets = new QueuedPacket[8];

        for (int i = 0; i < count; i++)
        {
            sender.SendTo(Encoding.ASCII.GetBytes($"mark-{i}"), Discard);
        }

        Assert.Equal(count, ReceiveAtLeast(queue, packets, count));
        for (int i = 0; i < count - 1; i++)
        {
            queue.SetVerdict(packets[i].PacketId, NfVerdict.Accept, 0x5au);
        }

        queue.SetVerdict(packets[count - 1].PacketId, NfVerdict.Accept);
        queue.FlushVerdicts();

        for (int i = 0; i < count; i++)
        {
            Assert.Equal($"mark-{i}", ReceiveText(receiver));
        }

        Assert.Equal(1, queue.Counters.BatchVerdictMessages);
        Assert.Equal(2, queue.Counters.VerdictMessages);
        Assert.Equal(0, queue.Counters.VerdictErrors);
        string rules = Lab.Exec(lab.A, "iptables", "-t", "mangle", "-L", "OUTPUT", "-v", "-x", "-n");
        Assert.Matches(@$"(?m)^\s*{count - 1}\s+\d+\s+ACCEPT.*mark match 0x5a", rules);
        Assert.Matches(@"(?m)^\s*1\s+\d+\s+ACCEPT.*mark match 0x0", rules);
    }

    [LinuxRootFact]
    public void Repeat_sends_the_packet_through_the_hook_again_and_so_back_to_us()
    {
        using Lab lab = Lab.Create();
        QueueUdpToDiscard(lab);
        using NfQueue queue = Lab.In(lab.A, () => NfQueue.Open(QueueNumber));
        using Socket sender = Lab.Udp(lab.A);
        using Socket receiver = Lab.Udp(lab.B, Discard);
        var packets = new QueuedPacket[8];

        sender.SendTo("again"u8, Discard);
        Assert.Equal(1, ReceiveAtLeast(queue, packets, 1));
        uint first = packets[0].PacketId;
        queue.SetVerdict(first, NfVerdict.Repeat);

        Assert.Equal(1, ReceiveAtLeast(queue, packets, 1));
        Assert.Equal(first + 1, packets[0].PacketId);
        Assert.Equal("again", Encoding.ASCII.GetString(Ipv4Udp.UdpPayload(packets[0].Payload)));
        queue.SetVerdict(packets[0].PacketId, NfVerdict.Accept);
        queue.FlushVerdicts();

        Assert.Equal("again", ReceiveText(receiver));
        Assert.False(receiver.Poll(TimeSpan.FromMilliseconds(300), SelectMode.SelectRead));
    }

    [LinuxRootFact]
    public void Thousand_packets_in_bursts_all_arrive_through_batched_verdicts()
    {
        const int total = 1000, burst = 50;
        using Lab lab = Lab.Create();
        QueueUdpToDiscard(lab);
        using NfQueue queue = Lab.In(lab.A, () => NfQueue.Open(QueueNumber));
        using Socket sender = Lab.Udp(lab.A);
        using Socket receiver = Lab.Udp(lab.B, Discard);
        receiver.ReceiveTimeout = (int)Patience.TotalMilliseconds;

        var seen = new bool[total];
        int received = 0;
        var receiving = Task.Run(() =>
        {
            var buf = new byte[64];
            while (Volatile.Read(ref received) < total)
            {
                int n = receiver.Receive(buf);
                int i = int.Parse(Encoding.ASCII.GetString(buf, 0, n), System.Globalization.CultureInfo.InvariantCulture);
                if (!seen[i])
                {
                    seen[i] = true;
                    Interlocked.Increment(ref received);
                }
            }
        });

        int handed = 0;
        bool stop = false;
        var consuming = Task.Run(() =>
        {
            var packets = new QueuedPacket[64];
            while (!Volatile.Read(ref stop))
            {
                int n = queue.ReceiveBatch(packets);
                for (int i = 0; i < n; i++)
                {
                    queue.SetVerdict(packets[i].PacketId, NfVerdict.Accept);
                }

                Interlocked.Add(ref handed, n);
            }

            queue.FlushVerdicts();
        });

        for (int i = 0; i < total; i++)
        {
            sender.SendTo(Encoding.ASCII.GetBytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture)), Discard);
            if ((i + 1) % burst == 0)
            {
                // Let B keep up: its socket buffer (rmem_max) is small, and the test is about our batching.
                SpinUntil(() => Volatile.Read(ref received) >= i + 1 - burst);
            }
        }

        bool allArrived = SpinUntil(() => Volatile.Read(ref received) == total);
        Volatile.Write(ref stop, true);
        consuming.Wait(Patience);
        receiving.Wait(TimeSpan.FromSeconds(1));

        NfQueueCounters c = queue.Counters;
        output.WriteLine($"datagrams {c.Datagrams}, packets {c.PacketsReceived}, verdict messages {c.VerdictMessages} ({c.BatchVerdictMessages} batch), sends {c.Sends}");
        Assert.True(allArrived, $"{received} of {total} arrived; counters: handed {handed}, verdicted {c.PacketsVerdicted}, noBuffers {c.NoBufferEvents}");
        Assert.Equal(total, handed);
        Assert.Equal(total, c.PacketsReceived);
        Assert.Equal(total, c.PacketsVerdicted);
        Assert.Equal(0, c.VerdictErrors);
        Assert.Equal(0, c.Malformed + c.Truncated + c.NoBufferEvents);
        Assert.True(c.BatchVerdictMessages > 0, "no batch verdict was sent");
        Assert.True(c.VerdictMessages < total / 2, $"{c.VerdictMessages} verdict messages for {total} packets");
        Assert.True(c.Sends < total, $"{c.Sends} sends for {total} packets");
        Assert.Equal(0, Lab.QueueStatus(lab.A, QueueNumber)![2]);
    }

    [LinuxRootFact]
    public void A_queue_held_by_another_socket_is_refused_with_EPERM_and_is_free_again_after_dispose()
    {
        using Lab lab = Lab.Create();
        NfQueue first = Lab.In(lab.A, () => NfQueue.Open(QueueNumber));
        NetlinkException e;
        try
        {
            e = Assert.Throws<NetlinkException>(() => Lab.In(lab.A, () => NfQueue.Open(QueueNumber)));
            Assert.Equal(Errno.EPERM, e.Errno);
            Assert.Contains("bind NFQUEUE 7", e.Message, StringComparison.Ordinal);
            Assert.Contains("holds queue 7", e.Message, StringComparison.Ordinal);
            Assert.Equal(first.PortId, (uint)Lab.QueueStatus(lab.A, QueueNumber)![1]);
        }
        finally
        {
            first.Dispose();
        }

        Assert.Null(Lab.QueueStatus(lab.A, QueueNumber));
        using NfQueue second = Lab.In(lab.A, () => NfQueue.Open(QueueNumber));
        Assert.Equal(second.PortId, (uint)Lab.QueueStatus(lab.A, QueueNumber)![1]);
    }

    [LinuxRootFact]
    public void Open_configures_copy_mode_range_and_length_as_proc_reports_them()
    {
        using Lab lab = Lab.Create();
        using NfQueue queue = Lab.In(lab.A, () => NfQueue.Open(QueueNumber, new NfQueueOptions { CopyRange = 1500, MaxQueueLength = 321 }));
        long[] status = Lab.QueueStatus(lab.A, QueueNumber)!;

        // queue, peer port, waiting, copy mode, copy range, queue drops, socket drops, last id, 1
        Assert.Equal(queue.PortId, (uint)status[1]);
        Assert.Equal(2, status[3]);
        Assert.Equal(1500, status[4]);
    }

    [LinuxRootFact]
    public void The_kernel_holds_at_most_the_configured_queue_length_and_drops_the_rest()
    {
        using Lab lab = Lab.Create();
        QueueUdpToDiscard(lab);
        using NfQueue queue = Lab.In(lab.A, () => NfQueue.Open(QueueNumber, new NfQueueOptions { MaxQueueLength = 5 }));
        using Socket sender = Lab.Udp(lab.A);
        using Socket receiver = Lab.Udp(lab.B, Discard);

        for (int i = 0; i < 8; i++)
        {
            sender.SendTo("overflow"u8, Discard);
        }

        long[] status = Lab.QueueStatus(lab.A, QueueNumber)!;
        Assert.Equal(5, status[2]);
        Assert.Equal(3, status[5]);
        Assert.False(receiver.Poll(TimeSpan.FromMilliseconds(200), SelectMode.SelectRead));
    }

    [LinuxRootFact]
    public void With_fail_open_the_packets_beyond_the_queue_length_pass()
    {
        using Lab lab = Lab.Create();
        QueueUdpToDiscard(lab);
        using NfQueue queue = Lab.In(lab.A, () => NfQueue.Open(QueueNumber, new NfQueueOptions { MaxQueueLength = 5, FailOpen = true }));
        using Socket sender = Lab.Udp(lab.A);
        using Socket receiver = Lab.Udp(lab.B, Discard);

        for (int i = 0; i < 8; i++)
        {
            sender.SendTo(Encoding.ASCII.GetBytes($"open-{i}"), Discard);
        }

        // The first five wait for us; the last three pass at once, untouched.
        Assert.Equal("open-5", ReceiveText(receiver));
        Assert.Equal("open-6", ReceiveText(receiver));
        Assert.Equal("open-7", ReceiveText(receiver));
        long[] status = Lab.QueueStatus(lab.A, QueueNumber)!;
        Assert.Equal(5, status[2]);
        Assert.Equal(0, status[5]);

        var packets = new QueuedPacket[8];
        Assert.Equal(5, ReceiveAtLeast(queue, packets, 5));
        for (int i = 0; i < 5; i++)
        {
            queue.SetVerdict(packets[i].PacketId, NfVerdict.Accept);
        }

        queue.FlushVerdicts();
        Assert.Equal("open-0", ReceiveText(receiver));
    }

    [LinuxRootFact]
    public void A_received_packet_is_marked_not_verified_unless_its_sender_left_the_checksum_to_the_device()
    {
        // nfnetlink_queue sets CSUM_NOTVERIFIED at PREROUTING unless skb_csum_unnecessary: a checksum the sender's stack
        // computed (veth-a's transmit checksumming off) arrives on veth-b as CHECKSUM_NONE, unverified; one left to the
        // device (CHECKSUM_PARTIAL, veth's default) is the stack's own, summed by the kernel before it is copied to us.
        using Lab lab = Lab.Create();
        Lab.Exec(lab.B, "iptables", "-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", "9", "-j", "NFQUEUE", "--queue-num", "7");
        using NfQueue queue = Lab.In(lab.B, () => NfQueue.Open(QueueNumber));
        using Socket sender = Lab.Udp(lab.A);
        using Socket receiver = Lab.Udp(lab.B, Discard);
        var packets = new QueuedPacket[8];

        QueuedPacket Send(string text)
        {
            sender.SendTo(Encoding.ASCII.GetBytes(text), Discard);
            Assert.Equal(1, ReceiveAtLeast(queue, packets, 1));
            QueuedPacket p = packets[0];
            queue.SetVerdict(p.PacketId, NfVerdict.Accept);
            queue.FlushVerdicts();
            Assert.Equal(text, ReceiveText(receiver));
            output.WriteLine($"{text}: hook {p.Hook}, skb info {p.SkbInfo}");
            return p;
        }

        Lab.Exec(lab.A, "ethtool", "-K", "veth-a", "tx", "off");
        QueuedPacket software = Send("summed-by-the-stack");
        Assert.Equal(NfHook.PreRouting, software.Hook);
        Assert.Equal(NfqSkbInfo.ChecksumNotVerified, software.SkbInfo);
        Assert.False(software.ChecksumVerified);

        Lab.Exec(lab.A, "ethtool", "-K", "veth-a", "tx", "on");
        QueuedPacket offloaded = Send("left-to-the-device");
        Assert.Equal(NfqSkbInfo.None, offloaded.SkbInfo);
        Assert.True(offloaded.ChecksumVerified);
    }

    [LinuxRootFact]
    public void With_GSO_whole_super_packets_arrive_with_a_partial_checksum_and_without_it_only_segments()
    {
        (int largest, NfqSkbInfo flags, long bytes) withGso = StreamThroughQueue(gso: true);
        (int largest, NfqSkbInfo flags, long bytes) without = StreamThroughQueue(gso: false);
        output.WriteLine($"GSO: largest {withGso.largest}, flags seen {withGso.flags}; without: largest {without.largest}, flags seen {without.flags}");

        Assert.Equal(256 * 1024, withGso.bytes);
        Assert.Equal(256 * 1024, without.bytes);
        Assert.True(withGso.largest > 1500, $"largest queued packet with GSO: {withGso.largest}");
        Assert.True(withGso.flags.HasFlag(NfqSkbInfo.Gso));
        Assert.True(withGso.flags.HasFlag(NfqSkbInfo.ChecksumNotReady));
        Assert.True(without.largest <= 1500, $"largest queued packet without GSO: {without.largest}");
        Assert.False(without.flags.HasFlag(NfqSkbInfo.Gso));
        Assert.False(without.flags.HasFlag(NfqSkbInfo.ChecksumNotReady));
    }

    private static (int Largest, NfqSkbInfo Flags, long Bytes) StreamThroughQueue(bool gso)
    {
        using Lab lab = Lab.Create();
        Lab.Exec(lab.A, "iptables", "-t", "raw", "-A", "OUTPUT", "-p", "tcp", "--dport", "5001", "-j", "NFQUEUE", "--queue-num", "7");
        using NfQueue queue = Lab.In(lab.A, () => NfQueue.Open(QueueNumber, new NfQueueOptions { Gso = gso }));
        using Socket listener = Lab.In(lab.B, () =>
        {
            var l = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            l.Bind(new IPEndPoint(Lab.AddressB, 5001));
            l.Listen();
            return l;
        });
        using Socket client = Lab.In(lab.A, () => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));

        int largest = 0;
        NfqSkbInfo flags = NfqSkbInfo.None;
        bool stop = false;
        var consuming = Task.Run(() =>
        {
            var packets = new QueuedPacket[64];
            while (!Volatile.Read(ref stop))
            {
                int n = queue.ReceiveBatch(packets);
                for (int i = 0; i < n; i++)
                {
                    largest = Math.Max(largest, packets[i].CapturedLength);
                    flags |= packets[i].SkbInfo;
                    queue.SetVerdict(packets[i].PacketId, NfVerdict.Accept);
                }
            }

            queue.FlushVerdicts();
        });

        long received = 0;
        try
        {
            Task<long> server = Task.Run(() =>
            {
                using Socket s = listener.Accept();
                var buf = new byte[65536];
                long total = 0;
                int n;
                while ((n = s.Receive(buf)) > 0)
                {
                    total += n;
                }

                return total;
            });
            client.Connect(new IPEndPoint(Lab.AddressB, 5001));
            client.Send(new byte[256 * 1024]);
            client.Shutdown(SocketShutdown.Send);
            if (server.Wait(Patience))
            {
                received = server.Result;
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            consuming.Wait(Patience);
        }

        return (largest, flags, received);
    }

    [LinuxRootFact]
    public void Obsolete_PF_BIND_is_acknowledged_and_makes_the_kernel_ignore_the_rest_of_its_message()
    {
        using Lab lab = Lab.Create();
        using NfQueue queue = Lab.In(lab.A, () => NfQueue.Open(QueueNumber, new NfQueueOptions { CopyRange = 1500 }));

        // PF_BIND alone: harmless, acknowledged.
        Request(queue, NfqConstants.NFQNL_CFG_CMD_PF_BIND, copyRange: -1);
        Assert.Equal(1500, Lab.QueueStatus(lab.A, QueueNumber)![4]);

        // PF_BIND with parameters: acknowledged, but the parameters are silently dropped...
        Request(queue, NfqConstants.NFQNL_CFG_CMD_PF_BIND, copyRange: 100);
        Assert.Equal(1500, Lab.QueueStatus(lab.A, QueueNumber)![4]);

        // ...which the same parameters without PF_BIND do change.
        Request(queue, NfqConstants.NFQNL_CFG_CMD_NONE, copyRange: 100);
        Assert.Equal(100, Lab.QueueStatus(lab.A, QueueNumber)![4]);
    }

    private static void Request(NfQueue queue, byte command, int copyRange)
    {
        uint sequence = queue.NextSequence();
        var buffer = new byte[128];
        var w = new NetlinkMessageWriter(buffer);
        NfqMessages.WriteConfig(ref w, queue.QueueNumber, sequence, ack: true, command, NfqConstants.NFQNL_COPY_PACKET, copyRange);
        queue.Request(w.WrittenSpan, sequence, "configure");
    }

    internal static void QueueUdpToDiscard(Lab lab, int queue = QueueNumber) =>
        Lab.Exec(lab.A, "iptables", "-t", "raw", "-A", "OUTPUT", "-p", "udp", "--dport", "9", "-j", "NFQUEUE", "--queue-num", queue.ToString(System.Globalization.CultureInfo.InvariantCulture));

    internal static int InterfaceIndex(string ns, string name)
    {
        string line = Shell.Run("ip", "-n", ns, "-o", "link", "show", name);
        return int.Parse(line[..line.IndexOf(':', StringComparison.Ordinal)], System.Globalization.CultureInfo.InvariantCulture);
    }

    internal static int ReceiveAtLeast(NfQueue queue, Span<QueuedPacket> packets, int wanted)
    {
        var sw = Stopwatch.StartNew();
        int n = 0;
        while (n < wanted && sw.Elapsed < Patience)
        {
            n += queue.ReceiveBatch(packets[n..]);
        }

        return n;
    }

    internal static string ReceiveText(Socket receiver)
    {
        receiver.ReceiveTimeout = (int)Patience.TotalMilliseconds;
        var buf = new byte[2048];
        int n = receiver.Receive(buf);
        return Encoding.ASCII.GetString(buf, 0, n);
    }

    private static bool SpinUntil(Func<bool> condition)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > Patience)
            {
                return false;
            }

            Thread.Sleep(1);
        }

        return true;
    }
}
