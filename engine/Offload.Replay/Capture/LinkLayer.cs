using System.Buffers.Binary;

namespace Offload.Replay.Capture;

/// <summary>
/// Link-layer types found in captures (the <c>LINKTYPE_</c> values of pcap and pcapng, which are not always the
/// platform's <c>DLT_</c> values) and where their frames' network layer begins.
/// </summary>
public static class LinkLayer
{
    /// <summary>LINKTYPE_NULL: BSD loopback, a 4-byte address family in the capturing host's byte order.</summary>
    public const ushort Null = 0;

    /// <summary>LINKTYPE_ETHERNET: Ethernet II, possibly with 802.1Q / 802.1ad tags.</summary>
    public const ushort Ethernet = 1;

    /// <summary>LINKTYPE_RAW: a bare IPv4 or IPv6 packet; the version nibble tells which.</summary>
    public const ushort Raw = 101;

    /// <summary>LINKTYPE_LOOP: OpenBSD loopback, as <see cref="Null"/> but meant to be in network byte order.</summary>
    public const ushort Loop = 108;

    /// <summary>LINKTYPE_LINUX_SLL: Linux "cooked" capture, version 1 (16-byte header).</summary>
    public const ushort LinuxSll = 113;

    /// <summary>LINKTYPE_IPV4: a bare IPv4 packet.</summary>
    public const ushort IPv4 = 228;

    /// <summary>LINKTYPE_IPV6: a bare IPv6 packet.</summary>
    public const ushort IPv6 = 229;

    /// <summary>LINKTYPE_LINUX_SLL2: Linux "cooked" capture, version 2 (20-byte header, with the interface index).</summary>
    public const ushort LinuxSll2 = 276;

    /// <summary>The EtherType of IPv4.</summary>
    public const ushort EtherTypeIPv4 = 0x0800;

    /// <summary>The EtherType of IPv6.</summary>
    public const ushort EtherTypeIPv6 = 0x86DD;

    private const ushort EtherTypeVlan = 0x8100;      // 802.1Q customer tag
    private const ushort EtherTypeQinQ = 0x88A8;      // 802.1ad service tag
    private const ushort EtherTypeQinQOld = 0x9100;   // pre-standard stacked tag, still emitted by some switches
    private const ushort MinEtherType = 0x0600;       // below this the field is an 802.3 length, not a type
    private const int EthernetHeaderLength = 14;
    private const int VlanTagLength = 4;
    private const int SllHeaderLength = 16;
    private const int Sll2HeaderLength = 20;
    private const int NullHeaderLength = 4;
    private const ushort ArphrdNetlink = 824;         // SLL frames of nlmon carry netlink, whose protocol field is not an EtherType

    /// <summary>
    /// Finds where the network layer of a captured frame begins.
    /// </summary>
    /// <param name="linkType">The frame's <c>LINKTYPE_</c> value.</param>
    /// <param name="frame">The captured bytes, from the link-layer header on.</param>
    /// <param name="offset">Where the network-layer header starts in <paramref name="frame"/> (at most its length).</param>
    /// <param name="etherType">
    /// What the network layer is, as an EtherType. For Ethernet and Linux cooked captures it is the frame's own
    /// protocol field after any VLAN tags, so it may be something other than IP (ARP, say): callers compare it with
    /// <see cref="EtherTypeIPv4"/> and <see cref="EtherTypeIPv6"/>. For the other link types, which carry IP only,
    /// it is always one of those two.
    /// </param>
    /// <returns>
    /// False when the link type is not one of those listed here, when the frame is too short for its link-layer
    /// header, or when that header does not name a protocol (an 802.3 length field, an unknown address family,
    /// a bare packet whose version is neither 4 nor 6).
    /// </returns>
    public static bool TryGetNetworkLayer(ushort linkType, ReadOnlySpan<byte> frame, out int offset, out ushort etherType)
    {
        switch (linkType)
        {
            case Ethernet:
                if (frame.Length < EthernetHeaderLength)
                {
                    break;
                }

                return TrySkipVlanTags(frame, EthernetHeaderLength - 2, out offset, out etherType);

            case LinuxSll:
                // packet type (2), ARPHRD type (2), address length (2), address (8), protocol (2).
                if (frame.Length < SllHeaderLength || BinaryPrimitives.ReadUInt16BigEndian(frame.Slice(2)) == ArphrdNetlink)
                {
                    break;
                }

                return TrySkipVlanTags(frame, SllHeaderLength - 2, out offset, out etherType);

            case LinuxSll2:
                // protocol (2), reserved (2), interface index (4), ARPHRD type (2), packet type (1), address length (1), address (8).
                if (frame.Length < Sll2HeaderLength || BinaryPrimitives.ReadUInt16BigEndian(frame.Slice(8)) == ArphrdNetlink)
                {
                    break;
                }

                etherType = BinaryPrimitives.ReadUInt16BigEndian(frame);
                if (etherType is EtherTypeVlan or EtherTypeQinQ or EtherTypeQinQOld)
                {
                    // The tag sits where the payload begins; its own protocol field is its last 2 bytes.
                    if (frame.Length < Sll2HeaderLength + VlanTagLength)
                    {
                        break;
                    }

                    return TrySkipVlanTags(frame, Sll2HeaderLength + 2, out offset, out etherType);
                }

                if (etherType < MinEtherType)
                {
                    break;
                }

                offset = Sll2HeaderLength;
                return true;

            case Null:
            case Loop:
                if (frame.Length < NullHeaderLength)
                {
                    break;
                }

                // The family is in the byte order of whichever host wrote it (and LOOP files are not always in network
                // order in practice). Every family value is small, so a value with its low half empty is byte-swapped.
                uint family = BinaryPrimitives.ReadUInt32LittleEndian(frame);
                if ((family & 0xFFFF) == 0)
                {
                    family = BinaryPrimitives.ReverseEndianness(family);
                }

                etherType = family switch
                {
                    2 => EtherTypeIPv4,                 // AF_INET everywhere
                    10 or 24 or 28 or 30 => EtherTypeIPv6, // AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, Darwin
                    _ => 0,
                };
                if (etherType == 0)
                {
                    break;
                }

                offset = NullHeaderLength;
                return true;

            case Raw:
            case IPv4:
            case IPv6:
                if (frame.IsEmpty)
                {
                    break;
                }

                int version = frame[0] >> 4;
                etherType = version switch
                {
                    4 when linkType != IPv6 => EtherTypeIPv4,
                    6 when linkType != IPv4 => EtherTypeIPv6,
                    _ => 0,
                };
                if (etherType == 0)
                {
                    break;
                }

                offset = 0;
                return true;
        }

        offset = 0;
        etherType = 0;
        return false;
    }

    // typeOffset points at a 2-byte protocol field; each VLAN tag after it holds the next protocol field in its last 2 bytes.
    private static bool TrySkipVlanTags(ReadOnlySpan<byte> frame, int typeOffset, out int offset, out ushort etherType)
    {
        etherType = BinaryPrimitives.ReadUInt16BigEndian(frame.Slice(typeOffset));
        offset = typeOffset + 2;
        while (etherType is EtherTypeVlan or EtherTypeQinQ or EtherTypeQinQOld)
        {
            if (frame.Length < offset + VlanTagLength)
            {
                offset = 0;
                etherType = 0;
                return false;
            }

            etherType = BinaryPrimitives.ReadUInt16BigEndian(frame.Slice(offset + 2));
            offset += VlanTagLength;
        }

        if (etherType < MinEtherType)
        {
            offset = 0;
            etherType = 0;
            return false;
        }

        return true;
    }
}
