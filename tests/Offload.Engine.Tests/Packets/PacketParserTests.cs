using System.Buffers.Binary;
using Offload.Engine.Conntrack;
using Offload.Engine.Packets;
using Xunit;

namespace Offload.Engine.Tests.Packets;

public class PacketParserTests
{
    private const string A4 = "192.168.1.10";
    private const string B4 = "198.51.100.7";
    private const string A6 = "fd00::10";
    private const string B6 = "2001:db8::7";

    private static readonly byte[] Mss = [2, 4, 0x05, 0xb4];

    [Fact]
    public void Ipv4_tcp_with_options_in_both_headers()
    {
        byte[] ipOptions = [0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00]; // router alert, NOPs, end
        var p = Wire.V4(A4, B4, 6, Wire.Tcp(40000, 80, 1, 0, Wire.Syn, options: Mss, payload: [1, 2, 3]), ipOptions);
        var info = PacketParser.Parse(p);

        Assert.True(info.IsValid);
        Assert.Equal(4, info.Family);
        Assert.Equal(IpProtocol.Tcp, info.Protocol);
        Assert.Equal(28, info.L4Offset);
        Assert.Equal(28 + 24, info.PayloadOffset);
        Assert.Equal(p.Length, info.TotalLength);
        Assert.Equal(3, info.PayloadLength);
        Assert.Equal(27, info.L4Length);
        Assert.False(info.IsFragment);
        Assert.True(info.HasTransportHeader);
        Assert.Equal(12, info.SourceAddressOffset);
        Assert.Equal(16, info.DestinationAddressOffset);
        Assert.True(PacketParser.IPv4HeaderChecksumIsValid(p));
        Assert.True(PacketParser.TransportChecksumIsValid(p, info));
    }

    [Fact]
    public void Ipv4_with_the_largest_header_length()
    {
        var options = new byte[40];
        options.AsSpan().Fill(1); // NOPs
        var p = Wire.V4(A4, B4, 17, Wire.Udp(1, 2, [9]), options);
        var info = PacketParser.Parse(p);
        Assert.True(info.IsValid);
        Assert.Equal(60, info.L4Offset);
        Assert.Equal(68, info.PayloadOffset);
    }

    [Fact]
    public void Ipv4_first_fragment_is_tracked_by_its_ports_and_later_fragments_are_not()
    {
        // The UDP length covers the whole datagram (1008 bytes), more than the first fragment holds.
        var udp = Wire.Udp(5353, 53, new byte[1000]);
        var first = Wire.V4(A4, B4, 17, udp[..400], moreFragments: true, fixTransport: false);
        var info = PacketParser.Parse(first);
        Assert.True(info.IsValid);
        Assert.True(info.IsFragment);
        Assert.False(info.IsLaterFragment);
        Assert.True(info.HasTransportHeader);
        Assert.Equal(28, info.PayloadOffset);
        Assert.True(ConnTuples.TryRead(first, info, out var tuple));
        Assert.Equal(5353, tuple.SourcePort);
        Assert.Equal(53, tuple.DestinationPort);
        Assert.True(PacketParser.TransportChecksumIsValid(first, info)); // only the whole datagram can be checked

        var middle = Wire.V4(A4, B4, 17, udp[400..800], fragmentOffsetUnits: 50, moreFragments: true, fixTransport: false);
        info = PacketParser.Parse(middle);
        Assert.True(info.IsValid);
        Assert.True(info.IsFragment);
        Assert.True(info.IsLaterFragment);
        Assert.False(info.HasTransportHeader);
        Assert.Equal(20, info.L4Offset);
        Assert.Equal(20, info.PayloadOffset);
        Assert.False(ConnTuples.TryRead(middle, info, out _));

        // The last fragment: offset set, MF clear. Even 3 bytes after the IP header are fine: no header is read.
        var last = Wire.V4(A4, B4, 6, [1, 2, 3], fragmentOffsetUnits: 100, fixTransport: false);
        info = PacketParser.Parse(last);
        Assert.True(info.IsValid);
        Assert.True(info.IsFragment);
        Assert.True(info.IsLaterFragment);
        Assert.Equal(IpProtocol.Tcp, info.Protocol);
    }

    [Fact]
    public void Ipv6_extension_header_chain_is_walked_to_the_upper_layer()
    {
        var ext = new[] { Ext.HopByHop(), Ext.Routing(2), Ext.DestinationOptions(1) };
        var p = Wire.V6(A6, B6, 6, Wire.Tcp(1234, 443, 7, 0, Wire.Syn, options: Mss), ext);
        var info = PacketParser.Parse(p);

        Assert.True(info.IsValid);
        Assert.Equal(6, info.Family);
        Assert.Equal(IpProtocol.Tcp, info.Protocol);
        Assert.Equal(40 + 8 + 24 + 16, info.L4Offset);
        Assert.Equal(info.L4Offset + 24, info.PayloadOffset);
        Assert.Equal(p.Length, info.TotalLength);
        Assert.Equal(8, info.SourceAddressOffset);
        Assert.Equal(24, info.DestinationAddressOffset);
        Assert.Equal(16, info.AddressLength);
        Assert.True(PacketParser.TransportChecksumIsValid(p, info));

        Assert.True(ConnTuples.TryRead(p, info, out var tuple));
        Assert.Equal(1234, tuple.SourcePort);
        Assert.Equal(443, tuple.DestinationPort);
        Assert.Equal(A6, tuple.Source.ToString(6));
        Assert.Equal(B6, tuple.Destination.ToString(6));
    }

    [Fact]
    public void Ipv6_authentication_header_length_counts_four_byte_words()
    {
        var p = Wire.V6(A6, B6, 17, Wire.Udp(1, 2, [0xAA]), [Ext.Ah(icvWords: 3)]);
        var info = PacketParser.Parse(p);
        Assert.True(info.IsValid);
        Assert.Equal(40 + 24, info.L4Offset);
        Assert.Equal(IpProtocol.Udp, info.Protocol);
    }

    [Fact]
    public void Ipv6_first_fragment_has_ports_and_later_fragments_do_not()
    {
        var udp = Wire.Udp(4000, 53, new byte[64]);
        var first = Wire.V6(A6, B6, 17, udp[..32], [Ext.DestinationOptions(), Ext.Fragment(0, more: true)], fixTransport: false);
        var info = PacketParser.Parse(first);
        Assert.True(info.IsValid);
        Assert.True(info.IsFragment);
        Assert.False(info.IsLaterFragment);
        Assert.Equal(IpProtocol.Udp, info.Protocol);
        Assert.Equal(56, info.L4Offset);
        Assert.True(ConnTuples.TryRead(first, info, out var tuple));
        Assert.Equal(4000, tuple.SourcePort);

        var later = Wire.V6(A6, B6, 17, udp[32..], [Ext.Fragment(4, more: false)], fixTransport: false);
        info = PacketParser.Parse(later);
        Assert.True(info.IsValid);
        Assert.True(info.IsFragment);
        Assert.True(info.IsLaterFragment);
        Assert.Equal(IpProtocol.Udp, info.Protocol);
        Assert.Equal(48, info.L4Offset);
        Assert.Equal(48, info.PayloadOffset);
        Assert.False(info.HasTransportHeader);
    }

    [Fact]
    public void Ipv6_later_fragment_of_a_tcp_segment_is_not_read_as_a_tcp_header()
    {
        // 4 bytes of data: a TCP header here would be truncated, but it is data, so no error.
        var later = Wire.V6(A6, B6, 6, [1, 2, 3, 4], [Ext.Fragment(100, more: true)], fixTransport: false);
        var info = PacketParser.Parse(later);
        Assert.True(info.IsValid);
        Assert.True(info.IsLaterFragment);
    }

    [Fact]
    public void Ipv6_extension_header_limit()
    {
        var sixteen = Enumerable.Repeat(Ext.DestinationOptions(), PacketParser.MaxExtensionHeaders).ToArray();
        var info = PacketParser.Parse(Wire.V6(A6, B6, 17, Wire.Udp(1, 2), sixteen));
        Assert.True(info.IsValid);
        Assert.Equal(40 + (8 * 16), info.L4Offset);

        var seventeen = Enumerable.Repeat(Ext.DestinationOptions(), PacketParser.MaxExtensionHeaders + 1).ToArray();
        info = PacketParser.Parse(Wire.V6(A6, B6, 17, Wire.Udp(1, 2), seventeen));
        Assert.Equal(PacketError.TooManyExtensionHeaders, info.Error);
    }

    [Fact]
    public void Ipv6_extension_header_running_past_the_datagram_is_rejected()
    {
        var p = Wire.V6(A6, B6, 17, Wire.Udp(1, 2), [Ext.HopByHop()]);
        p[41] = 10; // claims 88 bytes; only 16 follow the fixed header
        Assert.Equal(PacketError.BadExtensionHeader, PacketParser.Parse(p).Error);

        // An AH whose length claims more than there is.
        p = Wire.V6(A6, B6, 17, Wire.Udp(1, 2), [Ext.Ah()]);
        p[41] = 200;
        Assert.Equal(PacketError.BadExtensionHeader, PacketParser.Parse(p).Error);

        // A chain that ends exactly at the end of the datagram, announcing another header: no room for it.
        p = Wire.V6(A6, B6, 60, [], [Ext.HopByHop()]);
        Assert.Equal(PacketError.BadExtensionHeader, PacketParser.Parse(p).Error);
    }

    [Fact]
    public void Ipv6_no_next_header_and_unknown_protocols_have_no_transport_header_to_read()
    {
        var p = Wire.V6(A6, B6, 59, [0, 0, 0, 0], [Ext.HopByHop()]);
        var info = PacketParser.Parse(p);
        Assert.True(info.IsValid);
        Assert.Equal(IpProtocol.IPv6NoNext, info.Protocol);
        Assert.Equal(48, info.PayloadOffset);

        var gre = Wire.V4(A4, B4, IpProtocol.Gre, [0, 0, 0x08, 0x00]);
        info = PacketParser.Parse(gre);
        Assert.True(info.IsValid);
        Assert.Equal(20, info.PayloadOffset);
        Assert.True(ConnTuples.TryRead(gre, info, out var tuple));
        Assert.Equal(0, tuple.SourcePort);
        Assert.Equal(0, tuple.DestinationPort);
    }

    [Fact]
    public void Ipv6_jumbo_payload_length_zero_is_rejected()
    {
        // Hop-by-hop with a jumbo payload option (type 0xC2) and payload length 0.
        var ext = new Ext(0, [0, 0, 0xC2, 4, 0, 1, 0, 0x30]);
        var p = Wire.V6(A6, B6, 17, Wire.Udp(1, 2), [ext]);
        p[4] = 0;
        p[5] = 0;
        Assert.Equal(PacketError.JumboPayload, PacketParser.Parse(p).Error);
    }

    [Fact]
    public void Ethernet_padding_after_the_datagram_is_not_part_of_it()
    {
        var syn = Wire.V4(A4, B4, 6, Wire.Tcp(1000, 22, 5, 0, Wire.Syn));
        var framed = new byte[46]; // minimum Ethernet payload: 6 bytes of padding
        syn.CopyTo(framed, 0);
        framed.AsSpan(syn.Length).Fill(0xA5);
        var info = PacketParser.Parse(framed);
        Assert.True(info.IsValid);
        Assert.Equal(40, info.TotalLength);
        Assert.Equal(0, info.PayloadLength);
        Assert.True(PacketParser.TransportChecksumIsValid(framed, info));

        var udp6 = Wire.V6(A6, B6, 17, Wire.Udp(1, 2, [7]));
        framed = new byte[udp6.Length + 13];
        udp6.CopyTo(framed, 0);
        framed.AsSpan(udp6.Length).Fill(0xEE);
        info = PacketParser.Parse(framed);
        Assert.True(info.IsValid);
        Assert.Equal(udp6.Length, info.TotalLength);
        Assert.Equal(1, info.PayloadLength);
        Assert.True(PacketParser.TransportChecksumIsValid(framed, info));
    }

    [Theory]
    [InlineData(new byte[0], PacketError.Truncated)]
    [InlineData(new byte[] { 0x00 }, PacketError.BadVersion)]
    [InlineData(new byte[] { 0x50, 0, 0, 20 }, PacketError.BadVersion)]
    [InlineData(new byte[] { 0xF5 }, PacketError.BadVersion)]
    [InlineData(new byte[] { 0x45 }, PacketError.Truncated)]
    [InlineData(new byte[] { 0x60 }, PacketError.Truncated)]
    public void Tiny_packets_are_classified(byte[] packet, PacketError expected)
    {
        Assert.Equal(expected, PacketParser.Parse(packet).Error);
    }

    [Fact]
    public void Ipv4_header_length_and_total_length_are_checked()
    {
        var p = Wire.V4(A4, B4, 17, Wire.Udp(1, 2));
        p[0] = 0x44; // IHL 16 bytes: less than the minimum
        Assert.Equal(PacketError.BadIPv4HeaderLength, PacketParser.Parse(p).Error);

        p = Wire.V4(A4, B4, 17, Wire.Udp(1, 2));
        p[0] = 0x4F; // 60 bytes of header in a 28-byte packet
        Assert.Equal(PacketError.BadIPv4HeaderLength, PacketParser.Parse(p).Error);

        p = Wire.V4(A4, B4, 17, Wire.Udp(1, 2));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), 19);
        Assert.Equal(PacketError.BadTotalLength, PacketParser.Parse(p).Error);

        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), 29);
        Assert.Equal(PacketError.BadTotalLength, PacketParser.Parse(p).Error);

        // A datagram that is just a header: total length 20, protocol with no header to read.
        var bare = Wire.V4(A4, B4, IpProtocol.Gre, []);
        var info = PacketParser.Parse(bare);
        Assert.True(info.IsValid);
        Assert.Equal(0, info.L4Length);
    }

    [Fact]
    public void Tcp_data_offset_below_five_words_or_past_the_datagram_is_bad()
    {
        foreach (int words in new[] { 0, 1, 4 })
        {
            var p = Wire.V4(A4, B4, 6, Wire.Tcp(1, 2, 3, 4, Wire.Ack));
            p[20 + 12] = (byte)(words << 4);
            Assert.Equal(PacketError.BadTcpDataOffset, PacketParser.Parse(p).Error);
        }

        var q = Wire.V6(A6, B6, 6, Wire.Tcp(1, 2, 3, 4, Wire.Ack, payload: [1, 2, 3]));
        q[40 + 12] = 6 << 4; // 24 bytes of header in a 23-byte segment
        Assert.Equal(PacketError.BadTcpDataOffset, PacketParser.Parse(q).Error);
        q[40 + 12] = 5 << 4;
        Assert.True(PacketParser.Parse(q).IsValid);

        var r = Wire.V4(A4, B4, 6, Wire.Tcp(1, 2, 3, 4, Wire.Ack));
        var cut = Wire.V4(A4, B4, 6, r[20..39], fixTransport: false); // 19 bytes of TCP
        Assert.Equal(PacketError.TcpHeaderTruncated, PacketParser.Parse(cut).Error);
    }

    [Fact]
    public void Udp_length_field_is_checked_against_the_datagram()
    {
        var p = Wire.V4(A4, B4, 17, Wire.Udp(1, 2, [1, 2, 3, 4]));
        foreach (ushort lie in new ushort[] { 0, 7, 13, 0xFFFF })
        {
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(24), lie);
            Assert.Equal(PacketError.BadUdpLength, PacketParser.Parse(p).Error);
        }

        // Shorter than the datagram is allowed (trailing bytes); the length used for the checksum is the UDP length.
        var q = Wire.V4(A4, B4, 17, Wire.Udp(1, 2, [1, 2, 3, 4]));
        BinaryPrimitives.WriteUInt16BigEndian(q.AsSpan(24), 10);
        Wire.FixTransportChecksum(q, 4, 20, 17); // over all 12 bytes, but with length 10 in the pseudo-header
        var info = PacketParser.Parse(q);
        Assert.True(info.IsValid);
        Assert.Equal(28, info.PayloadOffset);
        Assert.Equal(Wire.TransportVerifies(q, 4, 20, 12, 17), PacketParser.TransportChecksumIsValid(q, info));

        var seven = Wire.V6(A6, B6, 17, new byte[7], fixTransport: false);
        Assert.Equal(PacketError.UdpHeaderTruncated, PacketParser.Parse(seven).Error);
    }

    [Fact]
    public void Icmp_shorter_than_its_eight_byte_header_is_truncated()
    {
        Assert.Equal(PacketError.IcmpTruncated, PacketParser.Parse(Wire.V4(A4, B4, 1, new byte[7], fixTransport: false)).Error);
        Assert.Equal(PacketError.IcmpTruncated, PacketParser.Parse(Wire.V6(A6, B6, 58, new byte[7], fixTransport: false)).Error);
        var ok = Wire.V6(A6, B6, 58, Wire.IcmpQuery(128, 1));
        var info = PacketParser.Parse(ok);
        Assert.True(info.IsValid);
        Assert.Equal(48, info.PayloadOffset);
        Assert.True(PacketParser.TransportChecksumIsValid(ok, info));
    }

    public static TheoryData<string, byte[]> ValidPackets() => new()
    {
        { "v4 tcp options", Wire.V4(A4, B4, 6, Wire.Tcp(1, 2, 3, 4, Wire.Syn, options: Mss, payload: [1, 2, 3]), [1, 1, 1, 0]) },
        { "v4 udp", Wire.V4(A4, B4, 17, Wire.Udp(53, 53, [1, 2, 3, 4, 5])) },
        { "v4 icmp", Wire.V4(A4, B4, 1, Wire.IcmpQuery(8, 9, payload: [1, 2])) },
        { "v4 gre", Wire.V4(A4, B4, 47, [0, 0, 8, 0]) },
        { "v6 ext tcp", Wire.V6(A6, B6, 6, Wire.Tcp(1, 2, 3, 4, Wire.Ack, payload: [9]), [Ext.HopByHop(), Ext.Routing(), Ext.Ah()]) },
        { "v6 udp", Wire.V6(A6, B6, 17, Wire.Udp(1, 2, [7, 7])) },
        { "v6 icmp", Wire.V6(A6, B6, 58, Wire.IcmpQuery(128, 5, payload: [1])) },
        { "v6 first fragment", Wire.V6(A6, B6, 17, Wire.Udp(1, 2, new byte[20]), [Ext.Fragment(0, true)], fixTransport: false) },
    };

    [Theory]
    [MemberData(nameof(ValidPackets))]
    public void Every_truncation_of_a_valid_packet_is_classified_without_exception(string name, byte[] packet)
    {
        Assert.True(PacketParser.Parse(packet).IsValid, name);
        byte family = (byte)(packet[0] >> 4);
        int headerLength = family == 4 ? (packet[0] & 0x0F) * 4 : 40;
        for (int length = 0; length < packet.Length; length++)
        {
            var info = PacketParser.Parse(packet.AsSpan(0, length));
            PacketError expected = length == 0 ? PacketError.Truncated
                : length < (family == 4 ? 20 : 40) ? PacketError.Truncated
                : length < headerLength ? PacketError.BadIPv4HeaderLength
                : PacketError.BadTotalLength;
            Assert.True(expected == info.Error, $"{name} cut to {length}: {info.Error}, expected {expected}");
        }
    }

    [Theory]
    [MemberData(nameof(ValidPackets))]
    public void Every_truncation_with_the_length_fields_fixed_is_classified_by_the_layer_it_cuts(string name, byte[] packet)
    {
        // The IP length now says the datagram is shorter: the damage shows in the layer the cut falls in.
        var full = PacketParser.Parse(packet);
        byte family = full.Family;
        int ipHeader = family == 4 ? full.L4Offset : 40;
        for (int length = ipHeader; length < packet.Length; length++)
        {
            var cut = packet[..length];
            if (family == 4)
            {
                BinaryPrimitives.WriteUInt16BigEndian(cut.AsSpan(2), (ushort)length);
            }
            else
            {
                BinaryPrimitives.WriteUInt16BigEndian(cut.AsSpan(4), (ushort)(length - 40));
            }

            var info = PacketParser.Parse(cut);
            PacketError expected = ExpectedForCut(full, packet, length);
            Assert.True(expected == info.Error, $"{name} cut to {length}: {info.Error}, expected {expected}");
            if (info.IsValid)
            {
                Assert.Equal(length, info.TotalLength);
                Assert.InRange(info.PayloadOffset, info.L4Offset, info.TotalLength);
            }
        }
    }

    private static PacketError ExpectedForCut(PacketInfo full, byte[] packet, int length)
    {
        if (full.Family == 6)
        {
            if (length == 40)
            {
                return PacketError.JumboPayload;
            }

            // Walk the chain as built: each header must fit whole.
            byte next = packet[6];
            int offset = 40;
            while (next is 0 or 43 or 44 or 51 or 60)
            {
                if (offset + 8 > length)
                {
                    return PacketError.BadExtensionHeader;
                }

                int size = next == 44 ? 8 : next == 51 ? (packet[offset + 1] + 2) * 4 : (packet[offset + 1] + 1) * 8;
                if (offset + size > length)
                {
                    return PacketError.BadExtensionHeader;
                }

                next = packet[offset];
                offset += size;
            }
        }

        int available = length - full.L4Offset;
        switch (full.Protocol)
        {
            case 6:
                int dataOffset = (packet[full.L4Offset + 12] >> 4) * 4;
                return available < 20 ? PacketError.TcpHeaderTruncated : available < dataOffset ? PacketError.BadTcpDataOffset : PacketError.None;
            case 17:
                int udpLength = BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(full.L4Offset + 4));
                return available < 8 ? PacketError.UdpHeaderTruncated
                    : !full.IsFragment && udpLength > available ? PacketError.BadUdpLength
                    : PacketError.None;
            case 1:
            case 58:
                return available < 8 ? PacketError.IcmpTruncated : PacketError.None;
            default:
                return PacketError.None;
        }
    }

    [Fact]
    public void Quoted_ipv4_packet_cut_to_28_bytes_gives_the_ports()
    {
        var original = Wire.V4(A4, B4, 6, Wire.Tcp(40000, 80, 0x01020304, 0, Wire.Syn, options: Mss, payload: new byte[100]));
        var info = PacketParser.ParseQuoted(original.AsSpan(0, 28));
        Assert.True(info.IsValid);
        Assert.Equal(4, info.Family);
        Assert.Equal(IpProtocol.Tcp, info.Protocol);
        Assert.Equal(20, info.L4Offset);
        Assert.Equal(28, info.TotalLength);
        Assert.Equal(28, info.PayloadOffset);
        Assert.False(info.IsFragment);

        Assert.Equal(PacketError.Truncated, PacketParser.ParseQuoted(original.AsSpan(0, 27)).Error);
        Assert.Equal(PacketError.Truncated, PacketParser.ParseQuoted(original.AsSpan(0, 19)).Error);
        Assert.Equal(PacketError.Truncated, PacketParser.ParseQuoted([]).Error);
        Assert.Equal(PacketError.BadVersion, PacketParser.ParseQuoted([0x75, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).Error);

        // With IP options, 8 bytes past the longer header are needed.
        var withOptions = Wire.V4(A4, B4, 17, Wire.Udp(1, 2, new byte[50]), [1, 1, 1, 1, 1, 1, 1, 0]);
        Assert.True(PacketParser.ParseQuoted(withOptions.AsSpan(0, 36)).IsValid);
        Assert.Equal(PacketError.Truncated, PacketParser.ParseQuoted(withOptions.AsSpan(0, 35)).Error);
    }

    [Fact]
    public void Quoted_ipv6_packet_walks_extension_headers_and_refuses_later_fragments()
    {
        var original = Wire.V6(A6, B6, 17, Wire.Udp(5000, 53, new byte[200]), [Ext.HopByHop(), Ext.DestinationOptions(1)]);
        var info = PacketParser.ParseQuoted(original.AsSpan(0, 40 + 8 + 16 + 8));
        Assert.True(info.IsValid);
        Assert.Equal(IpProtocol.Udp, info.Protocol);
        Assert.Equal(64, info.L4Offset);
        Assert.Equal(PacketError.Truncated, PacketParser.ParseQuoted(original.AsSpan(0, 71)).Error);
        Assert.Equal(PacketError.BadExtensionHeader, PacketParser.ParseQuoted(original.AsSpan(0, 50)).Error);

        var later = Wire.V6(A6, B6, 17, new byte[40], [Ext.Fragment(3, false)], fixTransport: false);
        info = PacketParser.ParseQuoted(later);
        Assert.Equal(PacketError.Truncated, info.Error);
        Assert.True(info.IsLaterFragment);

        var laterV4 = Wire.V4(A4, B4, 17, new byte[16], fragmentOffsetUnits: 9, fixTransport: false);
        Assert.Equal(PacketError.Truncated, PacketParser.ParseQuoted(laterV4).Error);

        // A first fragment quoted is fine: its ports are there.
        var firstV4 = Wire.V4(A4, B4, 17, Wire.Udp(7, 8, new byte[16]), moreFragments: true, fixTransport: false);
        info = PacketParser.ParseQuoted(firstV4.AsSpan(0, 28));
        Assert.True(info.IsValid);
        Assert.True(info.IsFragment);
    }

    [Fact]
    public void Quoted_packet_cut_anywhere_never_throws()
    {
        var packets = ValidPackets().Select(row => (byte[])row[1]).ToList();
        foreach (var p in packets)
        {
            for (int length = 0; length <= p.Length; length++)
            {
                var info = PacketParser.ParseQuoted(p.AsSpan(0, length));
                if (info.IsValid)
                {
                    Assert.True(info.L4Offset + 8 <= length);
                    Assert.Equal(length, info.TotalLength);
                }
            }
        }
    }

    [Fact]
    public void Transport_checksums_detect_a_flipped_bit_and_accept_ipv4_udp_without_checksum()
    {
        foreach (var p in ValidPackets().Select(row => (byte[])row[1]))
        {
            var info = PacketParser.Parse(p);
            if (info.IsFragment || info.Protocol is not (6 or 17 or 1 or 58))
            {
                continue;
            }

            Assert.True(PacketParser.TransportChecksumIsValid(p, info));
            var flipped = (byte[])p.Clone();
            flipped[^1] ^= 0x10;
            Assert.False(PacketParser.TransportChecksumIsValid(flipped, info));

            // The pseudo-header counts: a changed address breaks TCP, UDP and ICMPv6 checksums, not ICMPv4's.
            var moved = (byte[])p.Clone();
            moved[info.SourceAddressOffset] ^= 0x01;
            Assert.Equal(info.Protocol == 1, PacketParser.TransportChecksumIsValid(moved, info));
        }

        var noChecksum = Wire.V4(A4, B4, 17, Wire.Udp(1, 2, [1, 2, 3]), fixTransport: false);
        Assert.True(PacketParser.TransportChecksumIsValid(noChecksum, PacketParser.Parse(noChecksum)));
    }

    [Fact]
    public void Udp_checksum_that_sums_to_zero_is_sent_as_all_ones_and_verifies()
    {
        // Find a payload whose computed checksum is 0, which must travel as 0xFFFF.
        for (ushort x = 0; ; x++)
        {
            var p = Wire.V4(A4, B4, 17, Wire.Udp(1, 2, [(byte)(x >> 8), (byte)x]));
            if (BinaryPrimitives.ReadUInt16BigEndian(p.AsSpan(26)) == 0xFFFF)
            {
                Assert.True(PacketParser.TransportChecksumIsValid(p, PacketParser.Parse(p)));
                return;
            }
        }
    }
}
