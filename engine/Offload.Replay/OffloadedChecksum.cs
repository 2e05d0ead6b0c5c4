using System.Buffers.Binary;
using Offload.Engine.Packets;

namespace Offload.Replay;

/// <summary>
/// Transport checksums as a capture shows them when the sending host offloaded them to its device: the kernel's
/// CHECKSUM_PARTIAL, where the TCP or UDP checksum field holds only the pseudo-header sum, for the device to finish.
/// A capture taken on the way out of a host (and a router's forwarded super-packets) shows them so; the live queue
/// is told by NFQA_SKB_INFO's CSUMNOTREADY, a capture says nothing, so the field itself is the sign.
/// </summary>
public static class OffloadedChecksum
{
    /// <summary>
    /// True when the packet's TCP or UDP checksum is not valid but holds exactly the pseudo-header sum the kernel puts
    /// there for the device (its length included). Anything else that does not verify is corruption.
    /// </summary>
    public static bool IsPartial(ReadOnlySpan<byte> packet, in PacketInfo info)
    {
        if (!info.HasTransportHeader || info.IsFragment || info.Protocol is not (IpProtocol.Tcp or IpProtocol.Udp))
        {
            return false;
        }

        var l4 = packet.Slice(info.L4Offset, info.L4Length);
        int length = l4.Length;
        int offset = HeaderOffsets.TcpChecksum;
        if (info.Protocol == IpProtocol.Udp)
        {
            length = BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(HeaderOffsets.UdpLength));
            offset = HeaderOffsets.UdpChecksum;
        }

        ushort field = BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(offset));
        return field != 0
            && field == Checksum.Fold(PacketParser.PseudoHeader(packet, info, length))
            && !PacketParser.TransportChecksumIsValid(packet, info);
    }

    /// <summary>
    /// Computes the TCP or UDP checksum from scratch, as the device finishes an offloaded one (a UDP sum of 0 is sent
    /// as 0xFFFF, 0 meaning none). Other protocols are left alone.
    /// </summary>
    public static void Complete(Span<byte> packet, in PacketInfo info)
    {
        if (!info.HasTransportHeader || info.IsFragment || info.Protocol is not (IpProtocol.Tcp or IpProtocol.Udp))
        {
            return;
        }

        var l4 = packet.Slice(info.L4Offset, info.L4Length);
        int offset = HeaderOffsets.TcpChecksum;
        if (info.Protocol == IpProtocol.Udp)
        {
            l4 = l4.Slice(0, BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(HeaderOffsets.UdpLength)));
            offset = HeaderOffsets.UdpChecksum;
        }

        l4[offset] = 0;
        l4[offset + 1] = 0;
        ushort check = Checksum.Finish(Checksum.Add(PacketParser.PseudoHeader(packet, info, l4.Length), l4));
        if (info.Protocol == IpProtocol.Udp && check == 0)
        {
            check = 0xFFFF;
        }

        BinaryPrimitives.WriteUInt16BigEndian(l4.Slice(offset), check);
    }
}
