using System.Buffers.Binary;

namespace Offload.Interop.Tests.Support;

/// <summary>Just enough IPv4/UDP to find a datagram's payload and fix its checksum after a change.</summary>
internal static class Ipv4Udp
{
    internal static int HeaderLength(ReadOnlySpan<byte> packet) => (packet[0] & 0x0F) * 4;

    internal static ushort DestinationPort(ReadOnlySpan<byte> packet) =>
        BinaryPrimitives.ReadUInt16BigEndian(packet[(HeaderLength(packet) + 2)..]);

    internal static Span<byte> UdpPayload(Span<byte> packet) => packet[(HeaderLength(packet) + 8)..];

    internal static ushort UdpChecksum(ReadOnlySpan<byte> packet) =>
        BinaryPrimitives.ReadUInt16BigEndian(packet[(HeaderLength(packet) + 6)..]);

    /// <summary>Recomputes the UDP checksum over the pseudo-header and the datagram (RFC 768).</summary>
    internal static void FixUdpChecksum(Span<byte> packet)
    {
        int ihl = HeaderLength(packet);
        Span<byte> udp = packet[ihl..];
        int udpLength = BinaryPrimitives.ReadUInt16BigEndian(udp[4..]);
        udp[6] = 0;
        udp[7] = 0;
        ulong sum = 0;
        sum += BinaryPrimitives.ReadUInt16BigEndian(packet[12..]) + (ulong)BinaryPrimitives.ReadUInt16BigEndian(packet[14..]);
        sum += BinaryPrimitives.ReadUInt16BigEndian(packet[16..]) + (ulong)BinaryPrimitives.ReadUInt16BigEndian(packet[18..]);
        sum += 17u + (ulong)udpLength;
        for (int i = 0; i + 1 < udpLength; i += 2)
        {
            sum += BinaryPrimitives.ReadUInt16BigEndian(udp[i..]);
        }

        if ((udpLength & 1) != 0)
        {
            sum += (ulong)udp[udpLength - 1] << 8;
        }

        while ((sum >> 16) != 0)
        {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }

        ushort checksum = (ushort)~sum;
        BinaryPrimitives.WriteUInt16BigEndian(udp[6..], checksum == 0 ? (ushort)0xFFFF : checksum);
    }
}
