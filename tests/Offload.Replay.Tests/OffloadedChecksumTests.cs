using System.Buffers.Binary;
using Offload.Engine.Packets;
using Xunit;

namespace Offload.Replay.Tests;

/// <summary>
/// The kernel's CHECKSUM_PARTIAL as a capture shows it: a TCP or UDP checksum field holding only the pseudo-header sum
/// (addresses, protocol, upper-layer length), which the sending host's device was to finish. Such a packet is
/// recognised, finished like the device would, and told apart from corruption.
/// </summary>
public sealed class OffloadedChecksumTests
{
    /// <summary>The packet with its transport checksum field set as the kernel leaves it for the device.</summary>
    internal static byte[] Partial(byte[] packet)
    {
        var info = PacketParser.Parse(packet);
        int field = info.L4Offset + (info.Protocol == IpProtocol.Tcp ? 16 : 6);
        int length = info.Protocol == IpProtocol.Tcp ? info.L4Length : BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(info.L4Offset + 4));
        uint pseudo = info.Family == 4
            ? RefChecksum.Pseudo(packet.AsSpan(12, 4), packet.AsSpan(16, 4), info.Protocol, length)
            : RefChecksum.Pseudo(packet.AsSpan(8, 16), packet.AsSpan(24, 16), info.Protocol, length);
        byte[] partial = (byte[])packet.Clone();
        BinaryPrimitives.WriteUInt16BigEndian(partial.AsSpan(field), (ushort)pseudo);
        return partial;
    }

    public static TheoryData<string, byte[]> Packets() => new()
    {
        { "tcp4", Wire.V4("192.0.2.2", "198.51.100.2", 6, Wire.Tcp(40000, 21, 1000, 2000, Wire.Ack, payload: Bytes(300))) },
        { "tcp6", Wire.V6("2001:db8:1::2", "2001:db8:2::2", 6, Wire.Tcp(40000, 21, 1000, 2000, Wire.Ack, payload: Bytes(301))) },
        { "udp4", Wire.V4("192.0.2.2", "198.51.100.2", 17, Wire.Udp(40000, 5300, Bytes(99))) },
        { "udp6", Wire.V6("2001:db8:1::2", "2001:db8:2::2", 17, Wire.Udp(40000, 5300, Bytes(100))) },
        { "tcp4 super-packet", Wire.V4("192.0.2.2", "198.51.100.2", 6, Wire.Tcp(40000, 21, 1000, 2000, Wire.Ack, payload: Bytes(9000))) },
    };

    private static byte[] Bytes(int length) => [.. Enumerable.Range(0, length).Select(i => (byte)(i * 31 + 7))];

    [Theory]
    [MemberData(nameof(Packets))]
    public void APseudoHeaderSumIsPartialAndFinishesToTheRightChecksum(string name, byte[] packet)
    {
        byte[] partial = Partial(packet);
        var info = PacketParser.Parse(partial);

        Assert.True(OffloadedChecksum.IsPartial(partial, info), name);
        OffloadedChecksum.Complete(partial, info);
        Assert.Equal(packet, partial); // exactly the checksum computed the slow way
    }

    [Theory]
    [MemberData(nameof(Packets))]
    public void AValidChecksumIsNotPartial(string name, byte[] packet) =>
        Assert.False(OffloadedChecksum.IsPartial(packet, PacketParser.Parse(packet)), name);

    [Theory]
    [MemberData(nameof(Packets))]
    public void APartialChecksumOverCorruptedAddressesOrLengthIsCorruption(string name, byte[] packet)
    {
        // A flipped address bit changes the pseudo-header the field should hold: no longer the device's sum.
        byte[] partial = Partial(packet);
        var info = PacketParser.Parse(partial);
        partial[info.DestinationAddressOffset + 1] ^= 0x10;
        if (info.Family == 4)
        {
            Wire.FixIPv4HeaderChecksum(partial);
        }

        Assert.False(OffloadedChecksum.IsPartial(partial, PacketParser.Parse(partial)), name);
    }

    [Theory]
    [MemberData(nameof(Packets))]
    public void AValidChecksumOverACorruptedPayloadIsNeitherValidNorPartial(string name, byte[] packet)
    {
        byte[] corrupt = (byte[])packet.Clone();
        corrupt[^1] ^= 0x01;
        var info = PacketParser.Parse(corrupt);

        Assert.False(PacketParser.TransportChecksumIsValid(corrupt, info), name);
        Assert.False(OffloadedChecksum.IsPartial(corrupt, info), name);
    }

    [Fact]
    public void AZeroUdpChecksumMeansNoneNotPartial()
    {
        byte[] packet = Wire.V4("192.0.2.2", "198.51.100.2", 17, Wire.Udp(40000, 5300, Bytes(20)), fixTransport: false);
        Assert.False(OffloadedChecksum.IsPartial(packet, PacketParser.Parse(packet)));
    }

    [Fact]
    public void IcmpIsNeverLeftToTheDevice()
    {
        byte[] packet = Wire.V4("192.0.2.2", "198.51.100.2", 1, Wire.IcmpQuery(8, 7, payload: Bytes(20)));
        packet[^1] ^= 0x01;
        Assert.False(OffloadedChecksum.IsPartial(packet, PacketParser.Parse(packet)));
    }
}
