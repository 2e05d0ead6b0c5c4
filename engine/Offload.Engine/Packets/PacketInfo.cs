using System.Buffers.Binary;

namespace Offload.Engine.Packets;

/// <summary>Why a packet could not be parsed. Each value has its own drop counter.</summary>
public enum PacketError : byte
{
    None,
    Truncated,
    BadVersion,
    BadIPv4HeaderLength,
    BadTotalLength,
    BadExtensionHeader,
    TooManyExtensionHeaders,
    JumboPayload,
    TcpHeaderTruncated,
    BadTcpDataOffset,
    UdpHeaderTruncated,
    BadUdpLength,
    IcmpTruncated,
    BadChecksum,
}

/// <summary>
/// Where the headers of one IP packet lie in its buffer, found by <see cref="PacketParser"/>.
/// Plain offsets, no references: parsing allocates nothing and the result can be kept beside the buffer.
/// </summary>
public struct PacketInfo
{
    /// <summary>4 or 6.</summary>
    public byte Family;

    /// <summary>The upper-layer protocol (after IPv6 extension headers).</summary>
    public byte Protocol;

    /// <summary>What was wrong, or <see cref="PacketError.None"/>.</summary>
    public PacketError Error;

    /// <summary>True for any fragment of a fragmented datagram.</summary>
    public bool IsFragment;

    /// <summary>True for a fragment that is not the first: it carries no upper-layer header, so no ports.</summary>
    public bool IsLaterFragment;

    /// <summary>Length of the IP datagram (the buffer may be longer, e.g. Ethernet padding).</summary>
    public int TotalLength;

    /// <summary>Offset of the upper-layer header (the end of the IP header and its extension headers).</summary>
    public int L4Offset;

    /// <summary>Offset of the upper-layer payload (after the TCP, UDP or ICMP header); equals <see cref="TotalLength"/> when there is none.</summary>
    public int PayloadOffset;

    /// <summary>Bytes from <see cref="L4Offset"/> to the end of the datagram.</summary>
    public readonly int L4Length => TotalLength - L4Offset;

    /// <summary>Bytes of upper-layer payload.</summary>
    public readonly int PayloadLength => TotalLength - PayloadOffset;

    public readonly bool IsValid => Error == PacketError.None;

    /// <summary>True when the packet carries an upper-layer header whose ports (or ICMP fields) can be read.</summary>
    public readonly bool HasTransportHeader => Error == PacketError.None && !IsLaterFragment;

    /// <summary>The offset of the source address.</summary>
    public readonly int SourceAddressOffset => Family == 4 ? 12 : 8;

    /// <summary>The offset of the destination address.</summary>
    public readonly int DestinationAddressOffset => Family == 4 ? 16 : 24;

    public readonly int AddressLength => Family == 4 ? 4 : 16;
}

/// <summary>TCP header flag bits (the 13th byte of the header).</summary>
public static class TcpFlags
{
    public const byte Fin = 0x01;
    public const byte Syn = 0x02;
    public const byte Rst = 0x04;
    public const byte Psh = 0x08;
    public const byte Ack = 0x10;
    public const byte Urg = 0x20;
    public const byte Ece = 0x40;
    public const byte Cwr = 0x80;
}

/// <summary>Field offsets within the headers, named as in the RFCs.</summary>
public static class HeaderOffsets
{
    public const int IPv4Ttl = 8;
    public const int IPv4Protocol = 9;
    public const int IPv4Checksum = 10;
    public const int IPv4TotalLength = 2;
    public const int IPv6PayloadLength = 4;
    public const int IPv6HopLimit = 7;
    public const int IPv6HeaderLength = 40;

    public const int TcpSeq = 4;
    public const int TcpAck = 8;
    public const int TcpDataOffset = 12;
    public const int TcpFlags = 13;
    public const int TcpWindow = 14;
    public const int TcpChecksum = 16;
    public const int TcpMinHeader = 20;

    public const int UdpLength = 4;
    public const int UdpChecksum = 6;
    public const int UdpHeader = 8;

    public const int IcmpChecksum = 2;
    public const int IcmpHeader = 8;
}

/// <summary>Reads IP packet headers from a span, checking every length before it is used.</summary>
public static class PacketParser
{
    /// <summary>IPv6 extension headers walked at most; more is treated as an attack, like a bounded loop in the kernel.</summary>
    public const int MaxExtensionHeaders = 16;

    /// <summary>Parses the IP packet at the start of <paramref name="packet"/>. Never throws.</summary>
    public static PacketInfo Parse(ReadOnlySpan<byte> packet)
    {
        var info = default(PacketInfo);
        if (packet.Length < 1)
        {
            info.Error = PacketError.Truncated;
            return info;
        }

        int version = packet[0] >> 4;
        if (version == 4)
        {
            ParseIPv4(packet, ref info);
        }
        else if (version == 6)
        {
            ParseIPv6(packet, ref info);
        }
        else
        {
            info.Error = PacketError.BadVersion;
        }

        if (info.Error == PacketError.None && !info.IsLaterFragment)
        {
            ParseTransport(packet, ref info);
        }
        else if (info.Error == PacketError.None)
        {
            info.PayloadOffset = info.L4Offset;
        }

        return info;
    }

    private static void ParseIPv4(ReadOnlySpan<byte> packet, ref PacketInfo info)
    {
        info.Family = 4;
        if (packet.Length < 20)
        {
            info.Error = PacketError.Truncated;
            return;
        }

        int headerLength = (packet[0] & 0x0F) * 4;
        if (headerLength < 20 || headerLength > packet.Length)
        {
            info.Error = PacketError.BadIPv4HeaderLength;
            return;
        }

        int totalLength = BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(HeaderOffsets.IPv4TotalLength));
        if (totalLength < headerLength || totalLength > packet.Length)
        {
            info.Error = PacketError.BadTotalLength;
            return;
        }

        ushort fragment = BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(6));
        int fragmentOffset = fragment & 0x1FFF;
        bool moreFragments = (fragment & 0x2000) != 0;
        info.IsFragment = moreFragments || fragmentOffset != 0;
        info.IsLaterFragment = fragmentOffset != 0;
        info.Protocol = packet[HeaderOffsets.IPv4Protocol];
        info.TotalLength = totalLength;
        info.L4Offset = headerLength;
    }

    private static void ParseIPv6(ReadOnlySpan<byte> packet, ref PacketInfo info)
    {
        info.Family = 6;
        if (packet.Length < HeaderOffsets.IPv6HeaderLength)
        {
            info.Error = PacketError.Truncated;
            return;
        }

        int payloadLength = BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(HeaderOffsets.IPv6PayloadLength));
        if (payloadLength == 0)
        {
            // A jumbogram (RFC 2675) or a lie; neither is something a router queue hands us.
            info.Error = PacketError.JumboPayload;
            return;
        }

        int totalLength = HeaderOffsets.IPv6HeaderLength + payloadLength;
        if (totalLength > packet.Length)
        {
            info.Error = PacketError.BadTotalLength;
            return;
        }

        info.TotalLength = totalLength;
        byte next = packet[6];
        int offset = HeaderOffsets.IPv6HeaderLength;
        for (int count = 0; ; count++)
        {
            if (!IsIPv6ExtensionHeader(next))
            {
                break;
            }

            if (count == MaxExtensionHeaders)
            {
                info.Error = PacketError.TooManyExtensionHeaders;
                return;
            }

            if (offset + 8 > totalLength)
            {
                info.Error = PacketError.BadExtensionHeader;
                return;
            }

            int length;
            if (next == IpProtocol.IPv6Fragment)
            {
                length = 8;
                ushort fragment = BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(offset + 2));
                int fragmentOffset = fragment >> 3;
                bool moreFragments = (fragment & 1) != 0;
                info.IsFragment |= moreFragments || fragmentOffset != 0;
                if (fragmentOffset != 0)
                {
                    // Later fragments: what follows is data, not a header.
                    info.IsLaterFragment = true;
                    info.Protocol = packet[offset];
                    info.L4Offset = offset + length;
                    return;
                }
            }
            else if (next == IpProtocol.Ah)
            {
                length = (packet[offset + 1] + 2) * 4;
            }
            else
            {
                length = (packet[offset + 1] + 1) * 8;
            }

            if (offset + length > totalLength)
            {
                info.Error = PacketError.BadExtensionHeader;
                return;
            }

            next = packet[offset];
            offset += length;
        }

        info.Protocol = next;
        info.L4Offset = offset;
    }

    /// <summary>
    /// The headers conntrack steps over to find the upper-layer protocol, as the kernel's ipv6_skip_exthdr does:
    /// hop-by-hop, routing, fragment, AH (by its own length unit) and destination options. Mobility (135), HIP (139)
    /// and shim6 (140) end the walk there, as in the kernel: the packet is of that protocol, tracked by its addresses
    /// alone, and whatever follows is never read as a TCP or UDP header (a packet filter's <c>-p tcp</c> does not
    /// match it either).
    /// </summary>
    private static bool IsIPv6ExtensionHeader(byte next) => next switch
    {
        IpProtocol.HopByHop or IpProtocol.IPv6Routing or IpProtocol.IPv6Fragment or IpProtocol.IPv6DestinationOptions
            or IpProtocol.Ah => true,
        _ => false,
    };

    private static void ParseTransport(ReadOnlySpan<byte> packet, ref PacketInfo info)
    {
        int available = info.TotalLength - info.L4Offset;
        switch (info.Protocol)
        {
            case IpProtocol.Tcp:
                if (available < HeaderOffsets.TcpMinHeader)
                {
                    info.Error = PacketError.TcpHeaderTruncated;
                    return;
                }

                int dataOffset = (packet[info.L4Offset + HeaderOffsets.TcpDataOffset] >> 4) * 4;
                if (dataOffset < HeaderOffsets.TcpMinHeader || dataOffset > available)
                {
                    info.Error = PacketError.BadTcpDataOffset;
                    return;
                }

                info.PayloadOffset = info.L4Offset + dataOffset;
                return;

            case IpProtocol.Udp:
            case IpProtocol.UdpLite:
                if (available < HeaderOffsets.UdpHeader)
                {
                    info.Error = PacketError.UdpHeaderTruncated;
                    return;
                }

                int udpLength = BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(info.L4Offset + HeaderOffsets.UdpLength));
                if (info.Protocol == IpProtocol.Udp && !info.IsFragment && (udpLength < HeaderOffsets.UdpHeader || udpLength > available))
                {
                    info.Error = PacketError.BadUdpLength;
                    return;
                }

                info.PayloadOffset = info.L4Offset + HeaderOffsets.UdpHeader;
                return;

            case IpProtocol.Icmp:
            case IpProtocol.IcmpV6:
                if (available < HeaderOffsets.IcmpHeader)
                {
                    info.Error = PacketError.IcmpTruncated;
                    return;
                }

                info.PayloadOffset = info.L4Offset + HeaderOffsets.IcmpHeader;
                return;

            default:
                info.PayloadOffset = info.L4Offset;
                return;
        }
    }

    /// <summary>
    /// Parses the packet quoted inside an ICMP error: usually cut short, so lengths are taken from what is
    /// present, and only the first 8 bytes of the transport header (ports, or ICMP type and id) are required.
    /// </summary>
    public static PacketInfo ParseQuoted(ReadOnlySpan<byte> quoted)
    {
        var info = default(PacketInfo);
        if (quoted.Length < 1)
        {
            info.Error = PacketError.Truncated;
            return info;
        }

        int version = quoted[0] >> 4;
        if (version == 4)
        {
            info.Family = 4;
            int headerLength = (quoted[0] & 0x0F) * 4;
            if (quoted.Length < 20 || headerLength < 20 || headerLength > quoted.Length)
            {
                info.Error = PacketError.Truncated;
                return info;
            }

            ushort fragment = BinaryPrimitives.ReadUInt16BigEndian(quoted.Slice(6));
            info.IsFragment = (fragment & 0x3FFF) != 0;
            info.IsLaterFragment = (fragment & 0x1FFF) != 0;
            info.Protocol = quoted[HeaderOffsets.IPv4Protocol];
            info.L4Offset = headerLength;
        }
        else if (version == 6)
        {
            info.Family = 6;
            if (quoted.Length < HeaderOffsets.IPv6HeaderLength)
            {
                info.Error = PacketError.Truncated;
                return info;
            }

            byte next = quoted[6];
            int offset = HeaderOffsets.IPv6HeaderLength;
            for (int count = 0; IsIPv6ExtensionHeader(next); count++)
            {
                if (count == MaxExtensionHeaders || offset + 8 > quoted.Length)
                {
                    info.Error = PacketError.BadExtensionHeader;
                    return info;
                }

                int length = next == IpProtocol.IPv6Fragment ? 8 : next == IpProtocol.Ah ? (quoted[offset + 1] + 2) * 4 : (quoted[offset + 1] + 1) * 8;
                if (next == IpProtocol.IPv6Fragment && (BinaryPrimitives.ReadUInt16BigEndian(quoted.Slice(offset + 2)) >> 3) != 0)
                {
                    info.IsFragment = true;
                    info.IsLaterFragment = true;
                }

                next = quoted[offset];
                offset += length;
            }

            info.Protocol = next;
            info.L4Offset = offset;
        }
        else
        {
            info.Error = PacketError.BadVersion;
            return info;
        }

        info.TotalLength = quoted.Length;
        if (info.IsLaterFragment || info.L4Offset + 8 > quoted.Length)
        {
            info.Error = PacketError.Truncated;
            return info;
        }

        info.PayloadOffset = info.TotalLength;
        return info;
    }

    /// <summary>
    /// Verifies the transport checksum (TCP, UDP, ICMP, ICMPv6) of a parsed, unfragmented packet.
    /// A UDP checksum of zero means "none" and passes.
    /// </summary>
    public static bool TransportChecksumIsValid(ReadOnlySpan<byte> packet, in PacketInfo info)
    {
        if (info.IsFragment)
        {
            return true; // Only the whole datagram has a checksum to verify.
        }

        var l4 = packet.Slice(info.L4Offset, info.L4Length);
        switch (info.Protocol)
        {
            case IpProtocol.Tcp:
            case IpProtocol.IcmpV6:
                return Checksum.Fold(Checksum.Add(PseudoHeader(packet, info, l4.Length), l4)) == 0xFFFF;
            case IpProtocol.Udp:
                // Zero means "no checksum". IPv6 forbids it outside tunnels (RFC 6935), but the kernel's conntrack
                // lets it pass in both families, and so do we: the receiver decides.
                if (BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(HeaderOffsets.UdpChecksum)) == 0)
                {
                    return true;
                }

                int udpLength = BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(HeaderOffsets.UdpLength));
                return Checksum.Fold(Checksum.Add(PseudoHeader(packet, info, udpLength), l4.Slice(0, udpLength))) == 0xFFFF;
            case IpProtocol.Icmp:
                return Checksum.Fold(Checksum.Add(0, l4)) == 0xFFFF;
            default:
                return true;
        }
    }

    /// <summary>The pseudo-header partial sum of a parsed packet for an upper-layer length.</summary>
    public static ulong PseudoHeader(ReadOnlySpan<byte> packet, in PacketInfo info, int upperLayerLength) =>
        Checksum.PseudoHeader(
            packet.Slice(info.SourceAddressOffset, info.AddressLength),
            packet.Slice(info.DestinationAddressOffset, info.AddressLength),
            info.Protocol,
            upperLayerLength);

    /// <summary>Verifies an IPv4 header checksum.</summary>
    public static bool IPv4HeaderChecksumIsValid(ReadOnlySpan<byte> packet) =>
        Checksum.Fold(Checksum.Add(0, packet.Slice(0, (packet[0] & 0x0F) * 4))) == 0xFFFF;
}
