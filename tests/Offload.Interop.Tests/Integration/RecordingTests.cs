using System.Net;
using System.Net.Sockets;
using Offload.Interop.Netlink;
using Offload.Interop.Nfqueue;
using Offload.Interop.Tests.Support;
using Xunit;
using static Offload.Interop.Netlink.NetlinkConstants;
using static Offload.Interop.Nfqueue.NfqConstants;

namespace Offload.Interop.Tests.Integration;

/// <summary>
/// Speaks NFQUEUE by hand over a raw <see cref="NetlinkSocket"/> (writer and reader only, no NfQueue), checks
/// each datagram the kernel answers, and, when OFFLOAD_RECORD_NETLINK_DATA names a directory, saves them there:
/// that is how Data/*.bin were made (OFFLOAD_RECORD_NETLINK_DATA=$PWD/Data dotnet test --filter Recording).
/// </summary>
[Collection("kernel")]
public sealed class RecordingTests
{
    private const ushort Queue = 9;
    private static readonly IPEndPoint Discard = new(Lab.AddressB, 9);

    [LinuxRootFact]
    public void Recording_raw_kernel_messages()
    {
        using Lab lab = Lab.Create();

        // Queued at mangle OUTPUT after a MARK, so the message carries NFQA_MARK as well.
        Lab.Exec(lab.A, "iptables", "-t", "mangle", "-A", "OUTPUT", "-p", "udp", "--dport", "9", "-j", "MARK", "--set-mark", "42");
        Lab.Exec(lab.A, "iptables", "-t", "mangle", "-A", "OUTPUT", "-p", "udp", "--dport", "9", "-j", "NFQUEUE", "--queue-num", "9");
        using NetlinkSocket socket = Lab.In(lab.A, () => NetlinkSocket.Open(NETLINK_NETFILTER));
        socket.SetCapAck(true);
        socket.SetExtendedAck(true);
        socket.ReceiveTimeout = TimeSpan.FromSeconds(5);
        using Socket sender = Lab.Udp(lab.A);
        using Socket receiver = Lab.Udp(lab.B, Discard);
        var buffer = new byte[70000];
        var send = new byte[1024];

        // 1. Bind with copy mode, acknowledged.
        uint bindSequence = socket.NextSequence();
        var w = new NetlinkMessageWriter(send);
        NfqMessages.WriteConfig(ref w, Queue, bindSequence, ack: true, NFQNL_CFG_CMD_BIND, NFQNL_COPY_PACKET, 0xFFFF);
        socket.SendBatch(w.WrittenSpan);
        byte[] ack = ReceiveOne(socket, buffer);
        AssertError(ack, bindSequence, Errno.None);
        Save("ack-config-bind.bin", ack);

        // 2. A packet.
        sender.SendTo("offload-capture"u8, Discard);
        byte[] packet = ReceiveOne(socket, buffer);
        var reader = new NetlinkMessageReader(packet);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.Equal(MessageType(NFQNL_MSG_PACKET), m.Type);
        Assert.Equal(PacketParseStatus.Ok, NfqPacketParser.Parse(packet, m, out QueuedPacket p));
        Assert.Equal(42u, p.Mark);
        Assert.Equal(NfHook.LocalOut, p.Hook);
        Save("packet-udp-ipv4-local-out.bin", packet);

        // 3. A verdict for an id the kernel does not hold: an error, though no acknowledgement was asked for.
        uint verdictSequence = socket.NextSequence();
        w = new NetlinkMessageWriter(send);
        NfqMessages.WriteVerdict(ref w, Queue, verdictSequence, p.PacketId + 1000, NF_ACCEPT, false, 0, default, false);
        socket.SendBatch(w.WrittenSpan);
        byte[] enoent = ReceiveOne(socket, buffer);
        AssertError(enoent, verdictSequence, Errno.ENOENT);
        Save("error-verdict-enoent.bin", enoent);

        // 4. An attribute too short for its policy: refused, with the kernel's explanation (extended ack).
        uint badSequence = socket.NextSequence();
        w = new NetlinkMessageWriter(send);
        w.BeginMessage(MessageType(NFQNL_MSG_CONFIG), NLM_F_REQUEST | NLM_F_ACK, badSequence);
        w.WriteNfGenMsg(NFPROTO_UNSPEC, NFNETLINK_V0, Queue);
        w.PutU8(NFQA_CFG_CMD, NFQNL_CFG_CMD_BIND);
        w.EndMessage();
        socket.SendBatch(w.WrittenSpan);
        byte[] policy = ReceiveOne(socket, buffer);
        Errno policyErrno = AssertError(policy, badSequence, expected: null);
        Assert.NotEqual(Errno.None, policyErrno);
        Save("error-config-policy-extack.bin", policy);

        // 5. A second socket binding the same queue.
        using NetlinkSocket other = Lab.In(lab.A, () => NetlinkSocket.Open(NETLINK_NETFILTER));
        other.SetCapAck(true);
        other.SetExtendedAck(true);
        other.ReceiveTimeout = TimeSpan.FromSeconds(5);
        uint otherSequence = other.NextSequence();
        w = new NetlinkMessageWriter(send);
        NfqMessages.WriteConfig(ref w, Queue, otherSequence, ack: true, NFQNL_CFG_CMD_BIND, NFQNL_COPY_PACKET, 0xFFFF);
        other.SendBatch(w.WrittenSpan);
        byte[] eperm = ReceiveOne(other, buffer);
        AssertError(eperm, otherSequence, Errno.EPERM);
        Save("error-bind-eperm.bin", eperm);

        // 6. Let the packet go; B receives it.
        w = new NetlinkMessageWriter(send);
        NfqMessages.WriteVerdict(ref w, Queue, socket.NextSequence(), p.PacketId, NF_ACCEPT, false, 0, default, false);
        socket.SendBatch(w.WrittenSpan);
        Assert.Equal("offload-capture", NfQueueKernelTests.ReceiveText(receiver));
    }

    [LinuxRootFact]
    public void Recording_a_packet_queued_on_arrival()
    {
        using Lab lab = Lab.Create();

        // Queued in B at PREROUTING: an input interface and a link-layer address this time.
        Lab.Exec(lab.B, "iptables", "-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", "9", "-j", "NFQUEUE", "--queue-num", "9");
        using NetlinkSocket socket = Lab.In(lab.B, () => NetlinkSocket.Open(NETLINK_NETFILTER));
        socket.ReceiveTimeout = TimeSpan.FromSeconds(5);
        using Socket sender = Lab.Udp(lab.A);
        using Socket receiver = Lab.Udp(lab.B, Discard);
        var buffer = new byte[70000];
        var send = new byte[1024];

        uint bindSequence = socket.NextSequence();
        var w = new NetlinkMessageWriter(send);
        NfqMessages.WriteConfig(ref w, Queue, bindSequence, ack: true, NFQNL_CFG_CMD_BIND, NFQNL_COPY_PACKET, 0xFFFF);
        socket.SendBatch(w.WrittenSpan);
        AssertError(ReceiveOne(socket, buffer), bindSequence, Errno.None);

        sender.SendTo("offload-arrival"u8, Discard);
        byte[] packet = ReceiveOne(socket, buffer);
        var reader = new NetlinkMessageReader(packet);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.Equal(PacketParseStatus.Ok, NfqPacketParser.Parse(packet, m, out QueuedPacket p));
        Assert.Equal(NfHook.PreRouting, p.Hook);
        Assert.Equal((uint)NfQueueKernelTests.InterfaceIndex(lab.B, "veth-b"), p.InputInterface);
        Assert.Equal(0u, p.OutputInterface);
        Save("packet-udp-ipv4-prerouting.bin", packet);

        w = new NetlinkMessageWriter(send);
        NfqMessages.WriteVerdict(ref w, Queue, socket.NextSequence(), p.PacketId, NF_ACCEPT, false, 0, default, false);
        socket.SendBatch(w.WrittenSpan);
        Assert.Equal("offload-arrival", NfQueueKernelTests.ReceiveText(receiver));
    }

    private static byte[] ReceiveOne(NetlinkSocket socket, byte[] buffer)
    {
        int n = socket.Receive(buffer);
        Assert.True(n > 0 && n <= buffer.Length, $"receive returned {n}");
        return buffer.AsSpan(0, n).ToArray();
    }

    private static Errno AssertError(byte[] datagram, uint sequence, Errno? expected)
    {
        var reader = new NetlinkMessageReader(datagram);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.True(m.TryGetError(out NetlinkError e));
        Assert.Equal(sequence, e.RequestSequence);
        Assert.Equal(sequence, m.Sequence);
        if (expected is not null)
        {
            Assert.Equal(expected.Value, e.Errno);
        }

        Assert.False(reader.TryRead(out _));
        Assert.False(reader.IsMalformed);
        return e.Errno;
    }

    private static void Save(string name, byte[] datagram)
    {
        string? dir = Environment.GetEnvironmentVariable("OFFLOAD_RECORD_NETLINK_DATA");
        if (!string.IsNullOrEmpty(dir))
        {
            File.WriteAllBytes(Path.Combine(dir, name), datagram);
        }
    }
}
