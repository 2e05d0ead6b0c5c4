using System.Text;
using Offload.Interop.Netlink;
using Offload.Interop.Nfqueue;
using Offload.Interop.Tests.Support;
using Xunit;

namespace Offload.Interop.Tests.Nfqueue;

public sealed class PacketParserTests
{
    [Fact]
    public void Recorded_local_out_packet()
    {
        byte[] datagram = Recorded.Load(Recorded.PacketLocalOut);
        QueuedPacket p = ParseOk(datagram);

        Assert.Equal(1u, p.PacketId);
        Assert.Equal((byte)2, p.Family);
        Assert.Equal((ushort)0x0800, p.HwProtocol);
        Assert.Equal(NfHook.LocalOut, p.Hook);
        Assert.Equal(42u, p.Mark);
        Assert.Equal(0u, p.InputInterface);
        Assert.Equal(2u, p.OutputInterface);
        Assert.False(p.HasTimestamp);
        Assert.Equal(NfqSkbInfo.None, p.SkbInfo);
        Assert.Equal(43, p.CapturedLength);
        Assert.Equal(43, p.OriginalLength);
        Assert.False(p.IsTruncated);
        Assert.Equal(0x45, p.Payload[0]);
        Assert.Equal("offload-capture", Encoding.ASCII.GetString(Ipv4Udp.UdpPayload(p.Payload)));
        Assert.Equal((ushort)9, Ipv4Udp.DestinationPort(p.Payload));
    }

    [Fact]
    public void Recorded_prerouting_packet()
    {
        QueuedPacket p = ParseOk(Recorded.Load(Recorded.PacketPrerouting));
        Assert.Equal(NfHook.PreRouting, p.Hook);
        Assert.Equal(2u, p.InputInterface);
        Assert.Equal(0u, p.OutputInterface);
        Assert.Equal(0u, p.Mark);
        Assert.Equal("offload-arrival", Encoding.ASCII.GetString(Ipv4Udp.UdpPayload(p.Payload)));
    }

    [Fact]
    public void Payload_is_a_writable_slice_of_the_receive_buffer_not_a_copy()
    {
        byte[] datagram = Recorded.Load(Recorded.PacketLocalOut);
        QueuedPacket p = ParseOk(datagram);
        p.Payload[0] = 0x46;
        Assert.Equal(0x46, datagram[datagram.Length - 43]);
    }

    [Fact]
    public void Truncated_copy_timestamp_skb_info_and_physical_ports()
    {
        byte[] datagram = Synth.Packet(9, Synth.Ipv4(7), mark: 5, capLen: 1500,
            skbInfo: NfqConstants.NFQA_SKB_GSO | NfqConstants.NFQA_SKB_CSUMNOTREADY, timestamp: (1_700_000_000, 250_000));
        QueuedPacket p = ParseOk(datagram);
        Assert.Equal(9u, p.PacketId);
        Assert.Equal(NfHook.Forward, p.Hook);
        Assert.Equal(3u, p.InputInterface);
        Assert.Equal(4u, p.OutputInterface);
        Assert.Equal(32, p.CapturedLength);
        Assert.Equal(1500, p.OriginalLength);
        Assert.True(p.IsTruncated);
        Assert.Equal(NfqSkbInfo.Gso | NfqSkbInfo.ChecksumNotReady, p.SkbInfo);
        Assert.True(p.HasTimestamp);
        Assert.Equal(1_700_000_000_250_000L, p.TimestampMicroseconds);
    }

    [Theory]
    [InlineData(0u, true)]
    [InlineData(NfqConstants.NFQA_SKB_GSO, true)]
    [InlineData(NfqConstants.NFQA_SKB_CSUM_NOTVERIFIED, false)]
    [InlineData(NfqConstants.NFQA_SKB_CSUMNOTREADY, false)]
    [InlineData(NfqConstants.NFQA_SKB_GSO | NfqConstants.NFQA_SKB_CSUMNOTREADY, false)]
    public void The_checksum_is_verified_unless_the_kernel_says_not_verified_or_not_ready(uint skbInfo, bool verified)
    {
        // nfnetlink_queue sends NFQA_SKB_INFO only with a flag to tell: without it, the skb's checksum was known good.
        QueuedPacket p = ParseOk(Synth.Packet(13, Synth.Ipv4(1), skbInfo: skbInfo));
        Assert.Equal((NfqSkbInfo)skbInfo, p.SkbInfo);
        Assert.Equal(verified, p.ChecksumVerified);
    }

    [Fact]
    public void A_short_attribute_after_the_header_keeps_the_id_so_the_packet_can_still_be_answered()
    {
        byte[] datagram = Synth.Packet(11, Synth.Ipv4(1), shortMark: true);
        var reader = new NetlinkMessageReader(datagram);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.Equal(PacketParseStatus.MalformedWithId, NfqPacketParser.Parse(datagram, m, out QueuedPacket p));
        Assert.Equal(11u, p.PacketId);
        Assert.True(p.Payload.IsEmpty);
    }

    [Fact]
    public void A_cap_len_below_the_payload_is_malformed()
    {
        byte[] datagram = Synth.Packet(12, Synth.Ipv4(1), capLen: 10);
        var reader = new NetlinkMessageReader(datagram);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.Equal(PacketParseStatus.MalformedWithId, NfqPacketParser.Parse(datagram, m, out _));
    }

    [Fact]
    public void Without_a_packet_header_nothing_can_be_done()
    {
        byte[] datagram = Recorded.Load(Recorded.PacketLocalOut);

        // Rename NFQA_PACKET_HDR (type at offset 22) to an unknown attribute.
        datagram[22] = 99;
        var reader = new NetlinkMessageReader(datagram);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.Equal(PacketParseStatus.Unreadable, NfqPacketParser.Parse(datagram, m, out _));
    }

    [Fact]
    public void The_id_survives_the_loss_of_the_messages_end()
    {
        byte[] datagram = Recorded.PacketWithId(Recorded.PacketPrerouting, 0xABCDEF01);
        for (int length = 0; length <= datagram.Length; length++)
        {
            bool ok = NfqPacketParser.TryRecoverPacketId(datagram.AsSpan(0, length), out uint id);
            Assert.Equal(length >= 31, ok);
            if (ok)
            {
                Assert.Equal(0xABCDEF01u, id);
            }
        }
    }

    private static QueuedPacket ParseOk(byte[] datagram)
    {
        var reader = new NetlinkMessageReader(datagram);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.Equal(PacketParseStatus.Ok, NfqPacketParser.Parse(datagram, m, out QueuedPacket p));
        return p;
    }
}
