using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Offload.Sdk.Testing;

/// <summary>
/// Builds real IPv4 and IPv6 packets (TCP, UDP, ICMP and ICMPv6 queries, ICMP errors quoting a packet) with
/// correct lengths and checksums, and reads and verifies them again. Everything here is written from the RFCs,
/// sharing no code with the engine, so that a checksum the engine gets wrong cannot be "confirmed" by the same mistake.
/// </summary>
/// <remarks>
/// The family of a packet follows from its addresses ("192.0.2.1" or "2001:db8::1"). Every builder returns a
/// byte array of exactly the packet's length; use <see cref="WithRoom"/> to give an engine buffer room to grow.
/// Readers take the packet (or a quoted packet, which may be cut short) as a span and assume no IPv4 options
/// beyond what the IHL says and IPv6 extension headers of the usual kinds.
/// </remarks>
public static class TestPackets
{
    /// <summary>IP protocol number of ICMP.</summary>
    public const byte ProtoIcmp = 1;
    /// <summary>IP protocol number of TCP.</summary>
    public const byte ProtoTcp = 6;
    /// <summary>IP protocol number of UDP.</summary>
    public const byte ProtoUdp = 17;
    /// <summary>IP protocol number of ICMPv6.</summary>
    public const byte ProtoIcmpV6 = 58;

    /// <summary>TCP flag FIN.</summary>
    public const byte Fin = 0x01;
    /// <summary>TCP flag SYN.</summary>
    public const byte Syn = 0x02;
    /// <summary>TCP flag RST.</summary>
    public const byte Rst = 0x04;
    /// <summary>TCP flag PSH.</summary>
    public const byte Psh = 0x08;
    /// <summary>TCP flag ACK.</summary>
    public const byte Ack = 0x10;

    // ICMP (v4) types and codes used by the tests.
    /// <summary>ICMP echo reply.</summary>
    public const byte IcmpEchoReply = 0;
    /// <summary>ICMP destination unreachable.</summary>
    public const byte IcmpDestinationUnreachable = 3;
    /// <summary>ICMP redirect.</summary>
    public const byte IcmpRedirect = 5;
    /// <summary>ICMP echo request.</summary>
    public const byte IcmpEchoRequest = 8;
    /// <summary>ICMP time exceeded.</summary>
    public const byte IcmpTimeExceeded = 11;
    /// <summary>ICMP code: port unreachable.</summary>
    public const byte IcmpCodePortUnreachable = 3;
    /// <summary>ICMP code: fragmentation needed.</summary>
    public const byte IcmpCodeFragmentationNeeded = 4;

    // ICMPv6 types and codes.
    /// <summary>ICMPv6 destination unreachable.</summary>
    public const byte Icmp6DestinationUnreachable = 1;
    /// <summary>ICMPv6 packet too big.</summary>
    public const byte Icmp6PacketTooBig = 2;
    /// <summary>ICMPv6 time exceeded.</summary>
    public const byte Icmp6TimeExceeded = 3;
    /// <summary>ICMPv6 echo request.</summary>
    public const byte Icmp6EchoRequest = 128;
    /// <summary>ICMPv6 echo reply.</summary>
    public const byte Icmp6EchoReply = 129;
    /// <summary>ICMPv6 code: port unreachable.</summary>
    public const byte Icmp6CodePortUnreachable = 4;

    /// <summary>The most an IPv4 ICMP error is allowed to be (RFC 1812: 576 bytes), as Linux sends them.</summary>
    public const int IPv4ErrorLimit = 576;

    /// <summary>The most an ICMPv6 error is allowed to be (RFC 4443: the minimum MTU, 1280 bytes).</summary>
    public const int IPv6ErrorLimit = 1280;

    // ------------------------------------------------------------------ building

    /// <summary>ASCII bytes of a string (payloads of text protocols).</summary>
    public static byte[] Ascii(string text) => Encoding.ASCII.GetBytes(text);

    /// <summary>A TCP segment. <paramref name="options"/> is padded with zero (end-of-list) bytes to a multiple of 4.</summary>
    public static byte[] TcpPacket(
        string source,
        ushort sourcePort,
        string destination,
        ushort destinationPort,
        byte flags = Syn,
        uint seq = 1000,
        uint ack = 0,
        byte[]? payload = null,
        byte[]? options = null,
        ushort window = 64240,
        byte ttl = 64)
    {
        options ??= [];
        payload ??= [];
        int optionLength = (options.Length + 3) & ~3;
        var tcp = new byte[20 + optionLength + payload.Length];
        BinaryPrimitives.WriteUInt16BigEndian(tcp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp.AsSpan(2), destinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(tcp.AsSpan(4), seq);
        BinaryPrimitives.WriteUInt32BigEndian(tcp.AsSpan(8), ack);
        tcp[12] = (byte)(((20 + optionLength) / 4) << 4);
        tcp[13] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(tcp.AsSpan(14), window);
        options.CopyTo(tcp, 20);
        payload.CopyTo(tcp, 20 + optionLength);
        return IpPacket(source, destination, ProtoTcp, tcp, ttl);
    }

    /// <summary>A UDP datagram. <paramref name="withoutChecksum"/> leaves the IPv4 checksum field 0 ("none").</summary>
    public static byte[] UdpPacket(
        string source,
        ushort sourcePort,
        string destination,
        ushort destinationPort,
        byte[]? payload = null,
        bool withoutChecksum = false,
        byte ttl = 64)
    {
        payload ??= [];
        var udp = new byte[8 + payload.Length];
        BinaryPrimitives.WriteUInt16BigEndian(udp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(2), destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(4), (ushort)udp.Length);
        payload.CopyTo(udp, 8);
        return IpPacket(source, destination, ProtoUdp, udp, ttl, fixTransportChecksum: !withoutChecksum);
    }

    /// <summary>An echo request (or reply) in ICMP or ICMPv6, by the addresses' family.</summary>
    public static byte[] IcmpEchoPacket(string source, string destination, ushort id, ushort sequence = 1, bool reply = false, byte[]? payload = null, byte ttl = 64)
    {
        bool v6 = IsV6(source);
        byte type = v6 ? (reply ? Icmp6EchoReply : Icmp6EchoRequest) : (reply ? IcmpEchoReply : IcmpEchoRequest);
        return IcmpQueryPacket(source, destination, type, 0, id, sequence, payload, ttl);
    }

    /// <summary>Any ICMP or ICMPv6 message of the query layout: type, code, checksum, identifier, sequence, data.</summary>
    public static byte[] IcmpQueryPacket(string source, string destination, byte type, byte code, ushort id, ushort sequence, byte[]? payload = null, byte ttl = 64)
    {
        payload ??= [];
        var icmp = new byte[8 + payload.Length];
        icmp[0] = type;
        icmp[1] = code;
        BinaryPrimitives.WriteUInt16BigEndian(icmp.AsSpan(4), id);
        BinaryPrimitives.WriteUInt16BigEndian(icmp.AsSpan(6), sequence);
        payload.CopyTo(icmp, 8);
        return IpPacket(source, destination, IsV6(source) ? ProtoIcmpV6 : ProtoIcmp, icmp, ttl);
    }

    /// <summary>
    /// An ICMP or ICMPv6 error from <paramref name="source"/> to <paramref name="destination"/> quoting <paramref name="offending"/>.
    /// By default as much of the offending packet is quoted as fits the RFC limit (576 bytes for IPv4, 1280 for IPv6),
    /// as Linux does; <paramref name="quoteLength"/> cuts it shorter (28 gives the classic IPv4 header + 8 bytes).
    /// <paramref name="rest"/> is the second 32-bit word (MTU of a "packet too big", pointer of a parameter problem...).
    /// </summary>
    public static byte[] IcmpErrorPacket(string source, string destination, byte type, byte code, ReadOnlySpan<byte> offending, int quoteLength = -1, uint rest = 0, byte ttl = 64)
    {
        bool v6 = IsV6(source);
        int headers = v6 ? 40 + 8 : 20 + 8;
        int room = (v6 ? IPv6ErrorLimit : IPv4ErrorLimit) - headers;
        int quoted = Math.Min(offending.Length, room);
        if (quoteLength >= 0)
        {
            quoted = Math.Min(quoted, quoteLength);
        }

        var icmp = new byte[8 + quoted];
        icmp[0] = type;
        icmp[1] = code;
        BinaryPrimitives.WriteUInt32BigEndian(icmp.AsSpan(4), rest);
        offending.Slice(0, quoted).CopyTo(icmp.AsSpan(8));
        return IpPacket(source, destination, v6 ? ProtoIcmpV6 : ProtoIcmp, icmp, ttl);
    }

    /// <summary>
    /// An IP packet (IPv4 without options, or IPv6 without extension headers) around <paramref name="transport"/>.
    /// The IPv4 header checksum is always set; the transport checksum (TCP, UDP, ICMP, ICMPv6) too unless told not to.
    /// </summary>
    public static byte[] IpPacket(string source, string destination, byte protocol, ReadOnlySpan<byte> transport, byte ttl = 64, ushort identification = 0x2a2a, bool fixTransportChecksum = true)
    {
        var src = IPAddress.Parse(source).GetAddressBytes();
        var dst = IPAddress.Parse(destination).GetAddressBytes();
        if (src.Length != dst.Length)
        {
            throw new ArgumentException($"{source} and {destination} are of different families");
        }

        byte[] packet;
        if (src.Length == 4)
        {
            packet = new byte[20 + transport.Length];
            packet[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), identification);
            packet[6] = 0x40; // DF, as Linux sends TCP and most UDP
            packet[8] = ttl;
            packet[9] = protocol;
            src.CopyTo(packet, 12);
            dst.CopyTo(packet, 16);
            transport.CopyTo(packet.AsSpan(20));
        }
        else
        {
            packet = new byte[40 + transport.Length];
            packet[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), (ushort)transport.Length);
            packet[6] = protocol;
            packet[7] = ttl;
            src.CopyTo(packet, 8);
            dst.CopyTo(packet, 24);
            transport.CopyTo(packet.AsSpan(40));
        }

        if (fixTransportChecksum)
        {
            FixTransportChecksum(packet);
        }

        FixIPv4HeaderChecksum(packet);
        return packet;
    }

    /// <summary>A copy of <paramref name="packet"/> at the start of a buffer <paramref name="extra"/> bytes longer.</summary>
    public static byte[] WithRoom(byte[] packet, int extra)
    {
        var buffer = new byte[packet.Length + extra];
        packet.CopyTo(buffer, 0);
        return buffer;
    }

    /// <summary>Recomputes the IPv4 header checksum in place (no-op for IPv6).</summary>
    public static void FixIPv4HeaderChecksum(Span<byte> packet)
    {
        if (Family(packet) != 4)
        {
            return;
        }

        int ihl = (packet[0] & 0x0F) * 4;
        packet[10] = 0;
        packet[11] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(packet.Slice(10), (ushort)~OnesComplementSum(packet.Slice(0, ihl), 0));
    }

    /// <summary>Recomputes the transport checksum in place over the whole upper-layer part the IP header declares.</summary>
    public static void FixTransportChecksum(Span<byte> packet)
    {
        int field = ChecksumFieldOffset(Protocol(packet));
        int l4 = L4Offset(packet);
        int length = TotalLength(packet) - l4;
        if (field < 0 || length < field + 2)
        {
            return;
        }

        var upper = packet.Slice(l4, length);
        upper[field] = 0;
        upper[field + 1] = 0;
        ushort check = (ushort)~OnesComplementSum(upper, StartSum(packet, length));
        if (Protocol(packet) == ProtoUdp && check == 0)
        {
            check = 0xFFFF;
        }

        BinaryPrimitives.WriteUInt16BigEndian(upper.Slice(field), check);
    }

    /// <summary>Recomputes both the IPv4 header and the transport checksum in place.</summary>
    public static void FixChecksums(Span<byte> packet)
    {
        FixTransportChecksum(packet);
        FixIPv4HeaderChecksum(packet);
    }

    // ------------------------------------------------------------------ verifying

    /// <summary>The 16-bit one's-complement sum of <paramref name="data"/> (odd tail padded with zero), added to <paramref name="start"/>, folded.</summary>
    public static ushort OnesComplementSum(ReadOnlySpan<byte> data, uint start)
    {
        ulong sum = start;
        for (int i = 0; i + 1 < data.Length; i += 2)
        {
            sum += (uint)((data[i] << 8) | data[i + 1]);
        }

        if ((data.Length & 1) != 0)
        {
            sum += (uint)data[^1] << 8;
        }

        while (sum > 0xFFFF)
        {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }

        return (ushort)sum;
    }

    /// <summary>The sum a transport checksum starts from: the pseudo-header for TCP, UDP and ICMPv6, nothing for ICMP.</summary>
    public static uint StartSum(ReadOnlySpan<byte> packet, int upperLayerLength)
    {
        byte protocol = Protocol(packet);
        if (protocol == ProtoIcmp)
        {
            return 0;
        }

        bool v4 = Family(packet) == 4;
        var addresses = v4 ? packet.Slice(12, 8) : packet.Slice(8, 32);
        uint sum = OnesComplementSum(addresses, 0);
        sum += protocol;
        sum += (uint)upperLayerLength;
        return sum;
    }

    /// <summary>True when the IPv4 header checksum holds (always true for IPv6, which has none).</summary>
    public static bool IPv4HeaderChecksumIsValid(ReadOnlySpan<byte> packet) =>
        Family(packet) != 4 || OnesComplementSum(packet.Slice(0, (packet[0] & 0x0F) * 4), 0) == 0xFFFF;

    /// <summary>
    /// True when the transport checksum holds over the upper-layer length the IP header declares. An IPv4 UDP
    /// checksum of 0 ("none") counts as valid: assert on it separately where it matters.
    /// </summary>
    public static bool TransportChecksumIsValid(ReadOnlySpan<byte> packet)
    {
        byte protocol = Protocol(packet);
        int l4 = L4Offset(packet);
        int length = TotalLength(packet) - l4;
        if (ChecksumFieldOffset(protocol) < 0)
        {
            return true;
        }

        var upper = packet.Slice(l4, length);
        if (protocol == ProtoUdp && Family(packet) == 4 && BinaryPrimitives.ReadUInt16BigEndian(upper.Slice(6)) == 0)
        {
            return true;
        }

        return OnesComplementSum(upper, StartSum(packet, length)) == 0xFFFF;
    }

    /// <summary>
    /// Asserts that the packet is consistent: its length fields match the buffer, and its IPv4 header and transport
    /// checksums hold when recomputed from scratch.
    /// </summary>
    public static void AssertValid(ReadOnlySpan<byte> packet)
    {
        Check.That(packet.Length >= (Family(packet) == 4 ? 20 : 40), "packet shorter than its IP header");
        Check.Equal(TotalLength(packet), packet.Length, "the IP header's length");
        if (Protocol(packet) == ProtoUdp)
        {
            Check.Equal(packet.Length - L4Offset(packet), BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(L4Offset(packet) + 4)), "the UDP length");
        }

        Check.That(IPv4HeaderChecksumIsValid(packet), "IPv4 header checksum is wrong");
        Check.That(TransportChecksumIsValid(packet), $"transport checksum (protocol {Protocol(packet)}) is wrong: field 0x{TransportChecksum(packet):x4}, expected 0x{ExpectedTransportChecksum(packet):x4}");
    }

    /// <summary>
    /// Asserts the checksums of a packet quoted inside an ICMP error: its IPv4 header checksum always, its transport
    /// checksum only when the quote holds the whole packet (a cut quote cannot be checked).
    /// </summary>
    public static void AssertQuotedValid(ReadOnlySpan<byte> quoted)
    {
        Check.That(IPv4HeaderChecksumIsValid(quoted), "quoted IPv4 header checksum is wrong");
        if (quoted.Length >= TotalLength(quoted))
        {
            Check.That(TransportChecksumIsValid(quoted.Slice(0, TotalLength(quoted))), "quoted transport checksum is wrong");
        }
    }

    /// <summary>The transport checksum a correct packet would carry (for messages).</summary>
    public static ushort ExpectedTransportChecksum(ReadOnlySpan<byte> packet)
    {
        var copy = packet.ToArray();
        FixTransportChecksum(copy);
        return TransportChecksum(copy);
    }

    // ------------------------------------------------------------------ reading

    /// <summary>4 or 6, from the version nibble.</summary>
    public static int Family(ReadOnlySpan<byte> packet) => packet[0] >> 4;

    /// <summary>True for an IPv6 address in text.</summary>
    public static bool IsV6(string address) => IPAddress.Parse(address).AddressFamily == AddressFamily.InterNetworkV6;

    /// <summary>The datagram length the IP header declares.</summary>
    public static int TotalLength(ReadOnlySpan<byte> packet) => Family(packet) == 4
        ? BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(2))
        : 40 + BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(4));

    /// <summary>The IPv4 TTL or IPv6 hop limit.</summary>
    public static byte Ttl(ReadOnlySpan<byte> packet) => Family(packet) == 4 ? packet[8] : packet[7];

    /// <summary>The upper-layer protocol, after any IPv6 extension headers.</summary>
    public static byte Protocol(ReadOnlySpan<byte> packet)
    {
        Walk(packet, out byte protocol, out _);
        return protocol;
    }

    /// <summary>Where the upper-layer header starts, after any IPv6 extension headers.</summary>
    public static int L4Offset(ReadOnlySpan<byte> packet)
    {
        Walk(packet, out _, out int offset);
        return offset;
    }

    /// <summary>The source address.</summary>
    public static IPAddress Source(ReadOnlySpan<byte> packet) =>
        new(Family(packet) == 4 ? packet.Slice(12, 4) : packet.Slice(8, 16));

    /// <summary>The destination address.</summary>
    public static IPAddress Destination(ReadOnlySpan<byte> packet) =>
        new(Family(packet) == 4 ? packet.Slice(16, 4) : packet.Slice(24, 16));

    /// <summary>The TCP or UDP source port.</summary>
    public static ushort SourcePort(ReadOnlySpan<byte> packet) => BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(L4Offset(packet)));

    /// <summary>The TCP or UDP destination port.</summary>
    public static ushort DestinationPort(ReadOnlySpan<byte> packet) => BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(L4Offset(packet) + 2));

    /// <summary>The TCP sequence number.</summary>
    public static uint Seq(ReadOnlySpan<byte> packet) => BinaryPrimitives.ReadUInt32BigEndian(packet.Slice(L4Offset(packet) + 4));

    /// <summary>The TCP acknowledgement number.</summary>
    public static uint AckNumber(ReadOnlySpan<byte> packet) => BinaryPrimitives.ReadUInt32BigEndian(packet.Slice(L4Offset(packet) + 8));

    /// <summary>The TCP flags byte.</summary>
    public static byte TcpFlagsOf(ReadOnlySpan<byte> packet) => packet[L4Offset(packet) + 13];

    /// <summary>The TCP header length, options included.</summary>
    public static int TcpHeaderLength(ReadOnlySpan<byte> packet) => (packet[L4Offset(packet) + 12] >> 4) * 4;

    /// <summary>The TCP options area (between the fixed header and the payload).</summary>
    public static byte[] TcpOptionBytes(ReadOnlySpan<byte> packet) => packet.Slice(L4Offset(packet) + 20, TcpHeaderLength(packet) - 20).ToArray();

    /// <summary>The SACK blocks of a TCP segment, in the order they appear.</summary>
    public static (uint Left, uint Right)[] SackBlocks(ReadOnlySpan<byte> packet)
    {
        var options = TcpOptionBytes(packet);
        var blocks = new List<(uint, uint)>();
        for (int i = 0; i < options.Length;)
        {
            if (options[i] == 0)
            {
                break;
            }

            if (options[i] == 1)
            {
                i++;
                continue;
            }

            int length = options[i + 1];
            if (options[i] == 5)
            {
                for (int edge = i + 2; edge + 8 <= i + length; edge += 8)
                {
                    blocks.Add((BinaryPrimitives.ReadUInt32BigEndian(options.AsSpan(edge)), BinaryPrimitives.ReadUInt32BigEndian(options.AsSpan(edge + 4))));
                }
            }

            i += length;
        }

        return [.. blocks];
    }

    /// <summary>The upper-layer payload: after the TCP header, the UDP header, or the 8-byte ICMP header.</summary>
    public static byte[] Payload(ReadOnlySpan<byte> packet)
    {
        int l4 = L4Offset(packet);
        int header = Protocol(packet) switch
        {
            ProtoTcp => TcpHeaderLength(packet),
            _ => 8,
        };
        return packet.Slice(l4 + header, TotalLength(packet) - l4 - header).ToArray();
    }

    /// <summary>The payload as ASCII text.</summary>
    public static string PayloadText(ReadOnlySpan<byte> packet) => Encoding.ASCII.GetString(Payload(packet));

    /// <summary>The transport checksum field as it stands.</summary>
    public static ushort TransportChecksum(ReadOnlySpan<byte> packet) =>
        BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(L4Offset(packet) + ChecksumFieldOffset(Protocol(packet))));

    /// <summary>The ICMP or ICMPv6 type.</summary>
    public static byte IcmpType(ReadOnlySpan<byte> packet) => packet[L4Offset(packet)];

    /// <summary>The ICMP or ICMPv6 code.</summary>
    public static byte IcmpCode(ReadOnlySpan<byte> packet) => packet[L4Offset(packet) + 1];

    /// <summary>The identifier of an ICMP or ICMPv6 query.</summary>
    public static ushort IcmpId(ReadOnlySpan<byte> packet) => BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(L4Offset(packet) + 4));

    /// <summary>The second word of an ICMP message (the MTU of a "packet too big", ...).</summary>
    public static uint IcmpRest(ReadOnlySpan<byte> packet) => BinaryPrimitives.ReadUInt32BigEndian(packet.Slice(L4Offset(packet) + 4));

    /// <summary>The packet quoted inside an ICMP error (possibly cut short).</summary>
    public static byte[] Quoted(ReadOnlySpan<byte> packet)
    {
        int start = L4Offset(packet) + 8;
        return packet.Slice(start, TotalLength(packet) - start).ToArray();
    }

    private static int ChecksumFieldOffset(byte protocol) => protocol switch
    {
        ProtoTcp => 16,
        ProtoUdp => 6,
        ProtoIcmp or ProtoIcmpV6 => 2,
        _ => -1,
    };

    private static void Walk(ReadOnlySpan<byte> packet, out byte protocol, out int offset)
    {
        if (Family(packet) == 4)
        {
            protocol = packet[9];
            offset = (packet[0] & 0x0F) * 4;
            return;
        }

        protocol = packet[6];
        offset = 40;
        while (protocol is 0 or 43 or 44 or 51 or 60 && offset + 8 <= packet.Length)
        {
            int length = protocol switch
            {
                44 => 8,
                51 => (packet[offset + 1] + 2) * 4,
                _ => (packet[offset + 1] + 1) * 8,
            };
            protocol = packet[offset];
            offset += length;
        }
    }
}
