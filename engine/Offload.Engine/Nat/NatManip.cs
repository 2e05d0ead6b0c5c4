using System.Buffers.Binary;
using Offload.Engine.Conntrack;
using Offload.Engine.Packets;

namespace Offload.Engine.Nat;

/// <summary>
/// Rewrites packets to a connection's translated tuple (the kernel's nf_nat_packet and
/// nf_nat_ipv4/ipv6_manip_pkt), with incremental checksum updates, including the packet quoted
/// inside an ICMP error.
/// </summary>
internal static class NatManip
{
    /// <summary>
    /// Applies the manip of <paramref name="manip"/> type to a packet of direction <paramref name="direction"/>
    /// if the connection is translated that way. In the reply direction the roles swap: a source-NAT'd
    /// connection has its replies' destination rewritten.
    /// </summary>
    /// <returns>True when the packet was rewritten.</returns>
    public static bool Apply(Span<byte> packet, in PacketInfo info, Connection connection, ConnDirection direction, ManipType manip)
    {
        if (!NeedsManip(connection, direction, manip))
        {
            return false;
        }

        // The packet must look like the inverse of the other direction's tuple.
        var target = connection.TupleOf(direction.Opposite()).Invert();
        ManipPacket(packet, 0, info.Family, info.L4Offset, info.TotalLength - info.L4Offset, info.Protocol, info.IsLaterFragment, target, manip);
        return true;
    }

    /// <summary>True when a packet of this direction needs the manip of this type.</summary>
    public static bool NeedsManip(Connection connection, ConnDirection direction, ManipType manip)
    {
        var bit = manip == ManipType.Source ? ConnStatus.SrcNat : ConnStatus.DstNat;
        if (direction == ConnDirection.Reply)
        {
            bit = bit == ConnStatus.SrcNat ? ConnStatus.DstNat : ConnStatus.SrcNat;
        }

        return (connection.StatusBits & bit) != 0;
    }

    /// <summary>
    /// Rewrites the address and port of one side of the IP packet at <paramref name="ipOffset"/> to those of <paramref name="target"/>.
    /// <paramref name="l4Available"/> may be as short as 8 bytes inside an ICMP error: then only what is present is rewritten.
    /// </summary>
    public static void ManipPacket(
        Span<byte> packet,
        int ipOffset,
        byte family,
        int l4Offset,
        int l4Available,
        byte protocol,
        bool laterFragment,
        in ConnTuple target,
        ManipType manip)
    {
        if (family == 4 && !laterFragment && protocol is IpProtocol.Tcp or IpProtocol.Udp or IpProtocol.UdpLite)
        {
            ManipIPv4PortsAndAddress(packet, ipOffset, l4Offset, l4Available, protocol, target, manip);
            return;
        }

        int addressLength = family == 4 ? 4 : 16;
        int addressOffset = ipOffset + (family == 4 ? (manip == ManipType.Source ? 12 : 16) : (manip == ManipType.Source ? 8 : 24));
        var address = manip == ManipType.Source ? target.Source : target.Destination;

        Span<byte> oldAddress = stackalloc byte[16];
        Span<byte> newAddress = stackalloc byte[16];
        packet.Slice(addressOffset, addressLength).CopyTo(oldAddress);
        address.Write(family, newAddress);
        oldAddress = oldAddress.Slice(0, addressLength);
        newAddress = newAddress.Slice(0, addressLength);

        if (!laterFragment)
        {
            ManipTransport(packet.Slice(l4Offset, l4Available), family, protocol, oldAddress, newAddress, target, manip);
        }

        newAddress.CopyTo(packet.Slice(addressOffset, addressLength));
        if (family == 4)
        {
            Checksum.UpdateField(packet, ipOffset + HeaderOffsets.IPv4Checksum, oldAddress, newAddress);
        }
    }

    /// <summary>
    /// <see cref="ManipPacket"/> for the commonest packet a router translates, an IPv4 TCP or UDP segment: the address
    /// and port as numbers and the checksums updated by 32- and 16-bit differences, without copying bytes around.
    /// </summary>
    private static void ManipIPv4PortsAndAddress(Span<byte> packet, int ipOffset, int l4Offset, int l4Available, byte protocol, in ConnTuple target, ManipType manip)
    {
        int addressOffset = ipOffset + (manip == ManipType.Source ? 12 : 16);
        uint oldAddress = BinaryPrimitives.ReadUInt32BigEndian(packet.Slice(addressOffset));
        uint newAddress = (manip == ManipType.Source ? target.Source : target.Destination).IPv4Value;

        RewritePort(packet.Slice(l4Offset, l4Available), protocol, target, manip, Checksum.Difference(oldAddress, newAddress));
        BinaryPrimitives.WriteUInt32BigEndian(packet.Slice(addressOffset), newAddress);
        Checksum.UpdateField(packet, ipOffset + HeaderOffsets.IPv4Checksum, oldAddress, newAddress);
    }

    /// <summary>
    /// Rewrites the port of a TCP, UDP or UDP-Lite header to <paramref name="target"/>'s, and its checksum for that and
    /// for the address change the pseudo-header sees (<paramref name="addressDifference"/>). <paramref name="l4"/> may be
    /// only the 8 bytes an ICMP error quotes: then only what is there is rewritten.
    /// </summary>
    private static void RewritePort(Span<byte> l4, byte protocol, in ConnTuple target, ManipType manip, ulong addressDifference)
    {
        if (l4.Length < 4)
        {
            return;
        }

        int portOffset = manip == ManipType.Source ? 0 : 2;
        ushort oldPort = BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(portOffset));
        ushort newPort = manip == ManipType.Source ? target.SourcePort : target.DestinationPort;
        int checksumOffset = protocol == IpProtocol.Tcp ? HeaderOffsets.TcpChecksum : HeaderOffsets.UdpChecksum;

        // Inside an ICMP error only the first 8 bytes may be quoted: no TCP checksum to fix then.
        if (l4.Length >= checksumOffset + 2)
        {
            ushort check = BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(checksumOffset));
            // A UDP datagram sent without a checksum stays without one (as in the kernel, in both families).
            if (protocol != IpProtocol.Udp || check != 0)
            {
                check = Checksum.Apply(check, Checksum.Combine(addressDifference, Checksum.Difference(oldPort, newPort)));
                if (protocol != IpProtocol.Tcp && check == 0)
                {
                    check = 0xFFFF; // Zero would mean "no checksum" to the receiver.
                }

                BinaryPrimitives.WriteUInt16BigEndian(l4.Slice(checksumOffset), check);
            }
        }

        BinaryPrimitives.WriteUInt16BigEndian(l4.Slice(portOffset), newPort);
    }

    private static void ManipTransport(
        Span<byte> l4,
        byte family,
        byte protocol,
        ReadOnlySpan<byte> oldAddress,
        ReadOnlySpan<byte> newAddress,
        in ConnTuple target,
        ManipType manip)
    {
        switch (protocol)
        {
            case IpProtocol.Tcp:
            case IpProtocol.Udp:
            case IpProtocol.UdpLite:
                RewritePort(l4, protocol, target, manip, Checksum.Difference(oldAddress, newAddress));
                return;

            case IpProtocol.Icmp:
            case IpProtocol.IcmpV6:
            {
                if (l4.Length < HeaderOffsets.IcmpHeader)
                {
                    return;
                }

                bool query = Icmp.ReplyType(protocol, l4[0]) >= 0;
                ushort check = BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(HeaderOffsets.IcmpChecksum));
                if (protocol == IpProtocol.IcmpV6)
                {
                    // ICMPv6 covers the pseudo-header, so an address change shows in its checksum.
                    check = Checksum.Update(check, oldAddress, newAddress);
                }

                if (query)
                {
                    ushort oldId = BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(4));
                    check = Checksum.Update(check, oldId, target.SourcePort);
                    BinaryPrimitives.WriteUInt16BigEndian(l4.Slice(4), target.SourcePort);
                }

                BinaryPrimitives.WriteUInt16BigEndian(l4.Slice(HeaderOffsets.IcmpChecksum), check);
                return;
            }

            case IpProtocol.Gre:
                // Enhanced GRE carries only its receiver's call ID, so only a destination manip has a key to write (the
                // kernel's gre_manip_pkt); plain GRE keeps its key, if any. PPTP's GRE has no checksum (RFC 2637), and
                // none covers the addresses: nothing else to fix.
                if (manip == ManipType.Destination && Conntrack.Gre.GreHeader.TryReadCallId(l4, out _))
                {
                    BinaryPrimitives.WriteUInt16BigEndian(l4.Slice(Conntrack.Gre.GreHeader.CallIdOffset), target.DestinationPort);
                }

                return;

            default:
                // Other protocols carry no ports and no pseudo-header checksum we could fix.
                return;
        }
    }

    /// <summary>
    /// Translates an ICMP error RELATED to a connection (the kernel's nf_nat_icmp_reply_translation):
    /// the quoted packet, which travelled the other way, gets the inverse manip; the ICMP checksum is
    /// recomputed; then the outer header gets this hook's manip.
    /// </summary>
    /// <returns>False when the error cannot be translated safely (the caller drops it).</returns>
    public static bool TranslateIcmpError(
        Span<byte> packet,
        in PacketInfo outer,
        in PacketInfo inner,
        int innerOffset,
        Connection connection,
        ConnDirection direction,
        ManipType manip)
    {
        var bit = manip == ManipType.Source ? ConnStatus.SrcNat : ConnStatus.DstNat;
        if (direction == ConnDirection.Reply)
        {
            bit = bit == ConnStatus.SrcNat ? ConnStatus.DstNat : ConnStatus.SrcNat;
        }

        byte type = packet[outer.L4Offset];
        if (outer.Family == 4 && type == Icmp.Redirect)
        {
            // A redirect only makes sense for a connection nobody translates.
            if ((connection.StatusBits & ConnStatus.NatMask) != 0)
            {
                return false;
            }
        }

        if ((connection.StatusBits & bit) == 0)
        {
            return true;
        }

        // The quoted packet travelled in the opposite direction: it gets the opposite manip, to the other direction's tuple itself.
        var innerTarget = connection.TupleOf(direction.Opposite());
        var innerManip = manip == ManipType.Source ? ManipType.Destination : ManipType.Source;
        int innerL4Available = inner.TotalLength - inner.L4Offset;
        ManipPacket(
            packet.Slice(innerOffset),
            0,
            inner.Family,
            inner.L4Offset,
            innerL4Available,
            inner.Protocol,
            inner.IsLaterFragment,
            innerTarget,
            innerManip);

        // The outer header, made to look like the reply to the packet it quotes.
        var outerTarget = connection.TupleOf(direction.Opposite()).Invert();
        ManipPacket(packet, 0, outer.Family, outer.L4Offset, outer.TotalLength - outer.L4Offset, outer.Protocol, false, outerTarget, manip);

        // The quoted bytes changed: recompute the ICMP checksum over the whole message.
        var icmp = packet.Slice(outer.L4Offset, outer.TotalLength - outer.L4Offset);
        icmp[HeaderOffsets.IcmpChecksum] = 0;
        icmp[HeaderOffsets.IcmpChecksum + 1] = 0;
        ulong sum = outer.Family == 6 ? PacketParser.PseudoHeader(packet, outer, icmp.Length) : 0;
        sum = Checksum.Add(sum, icmp);

        BinaryPrimitives.WriteUInt16BigEndian(icmp.Slice(HeaderOffsets.IcmpChecksum), Checksum.Finish(sum));
        return true;
    }
}
