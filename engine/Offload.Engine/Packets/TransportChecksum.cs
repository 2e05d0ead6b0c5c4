using System.Buffers.Binary;

namespace Offload.Engine.Packets;

/// <summary>
/// Computes a TCP or UDP checksum over the whole segment, for the two cases where an incremental update cannot do:
/// a checksum the device was to finish (the queue's CSUMNOTREADY), and a payload a helper rewrote.
/// </summary>
internal static class TransportChecksum
{
    /// <summary>Finishes an offloaded checksum that holds only the pseudo-header sum.</summary>
    public static void Complete(Span<byte> packet, in PacketInfo info)
    {
        if (info.IsFragment)
        {
            return;
        }

        switch (info.Protocol)
        {
            case IpProtocol.Tcp:
                Recompute(packet, info, HeaderOffsets.TcpChecksum, zeroMeansNone: false);
                break;
            case IpProtocol.Udp:
                Recompute(packet, info, HeaderOffsets.UdpChecksum, zeroMeansNone: true);
                break;
        }
    }

    /// <summary>
    /// Writes the checksum of the segment as it stands. For UDP a computed 0 is sent as 0xFFFF, since 0 means
    /// "no checksum" (RFC 768).
    /// </summary>
    public static void Recompute(Span<byte> packet, in PacketInfo info, int checksumOffset, bool zeroMeansNone)
    {
        var l4 = packet.Slice(info.L4Offset, info.TotalLength - info.L4Offset);
        l4[checksumOffset] = 0;
        l4[checksumOffset + 1] = 0;
        ushort check = Checksum.Finish(Checksum.Add(PacketParser.PseudoHeader(packet, info, l4.Length), l4));
        if (zeroMeansNone && check == 0)
        {
            check = 0xFFFF;
        }

        BinaryPrimitives.WriteUInt16BigEndian(l4.Slice(checksumOffset), check);
    }
}
