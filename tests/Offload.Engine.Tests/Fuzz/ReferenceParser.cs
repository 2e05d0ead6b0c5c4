using System.Buffers.Binary;
using Offload.Engine.Packets;

namespace Offload.Engine.Tests.Fuzz;

/// <summary>
/// A second, deliberately plain reading of the parser's documented rules, written from the RFCs and the
/// engine's stated policy (the kernel's ipv6_skip_exthdr headers, 16 at most, jumbograms refused, UDP length not checked on
/// fragments), so the fuzz tests can compare every field of every mutated packet against it.
/// </summary>
internal static class ReferenceParser
{
    public static PacketInfo Parse(ReadOnlySpan<byte> p)
    {
        var r = default(PacketInfo);
        if (p.Length == 0)
        {
            return Fail(ref r, PacketError.Truncated);
        }

        switch (p[0] >> 4)
        {
            case 4:
                r.Family = 4;
                if (p.Length < 20)
                {
                    return Fail(ref r, PacketError.Truncated);
                }

                int ihl = (p[0] & 0xF) * 4;
                if (ihl < 20 || ihl > p.Length)
                {
                    return Fail(ref r, PacketError.BadIPv4HeaderLength);
                }

                int total = U16(p, 2);
                if (total < ihl || total > p.Length)
                {
                    return Fail(ref r, PacketError.BadTotalLength);
                }

                int frag = U16(p, 6);
                r.IsFragment = (frag & 0x3FFF) != 0;
                r.IsLaterFragment = (frag & 0x1FFF) != 0;
                r.Protocol = p[9];
                r.TotalLength = total;
                r.L4Offset = ihl;
                break;

            case 6:
                r.Family = 6;
                if (p.Length < 40)
                {
                    return Fail(ref r, PacketError.Truncated);
                }

                int payload = U16(p, 4);
                if (payload == 0)
                {
                    return Fail(ref r, PacketError.JumboPayload);
                }

                if (40 + payload > p.Length)
                {
                    return Fail(ref r, PacketError.BadTotalLength);
                }

                r.TotalLength = 40 + payload;
                byte next = p[6];
                int at = 40;
                int seen = 0;
                while (next is 0 or 43 or 44 or 51 or 60)
                {
                    if (seen == PacketParser.MaxExtensionHeaders)
                    {
                        return Fail(ref r, PacketError.TooManyExtensionHeaders);
                    }

                    if (at + 8 > r.TotalLength)
                    {
                        return Fail(ref r, PacketError.BadExtensionHeader);
                    }

                    int size;
                    if (next == 44)
                    {
                        int word = U16(p, at + 2);
                        r.IsFragment |= (word & 1) != 0 || (word >> 3) != 0;
                        if ((word >> 3) != 0)
                        {
                            r.IsLaterFragment = true;
                            r.Protocol = p[at];
                            r.L4Offset = at + 8;
                            r.PayloadOffset = r.L4Offset;
                            return r;
                        }

                        size = 8;
                    }
                    else
                    {
                        size = next == 51 ? (p[at + 1] + 2) * 4 : (p[at + 1] + 1) * 8;
                    }

                    if (at + size > r.TotalLength)
                    {
                        return Fail(ref r, PacketError.BadExtensionHeader);
                    }

                    next = p[at];
                    at += size;
                    seen++;
                }

                r.Protocol = next;
                r.L4Offset = at;
                break;

            default:
                return Fail(ref r, PacketError.BadVersion);
        }

        if (r.IsLaterFragment)
        {
            r.PayloadOffset = r.L4Offset;
            return r;
        }

        int available = r.TotalLength - r.L4Offset;
        switch (r.Protocol)
        {
            case 6:
                if (available < 20)
                {
                    return Fail(ref r, PacketError.TcpHeaderTruncated);
                }

                int dataOffset = (p[r.L4Offset + 12] >> 4) * 4;
                if (dataOffset < 20 || dataOffset > available)
                {
                    return Fail(ref r, PacketError.BadTcpDataOffset);
                }

                r.PayloadOffset = r.L4Offset + dataOffset;
                break;
            case 17:
            case 136:
                if (available < 8)
                {
                    return Fail(ref r, PacketError.UdpHeaderTruncated);
                }

                int udpLength = U16(p, r.L4Offset + 4);
                if (r.Protocol == 17 && !r.IsFragment && (udpLength < 8 || udpLength > available))
                {
                    return Fail(ref r, PacketError.BadUdpLength);
                }

                r.PayloadOffset = r.L4Offset + 8;
                break;
            case 1:
            case 58:
                if (available < 8)
                {
                    return Fail(ref r, PacketError.IcmpTruncated);
                }

                r.PayloadOffset = r.L4Offset + 8;
                break;
            default:
                r.PayloadOffset = r.L4Offset;
                break;
        }

        return r;
    }

    /// <summary>The same plain reading for a packet quoted in an ICMP error: lengths from what is there, 8 transport bytes needed.</summary>
    public static PacketInfo ParseQuoted(ReadOnlySpan<byte> p)
    {
        var r = default(PacketInfo);
        if (p.Length == 0)
        {
            return Fail(ref r, PacketError.Truncated);
        }

        switch (p[0] >> 4)
        {
            case 4:
                r.Family = 4;
                int ihl = (p[0] & 0xF) * 4;
                if (p.Length < 20 || ihl < 20 || ihl > p.Length)
                {
                    return Fail(ref r, PacketError.Truncated);
                }

                int frag = U16(p, 6);
                r.IsFragment = (frag & 0x3FFF) != 0;
                r.IsLaterFragment = (frag & 0x1FFF) != 0;
                r.Protocol = p[9];
                r.L4Offset = ihl;
                break;

            case 6:
                r.Family = 6;
                if (p.Length < 40)
                {
                    return Fail(ref r, PacketError.Truncated);
                }

                byte next = p[6];
                int at = 40;
                for (int seen = 0; next is 0 or 43 or 44 or 51 or 60; seen++)
                {
                    if (seen == PacketParser.MaxExtensionHeaders || at + 8 > p.Length)
                    {
                        return Fail(ref r, PacketError.BadExtensionHeader);
                    }

                    int size = next == 44 ? 8 : next == 51 ? (p[at + 1] + 2) * 4 : (p[at + 1] + 1) * 8;
                    if (next == 44 && (U16(p, at + 2) >> 3) != 0)
                    {
                        r.IsFragment = true;
                        r.IsLaterFragment = true;
                    }

                    next = p[at];
                    at += size;
                }

                r.Protocol = next;
                r.L4Offset = at;
                break;

            default:
                return Fail(ref r, PacketError.BadVersion);
        }

        r.TotalLength = p.Length;
        if (r.IsLaterFragment || r.L4Offset + 8 > p.Length)
        {
            return Fail(ref r, PacketError.Truncated);
        }

        r.PayloadOffset = p.Length;
        return r;
    }

    private static int U16(ReadOnlySpan<byte> p, int at) => BinaryPrimitives.ReadUInt16BigEndian(p.Slice(at));

    private static PacketInfo Fail(ref PacketInfo r, PacketError error)
    {
        r.Error = error;
        return r;
    }
}
