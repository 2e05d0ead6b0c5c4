using System.Buffers.Binary;
using System.Net;

namespace Offload.TestSupport;

/// <summary>
/// The Internet checksum done the slow, obvious way (one 16-bit word at a time, folding after every add),
/// so the engine's fast version is checked against something that shares none of its code.
/// </summary>
public static class RefChecksum
{
    /// <summary>The one's-complement sum of <paramref name="data"/> (an odd tail padded with zero), folded to 16 bits.</summary>
    public static ushort Sum(ReadOnlySpan<byte> data, uint start = 0)
    {
        uint sum = start;
        for (int i = 0; i < data.Length; i += 2)
        {
            uint word = (uint)(data[i] << 8) | (i + 1 < data.Length ? data[i + 1] : 0u);
            sum += word;
            sum = (sum & 0xFFFF) + (sum >> 16);
        }

        sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)sum;
    }

    /// <summary>The checksum field value that makes <paramref name="data"/> (with its field zeroed) sum to all ones.</summary>
    public static ushort Field(ReadOnlySpan<byte> data, uint start = 0) => (ushort)~Sum(data, start);

    /// <summary>The pseudo-header words (addresses, protocol, upper-layer length) as one folded sum.</summary>
    public static uint Pseudo(ReadOnlySpan<byte> source, ReadOnlySpan<byte> destination, byte protocol, int length)
    {
        uint sum = Sum(source);
        sum += Sum(destination);
        sum += protocol;
        sum += (uint)(length & 0xFFFF) + (uint)(length >> 16);
        while (sum > 0xFFFF)
        {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }

        return sum;
    }

    /// <summary>True when a block that carries its own checksum sums to all ones (or is all zero with a zero start: never valid).</summary>
    public static bool Verifies(ReadOnlySpan<byte> data, uint start = 0) => Sum(data, start) == 0xFFFF;
}

/// <summary>An IPv6 extension header for <see cref="Wire.V6"/>: its type and its bytes (byte 0, the next header, is filled in).</summary>
public readonly record struct Ext(byte Type, byte[] Bytes)
{
    /// <summary>Hop-by-hop options of <paramref name="units"/> + 1 eight-byte units, filled with PadN.</summary>
    public static Ext HopByHop(int units = 0) => new(0, Options(units));

    /// <summary>Destination options of <paramref name="units"/> + 1 eight-byte units.</summary>
    public static Ext DestinationOptions(int units = 0) => new(60, Options(units));

    /// <summary>A type 0-style routing header with no segments left.</summary>
    public static Ext Routing(int units = 0)
    {
        var b = new byte[(units + 1) * 8];
        b[1] = (byte)units;
        b[2] = 2; // routing type 2 (mobile IPv6), segments left 0
        return new Ext(43, b);
    }

    /// <summary>A fragment header; <paramref name="offsetUnits"/> counts 8-byte units.</summary>
    public static Ext Fragment(int offsetUnits, bool more, uint id = 0x01020304)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(2), (ushort)((offsetUnits << 3) | (more ? 1 : 0)));
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), id);
        return new Ext(44, b);
    }

    /// <summary>An authentication header with <paramref name="icvWords"/> 4-byte words of ICV (its length field counts 4-byte words minus 2).</summary>
    public static Ext Ah(int icvWords = 1)
    {
        var b = new byte[12 + (icvWords * 4)];
        b[1] = (byte)((b.Length / 4) - 2);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), 0x1000); // SPI
        return new Ext(51, b);
    }

    private static byte[] Options(int units)
    {
        var b = new byte[(units + 1) * 8];
        b[1] = (byte)units;
        b[2] = 1; // PadN covering the rest
        b[3] = (byte)(b.Length - 4);
        return b;
    }
}

/// <summary>
/// Builds IPv4 and IPv6 packets byte by byte for the tests, with correct lengths and checksums unless asked otherwise.
/// Checksums come from <see cref="RefChecksum"/>, never from the engine.
/// </summary>
public static class Wire
{
    public const byte Fin = 0x01;
    public const byte Syn = 0x02;
    public const byte Rst = 0x04;
    public const byte Psh = 0x08;
    public const byte Ack = 0x10;

    public static byte[] Addr(string text) => IPAddress.Parse(text).GetAddressBytes();

    /// <summary>A TCP header (with options padded to 4 bytes) and payload; checksum left zero.</summary>
    public static byte[] Tcp(ushort sport, ushort dport, uint seq, uint ack, byte flags, ushort window = 64240, byte[]? options = null, byte[]? payload = null)
    {
        options ??= [];
        payload ??= [];
        int optionLength = (options.Length + 3) & ~3;
        var b = new byte[20 + optionLength + payload.Length];
        BinaryPrimitives.WriteUInt16BigEndian(b, sport);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(2), dport);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), seq);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(8), ack);
        b[12] = (byte)(((20 + optionLength) / 4) << 4);
        b[13] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(14), window);
        options.CopyTo(b, 20);
        payload.CopyTo(b, 20 + optionLength);
        return b;
    }

    /// <summary>A UDP header with its length set, and payload; checksum left zero.</summary>
    public static byte[] Udp(ushort sport, ushort dport, byte[]? payload = null)
    {
        payload ??= [];
        var b = new byte[8 + payload.Length];
        BinaryPrimitives.WriteUInt16BigEndian(b, sport);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(2), dport);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(4), (ushort)b.Length);
        payload.CopyTo(b, 8);
        return b;
    }

    /// <summary>An ICMP or ICMPv6 query (echo and the like): type, code, identifier, sequence; checksum left zero.</summary>
    public static byte[] IcmpQuery(byte type, ushort id, ushort sequence = 1, byte code = 0, byte[]? payload = null)
    {
        payload ??= [];
        var b = new byte[8 + payload.Length];
        b[0] = type;
        b[1] = code;
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(4), id);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(6), sequence);
        payload.CopyTo(b, 8);
        return b;
    }

    /// <summary>An ICMP error quoting <paramref name="quoted"/> (which the caller cuts as it likes); checksum left zero.</summary>
    public static byte[] IcmpError(byte type, byte code, ReadOnlySpan<byte> quoted, uint rest = 0)
    {
        var b = new byte[8 + quoted.Length];
        b[0] = type;
        b[1] = code;
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), rest);
        quoted.CopyTo(b.AsSpan(8));
        return b;
    }

    /// <summary>
    /// An IPv4 packet around <paramref name="l4"/>, header checksum set and (unless <paramref name="fixTransport"/> is false)
    /// the TCP, UDP or ICMP checksum computed over what is present.
    /// </summary>
    public static byte[] V4(
        string source,
        string destination,
        byte protocol,
        byte[] l4,
        byte[]? ipOptions = null,
        int fragmentOffsetUnits = 0,
        bool moreFragments = false,
        bool fixTransport = true,
        byte ttl = 64,
        ushort id = 0x1234)
    {
        ipOptions ??= [];
        int headerLength = 20 + ((ipOptions.Length + 3) & ~3);
        var b = new byte[headerLength + l4.Length];
        b[0] = (byte)(0x40 | (headerLength / 4));
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(2), (ushort)b.Length);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(4), id);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(6), (ushort)((moreFragments ? 0x2000 : 0) | (fragmentOffsetUnits & 0x1FFF)));
        b[8] = ttl;
        b[9] = protocol;
        Addr(source).CopyTo(b, 12);
        Addr(destination).CopyTo(b, 16);
        ipOptions.CopyTo(b, 20);
        l4.CopyTo(b, headerLength);
        if (fixTransport)
        {
            FixTransportChecksum(b, 4, headerLength, protocol);
        }

        FixIPv4HeaderChecksum(b);
        return b;
    }

    /// <summary>An IPv6 packet with the given extension headers (in order) and upper layer, transport checksum set unless told not to.</summary>
    public static byte[] V6(string source, string destination, byte protocol, byte[] l4, Ext[]? extensions = null, bool fixTransport = true, byte hopLimit = 64)
    {
        extensions ??= [];
        int extLength = extensions.Sum(e => e.Bytes.Length);
        var b = new byte[40 + extLength + l4.Length];
        b[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(4), (ushort)(b.Length - 40));
        b[6] = extensions.Length > 0 ? extensions[0].Type : protocol;
        b[7] = hopLimit;
        Addr(source).CopyTo(b, 8);
        Addr(destination).CopyTo(b, 24);
        int offset = 40;
        for (int i = 0; i < extensions.Length; i++)
        {
            extensions[i].Bytes.CopyTo(b, offset);
            b[offset] = i + 1 < extensions.Length ? extensions[i + 1].Type : protocol;
            offset += extensions[i].Bytes.Length;
        }

        l4.CopyTo(b, offset);
        if (fixTransport)
        {
            FixTransportChecksum(b, 6, offset, protocol);
        }

        return b;
    }

    /// <summary>Recomputes the IPv4 header checksum in place.</summary>
    public static void FixIPv4HeaderChecksum(byte[] packet)
    {
        int headerLength = (packet[0] & 0x0F) * 4;
        packet[10] = 0;
        packet[11] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), RefChecksum.Field(packet.AsSpan(0, headerLength)));
    }

    /// <summary>Recomputes the transport checksum of the upper layer at <paramref name="l4Offset"/> in place, over the rest of the packet.</summary>
    public static void FixTransportChecksum(byte[] packet, byte family, int l4Offset, byte protocol)
    {
        var l4 = packet.AsSpan(l4Offset);
        int field = protocol switch
        {
            6 => 16,
            17 => 6,
            1 or 58 => 2,
            _ => -1,
        };
        if (field < 0 || l4.Length < field + 2)
        {
            return;
        }

        l4[field] = 0;
        l4[field + 1] = 0;
        uint start = protocol == 1 ? 0 : PseudoOf(packet, family, protocol, l4.Length);
        ushort check = RefChecksum.Field(l4, start);
        if (protocol == 17 && check == 0)
        {
            check = 0xFFFF;
        }

        BinaryPrimitives.WriteUInt16BigEndian(l4.Slice(field), check);
    }

    /// <summary>True when the IPv4 header checksum holds.</summary>
    public static bool IPv4HeaderVerifies(ReadOnlySpan<byte> packet) => RefChecksum.Verifies(packet.Slice(0, (packet[0] & 0x0F) * 4));

    /// <summary>
    /// True when the transport checksum of an unfragmented packet holds (an IPv4 UDP checksum of zero counts as none).
    /// <paramref name="l4Length"/> is the upper-layer length (UDP: taken from its header).
    /// </summary>
    public static bool TransportVerifies(ReadOnlySpan<byte> packet, byte family, int l4Offset, int l4Length, byte protocol)
    {
        var l4 = packet.Slice(l4Offset, l4Length);
        if (protocol == 17)
        {
            if (family == 4 && BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(6)) == 0)
            {
                return true;
            }

            l4 = l4.Slice(0, BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(4)));
        }

        uint start = protocol == 1 ? 0 : PseudoOfSpan(packet, family, protocol, l4.Length);
        return RefChecksum.Verifies(l4, start);
    }

    private static uint PseudoOf(byte[] packet, byte family, byte protocol, int length) => PseudoOfSpan(packet, family, protocol, length);

    private static uint PseudoOfSpan(ReadOnlySpan<byte> packet, byte family, byte protocol, int length) => family == 4
        ? RefChecksum.Pseudo(packet.Slice(12, 4), packet.Slice(16, 4), protocol, length)
        : RefChecksum.Pseudo(packet.Slice(8, 16), packet.Slice(24, 16), protocol, length);

    /// <summary>A 32-bit IPv4 address value in host order, from text.</summary>
    public static uint V4Value(string text) => BinaryPrimitives.ReadUInt32BigEndian(Addr(text));
}
