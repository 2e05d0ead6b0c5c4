using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Offload.Engine.Conntrack;
using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Offload.Engine.Tests.Packets;
using Offload.TestSupport;
using Xunit;

namespace Offload.Engine.Tests.Nat;

/// <summary>
/// The NAT manip of an IPv4 TCP or UDP segment works on numbers (32-bit address, 16-bit port, incremental updates by
/// their differences): checked against whole recomputation, and against the same update made word by word over the
/// changed bytes (the engine's general path, which every other packet takes and the replays of kernel captures match).
/// </summary>
public sealed class NatManipChecksumTests
{
    [Fact]
    public void An_IPv4_segment_translated_keeps_valid_checksums_equal_to_the_bytewise_update()
    {
        Check.One(Deterministic.Runs(4000, 1624), Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var r = new System.Random(seed);
            byte protocol = r.Next(3) switch { 0 => IpProtocol.Tcp, 1 => IpProtocol.Udp, _ => IpProtocol.UdpLite };
            var payload = new byte[r.Next(0, 64)];
            r.NextBytes(payload);
            var l4 = protocol == IpProtocol.Tcp
                ? Wire.Tcp((ushort)r.Next(65536), (ushort)r.Next(65536), (uint)r.Next(), (uint)r.Next(), 0x18, payload: payload)
                : Wire.Udp((ushort)r.Next(65536), (ushort)r.Next(65536), payload);
            var packet = Wire.V4(RandomAddress(r), RandomAddress(r), protocol == IpProtocol.UdpLite ? IpProtocol.Udp : protocol, l4);
            packet[9] = protocol; // UDP-Lite: the UDP checksum field at the same place, covering the whole datagram here
            FixChecksums(packet, protocol);
            bool noUdpChecksum = protocol == IpProtocol.Udp && r.Next(4) == 0;
            if (noUdpChecksum)
            {
                packet[26] = packet[27] = 0;
            }

            var manip = r.Next(2) == 0 ? ManipType.Source : ManipType.Destination;
            var target = new ConnTuple(4, protocol, InetAddress.FromIPv4((uint)r.Next()), (ushort)r.Next(65536), InetAddress.FromIPv4((uint)r.Next()), (ushort)r.Next(65536));
            var expected = BytewiseManip(packet, protocol, target, manip);

            NatManip.ManipPacket(packet, 0, 4, 20, packet.Length - 20, protocol, laterFragment: false, target, manip);

            string hex = Convert.ToHexString(packet);
            Assert.True(expected.AsSpan().SequenceEqual(packet), $"{hex} against {Convert.ToHexString(expected)}");
            Assert.True(PacketParser.IPv4HeaderChecksumIsValid(packet), hex);
            if (noUdpChecksum)
            {
                Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(26)));
            }
            else
            {
                Assert.True(PacketParser.TransportChecksumIsValid(packet, PacketParser.Parse(packet)), hex);
            }

            int addressOffset = manip == ManipType.Source ? 12 : 16;
            Assert.Equal(manip == ManipType.Source ? target.Source.IPv4Value : target.Destination.IPv4Value, BinaryPrimitives.ReadUInt32BigEndian(packet.AsSpan(addressOffset)));
            Assert.Equal(manip == ManipType.Source ? target.SourcePort : target.DestinationPort, BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(manip == ManipType.Source ? 20 : 22)));
        }));
    }

    [Fact]
    public void Inside_an_ICMP_error_only_the_quoted_eight_bytes_change()
    {
        // A quoted UDP header of 8 bytes: ports and checksum are there; a quoted TCP header of 8: ports only.
        var l4 = Wire.Tcp(40000, 80, 1, 2, 0x10);
        var packet = Wire.V4("192.0.2.2", "198.51.100.2", IpProtocol.Tcp, l4).AsSpan(0, 28).ToArray();
        var before = (byte[])packet.Clone();
        var target = new ConnTuple(4, IpProtocol.Tcp, InetAddress.FromIPv4(0xCB00_7101), 61000, default, 0);
        NatManip.ManipPacket(packet, 0, 4, 20, 8, IpProtocol.Tcp, laterFragment: false, target, ManipType.Source);
        Assert.Equal(0xCB00_7101u, BinaryPrimitives.ReadUInt32BigEndian(packet.AsSpan(12)));
        Assert.Equal(61000, BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(20)));
        Assert.True(before.AsSpan(22, 6).SequenceEqual(packet.AsSpan(22, 6))); // destination port, sequence number
        Assert.True(PacketParser.IPv4HeaderChecksumIsValid(packet));
    }

    private static string RandomAddress(System.Random r) => $"{r.Next(1, 224)}.{r.Next(256)}.{r.Next(256)}.{r.Next(1, 255)}";

    private static void FixChecksums(byte[] packet, byte protocol)
    {
        int checksumOffset = 20 + (protocol == IpProtocol.Tcp ? HeaderOffsets.TcpChecksum : HeaderOffsets.UdpChecksum);
        packet[checksumOffset] = packet[checksumOffset + 1] = 0;
        uint pseudo = RefChecksum.Pseudo(packet.AsSpan(12, 4), packet.AsSpan(16, 4), protocol, packet.Length - 20);
        ushort check = RefChecksum.Field(packet.AsSpan(20), pseudo);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(checksumOffset), protocol != IpProtocol.Tcp && check == 0 ? (ushort)0xFFFF : check);
        packet[10] = packet[11] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), RefChecksum.Field(packet.AsSpan(0, 20)));
    }

    /// <summary>The general path's update: the changed bytes summed word by word (<see cref="Checksum.Update(ushort, ReadOnlySpan{byte}, ReadOnlySpan{byte})"/>).</summary>
    private static byte[] BytewiseManip(byte[] original, byte protocol, in ConnTuple target, ManipType manip)
    {
        var packet = (byte[])original.Clone();
        int addressOffset = manip == ManipType.Source ? 12 : 16;
        var newAddress = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(newAddress, manip == ManipType.Source ? target.Source.IPv4Value : target.Destination.IPv4Value);
        var oldAddress = packet.AsSpan(addressOffset, 4).ToArray();
        int portOffset = 20 + (manip == ManipType.Source ? 0 : 2);
        ushort oldPort = BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(portOffset));
        ushort newPort = manip == ManipType.Source ? target.SourcePort : target.DestinationPort;
        int checksumOffset = 20 + (protocol == IpProtocol.Tcp ? HeaderOffsets.TcpChecksum : HeaderOffsets.UdpChecksum);
        ushort check = BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(checksumOffset));
        if (protocol != IpProtocol.Udp || check != 0)
        {
            check = Checksum.Update(check, oldAddress, newAddress);
            check = Checksum.Update(check, oldPort, newPort);
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(checksumOffset), protocol != IpProtocol.Tcp && check == 0 ? (ushort)0xFFFF : check);
        }

        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(portOffset), newPort);
        newAddress.CopyTo(packet, addressOffset);
        Checksum.UpdateField(packet, 10, oldAddress, newAddress);
        return packet;
    }
}
