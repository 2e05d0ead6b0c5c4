using System.Buffers.Binary;
using System.Text;
using Offload.Engine.Conntrack;
using Offload.Engine.Packets;
using Offload.Engine.Tests.Packets;

namespace Offload.Engine.Tests.Fuzz;

/// <summary>
/// Packets for the fuzz tests: plausible ones from a small world of hosts and ports (so flows meet again,
/// replies match and tables fill), replies and ICMP errors built from what the engine sent out, and
/// mutations of all of these. Everything is driven by the <see cref="System.Random"/> passed in, so a seed replays a run.
/// </summary>
internal static class FuzzPackets
{
    public static readonly string[] Lan4 = ["192.168.1.2", "192.168.1.3", "192.168.1.4", "192.168.1.50"];
    public static readonly string[] Wan4 = ["198.51.100.1", "198.51.100.2", "203.0.113.1", "203.0.113.9"];
    public static readonly string[] Lan6 = ["fd00::2", "fd00::3", "fd00::50"];
    public static readonly string[] Wan6 = ["2001:db8::1", "2001:db8::2", "2001:db8:ffff::1"];

    private static readonly ushort[] Ports = [21, 53, 69, 80, 443, 1024, 1025, 8080, 40000, 40001];
    private static readonly byte[] OtherProtocols = [IpProtocol.Gre, IpProtocol.Esp, IpProtocol.Sctp, IpProtocol.UdpLite, 4, 41, 255];
    private static readonly byte[] InterestingNext = [0, 1, 6, 17, 43, 44, 50, 51, 58, 59, 60, 135, 136, 139, 140, 255];

    private static T Pick<T>(Random r, IReadOnlyList<T> items) => items[r.Next(items.Count)];

    private static byte[] Bytes(Random r, int length)
    {
        var b = new byte[length];
        r.NextBytes(b);
        return b;
    }

    /// <summary>A well-formed packet with correct checksums, from the LAN side or the WAN side.</summary>
    public static byte[] Valid(Random r, bool fromLan)
    {
        bool v6 = r.Next(10) < 3;
        string src = v6 ? Pick(r, fromLan ? Lan6 : Wan6) : Pick(r, fromLan ? Lan4 : Wan4);
        string dst = v6 ? Pick(r, fromLan ? Wan6 : Lan6) : Pick(r, fromLan ? Wan4 : Lan4);
        if (!fromLan && r.Next(3) == 0)
        {
            dst = v6 ? "2001:db8:ffff::1" : "203.0.113.1"; // to the router's public address (DNAT, replies to MASQUERADE)
        }

        int kind = r.Next(100);
        byte protocol;
        byte[] l4;
        if (kind < 40)
        {
            protocol = IpProtocol.Tcp;
            byte flags = r.Next(8) switch
            {
                0 or 1 => Wire.Syn,
                2 => Wire.Syn | Wire.Ack,
                3 or 4 => Wire.Ack | Wire.Psh,
                5 => Wire.Fin | Wire.Ack,
                6 => r.Next(2) == 0 ? Wire.Rst : (byte)(Wire.Rst | Wire.Ack),
                _ => (byte)r.Next(256),
            };
            l4 = Wire.Tcp(Pick(r, Ports), Pick(r, Ports), SmallOrRandom(r), SmallOrRandom(r), flags, (ushort)r.Next(65536), TcpOptions(r), Payload(r));
        }
        else if (kind < 70)
        {
            protocol = IpProtocol.Udp;
            l4 = Wire.Udp(Pick(r, Ports), Pick(r, Ports), Payload(r));
        }
        else if (kind < 90)
        {
            protocol = v6 ? IpProtocol.IcmpV6 : IpProtocol.Icmp;
            byte type = r.Next(6) switch
            {
                0 or 1 or 2 => v6 ? (byte)128 : (byte)8,
                3 => v6 ? (byte)129 : (byte)0,
                4 => v6 ? (byte)139 : (byte)13,
                _ => (byte)r.Next(256),
            };
            l4 = Wire.IcmpQuery(type, (ushort)r.Next(4), (ushort)r.Next(65536), payload: Payload(r));
        }
        else
        {
            protocol = Pick(r, OtherProtocols);
            l4 = Bytes(r, r.Next(v6 ? 1 : 0, 40)); // IPv6 needs a non-zero payload length
            if (protocol is IpProtocol.Sctp or IpProtocol.UdpLite && l4.Length < 8)
            {
                l4 = Bytes(r, 8 + r.Next(8));
            }
        }

        if (v6)
        {
            return Wire.V6(src, dst, protocol, l4, ExtensionChain(r), hopLimit: (byte)r.Next(1, 256));
        }

        byte[]? options = r.Next(8) == 0 ? Enumerable.Repeat((byte)1, r.Next(1, 41)).ToArray() : null;
        bool more = r.Next(20) == 0;
        int fragmentOffset = r.Next(30) == 0 ? r.Next(1, 100) : 0;
        return Wire.V4(src, dst, protocol, l4, options, fragmentOffset, more, ttl: (byte)r.Next(1, 256), id: (ushort)r.Next(65536));
    }

    private static uint SmallOrRandom(Random r) => r.Next(3) == 0 ? (uint)r.Next(5000) : (uint)r.NextInt64(0, 1L << 32);

    private static byte[] Payload(Random r) => r.Next(6) switch
    {
        0 => [],
        1 => Encoding.ASCII.GetBytes($"PORT 192,168,1,{r.Next(256)},{r.Next(256)},{r.Next(256)}\r\n"),
        2 => Encoding.ASCII.GetBytes("227 Entering Passive Mode (198,51,100,1,4,1).\r\n"),
        _ => Bytes(r, r.Next(1, 64)),
    };

    private static byte[]? TcpOptions(Random r) => r.Next(5) switch
    {
        0 => [2, 4, 5, 0xb4, 1, 3, 3, (byte)r.Next(16), 4, 2],
        1 => [1, 1, 8, 10, .. Bytes(r, 8)],
        2 => Bytes(r, r.Next(1, 41)),
        _ => null,
    };

    /// <summary>A chain of zero to four IPv6 extension headers, mostly ones the parser knows.</summary>
    public static Ext[] ExtensionChain(Random r)
    {
        int count = r.Next(4) == 0 ? r.Next(1, 5) : 0;
        var chain = new Ext[count];
        for (int i = 0; i < count; i++)
        {
            chain[i] = r.Next(6) switch
            {
                0 => Ext.HopByHop(r.Next(3)),
                1 => Ext.DestinationOptions(r.Next(3)),
                2 => Ext.Routing(r.Next(3)),
                3 => Ext.Ah(r.Next(1, 4)),
                4 => Ext.Fragment(r.Next(4) == 0 ? r.Next(1, 50) : 0, r.Next(2) == 0),
                _ => Unlisted(r),
            };
        }

        return chain;
    }

    // Mobility, HIP or shim6: they look like extension headers, but conntrack (the kernel's ipv6_skip_exthdr) stops at
    // them: the packet is of that protocol, and what follows must never be read as the header it announces.
    private static Ext Unlisted(Random r)
    {
        var b = Bytes(r, 8);
        b[1] = 0;
        return new Ext((byte)Pick(r, new byte[] { 135, 139, 140 }), b);
    }

    /// <summary>An IPv6 packet whose extension-header chain is made of random types and lengths (and may not end).</summary>
    public static byte[] RandomChain(Random r)
    {
        int headers = r.Next(0, 20);
        var body = new List<byte>();
        byte first = Pick(r, InterestingNext);
        for (int i = 0; i < headers; i++)
        {
            int units = r.Next(4) == 0 ? r.Next(256) : r.Next(3);
            var h = new byte[8 * (r.Next(4) == 0 ? r.Next(1, 4) : units + 1)];
            r.NextBytes(h);
            h[0] = Pick(r, InterestingNext);
            h[1] = (byte)units;
            body.AddRange(h);
        }

        body.AddRange(Bytes(r, r.Next(0, 40)));
        var p = new byte[40 + body.Count];
        p[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(4), (ushort)body.Count);
        p[6] = first;
        p[7] = 64;
        Wire.Addr(Pick(r, Lan6)).CopyTo(p, 8);
        Wire.Addr(Pick(r, Wan6)).CopyTo(p, 24);
        body.CopyTo(p, 40);
        return p;
    }

    /// <summary>Random bytes, usually starting with version 4 or 6 so they get past the first check.</summary>
    public static byte[] Noise(Random r)
    {
        var p = Bytes(r, r.Next(0, 120));
        if (p.Length > 0 && r.Next(4) != 0)
        {
            p[0] = (byte)((r.Next(2) == 0 ? 0x40 : 0x60) | (p[0] & 0x0F));
        }

        return p;
    }

    /// <summary>One to three damaging changes: bit flips, byte writes, truncation, trailing bytes, length fields that lie.</summary>
    public static byte[] Mutate(Random r, byte[] packet)
    {
        var p = packet.ToList();
        int count = r.Next(1, 4);
        for (int i = 0; i < count; i++)
        {
            var info = PacketParser.Parse(p.ToArray());
            switch (r.Next(8))
            {
                case 0 when p.Count > 0:
                    p[r.Next(p.Count)] ^= (byte)(1 << r.Next(8));
                    break;
                case 1 when p.Count > 0:
                    p[r.Next(p.Count)] = (byte)r.Next(256);
                    break;
                case 2:
                {
                    int keep = r.Next(p.Count + 1);
                    p.RemoveRange(keep, p.Count - keep);
                    break;
                }

                case 3:
                    p.AddRange(Bytes(r, r.Next(1, 24)));
                    break;
                case 4:
                    LieAboutALength(r, p, info);
                    break;
                case 5 when p.Count > 9:
                    // Another protocol or next header.
                    p[(p[0] >> 4) == 6 ? 6 : 9] = Pick(r, InterestingNext);
                    break;
                case 6 when p.Count > 8 && (p[0] >> 4) == 4:
                    p[6] = (byte)r.Next(256);
                    p[7] = (byte)r.Next(256);
                    break;
                case 7 when info.IsValid && info.L4Offset + 1 < p.Count:
                    // The first transport bytes (ports, ICMP type): may turn a query into an error and the like.
                    p[info.L4Offset] = (byte)r.Next(256);
                    break;
            }
        }

        return [.. p];
    }

    private static void LieAboutALength(Random r, List<byte> p, PacketInfo info)
    {
        ushort Lie(int truth) => r.Next(3) switch
        {
            0 => (ushort)r.Next(65536),
            1 => (ushort)Math.Clamp(truth + r.Next(-9, 10), 0, 65535),
            _ => (ushort)(r.Next(2) == 0 ? 0 : 65535),
        };

        void Write16(int at, ushort value)
        {
            if (at + 1 < p.Count)
            {
                p[at] = (byte)(value >> 8);
                p[at + 1] = (byte)value;
            }
        }

        int version = p.Count > 0 ? p[0] >> 4 : 0;
        switch (r.Next(5))
        {
            case 0 when version == 4:
                Write16(2, Lie(p.Count));
                break;
            case 0 when version == 6:
                Write16(4, Lie(p.Count - 40));
                break;
            case 1 when p.Count > 0:
                p[0] = (byte)((p[0] & 0xF0) | r.Next(16)); // IHL (or the IPv6 traffic class bits)
                break;
            case 2 when info.IsValid && info.Protocol == IpProtocol.Udp:
                Write16(info.L4Offset + 4, Lie(info.L4Length));
                break;
            case 3 when info.IsValid && info.Protocol == IpProtocol.Tcp && !info.IsLaterFragment:
                p[info.L4Offset + 12] = (byte)((r.Next(16) << 4) | (p[info.L4Offset + 12] & 0x0F));
                break;
            case 4 when version == 6 && p.Count > 41:
                p[41] = (byte)r.Next(256); // the first extension header's length, if there is one
                break;
        }
    }

    /// <summary>Makes the IPv4 header and transport checksums right again where the packet can be parsed, so mutants reach the tracker.</summary>
    public static void FixChecksums(byte[] p)
    {
        var info = PacketParser.Parse(p);
        if (p.Length >= 20 && (p[0] >> 4) == 4 && (p[0] & 0x0F) >= 5 && (p[0] & 0x0F) * 4 <= p.Length)
        {
            Wire.FixIPv4HeaderChecksum(p);
        }

        if (!info.IsValid || info.IsLaterFragment)
        {
            return;
        }

        int l4Length = info.L4Length;
        if (info.Protocol == IpProtocol.Udp && info.L4Length >= 8)
        {
            int udpLength = BinaryPrimitives.ReadUInt16BigEndian(p.AsSpan(info.L4Offset + 4));
            if (udpLength >= 8 && udpLength <= info.L4Length)
            {
                l4Length = udpLength;
            }
        }

        var datagram = p[..(info.L4Offset + l4Length)];
        Wire.FixTransportChecksum(datagram, info.Family, info.L4Offset, info.Protocol);
        datagram.AsSpan(info.L4Offset).CopyTo(p.AsSpan(info.L4Offset));
    }

    /// <summary>
    /// The answer the far end would send to <paramref name="sent"/> (a packet as it left the engine): addresses and
    /// ports swapped, a TCP SYN answered by SYN/ACK and anything else by ACK, an ICMP query by its reply.
    /// Null when the packet cannot be answered that way.
    /// </summary>
    public static byte[]? ReplyTo(byte[] sent)
    {
        var info = PacketParser.Parse(sent);
        if (!info.IsValid || info.IsLaterFragment)
        {
            return null;
        }

        var p = sent[..info.TotalLength];
        SwapAddresses(p, info);
        var l4 = p.AsSpan(info.L4Offset);
        switch (info.Protocol)
        {
            case IpProtocol.Tcp:
            {
                SwapPorts(l4);
                uint seq = BinaryPrimitives.ReadUInt32BigEndian(l4.Slice(4));
                uint ack = BinaryPrimitives.ReadUInt32BigEndian(l4.Slice(8));
                byte flags = l4[13];
                uint consumed = (uint)(info.PayloadLength + ((flags & Wire.Syn) != 0 ? 1 : 0) + ((flags & Wire.Fin) != 0 ? 1 : 0));
                BinaryPrimitives.WriteUInt32BigEndian(l4.Slice(4), (flags & Wire.Ack) != 0 ? ack : 77_000u);
                BinaryPrimitives.WriteUInt32BigEndian(l4.Slice(8), seq + consumed);
                l4[13] = (flags & (Wire.Syn | Wire.Ack)) == Wire.Syn ? (byte)(Wire.Syn | Wire.Ack) : Wire.Ack;
                break;
            }

            case IpProtocol.Udp:
            case IpProtocol.UdpLite:
            case IpProtocol.Sctp:
                SwapPorts(l4);
                break;
            case IpProtocol.Icmp:
            case IpProtocol.IcmpV6:
                int reply = Icmp.ReplyType(info.Protocol, l4[0]);
                if (reply < 0)
                {
                    return null;
                }

                l4[0] = (byte)reply;
                break;
        }

        if (info.Family == 4)
        {
            p[8] = 64;
        }
        else
        {
            p[7] = 64;
        }

        FixChecksums(p);
        return p;
    }

    /// <summary>An ICMP error about <paramref name="sent"/> (as it left the engine), from <paramref name="reporter"/>, quoting its first <paramref name="quoteLength"/> bytes.</summary>
    public static byte[] ErrorAbout(byte[] sent, string reporter, int quoteLength, byte type, byte code)
    {
        bool v6 = (sent[0] >> 4) == 6;
        var quoted = sent.AsSpan(0, Math.Min(quoteLength, sent.Length));
        string destination = v6
            ? new System.Net.IPAddress(sent.AsSpan(8, 16)).ToString()
            : new System.Net.IPAddress(sent.AsSpan(12, 4)).ToString();
        var icmp = Wire.IcmpError(type, code, quoted);
        return v6 ? Wire.V6(reporter, destination, IpProtocol.IcmpV6, icmp) : Wire.V4(reporter, destination, IpProtocol.Icmp, icmp);
    }

    private static void SwapAddresses(byte[] p, in PacketInfo info)
    {
        int n = info.AddressLength;
        var source = p.AsSpan(info.SourceAddressOffset, n).ToArray();
        p.AsSpan(info.DestinationAddressOffset, n).CopyTo(p.AsSpan(info.SourceAddressOffset, n));
        source.CopyTo(p.AsSpan(info.DestinationAddressOffset, n));
    }

    private static void SwapPorts(Span<byte> l4)
    {
        (l4[0], l4[1], l4[2], l4[3]) = (l4[2], l4[3], l4[0], l4[1]);
    }

    /// <summary>True when the IPv4 header and the transport checksums (TCP, UDP, ICMP, ICMPv6; not on fragments) hold, by the reference sums.</summary>
    public static bool ChecksumsHold(ReadOnlySpan<byte> p, in PacketInfo info)
    {
        if (info.Family == 4 && !Wire.IPv4HeaderVerifies(p))
        {
            return false;
        }

        if (info.IsFragment || info.Protocol is not (IpProtocol.Tcp or IpProtocol.Udp or IpProtocol.Icmp or IpProtocol.IcmpV6))
        {
            return true;
        }

        return Wire.TransportVerifies(p, info.Family, info.L4Offset, info.L4Length, info.Protocol);
    }
}
