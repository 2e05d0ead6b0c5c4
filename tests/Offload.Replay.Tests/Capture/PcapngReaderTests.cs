using Offload.Replay.Capture;
using Xunit;

namespace Offload.Replay.Tests.Capture;

public sealed class PcapngReaderTests
{
    [Fact]
    public void TwoInterfacesWithDirections()
    {
        byte[] a = CaptureTestUtil.Bytes(54, 1);
        byte[] b = CaptureTestUtil.Bytes(41, 2);
        byte[] file = new PcapngBuilder()
            .Section()
            .Interface(LinkLayer.Ethernet, 262144, TestOption.Name("lan0"), TestOption.Tsresol(9))
            .Interface(LinkLayer.LinuxSll2, 0, TestOption.Name("wan0\0\0"), TestOption.Tsresol(9))
            .Enhanced(0, 1_000_000_001, a, 60, TestOption.Flags(1))
            // Reception type and FCS length bits above the direction must not disturb it.
            .Enhanced(1, 2_000_000_002, b, null, TestOption.Flags(2 | (3 << 2) | (4 << 5)))
            .Enhanced(1, 3_000_000_003, b)
            // Both direction bits set is not a defined direction.
            .Enhanced(0, 4_000_000_004, a, null, TestOption.Flags(3))
            .ToArray();

        using var reader = new CaptureReader(new MemoryStream(file));
        List<ReadPacket> packets = CaptureTestUtil.ReadAll(reader);

        Assert.Equal(["lan0", "wan0"], reader.Interfaces.Select(i => i.Name));
        Assert.Equal([LinkLayer.Ethernet, LinkLayer.LinuxSll2], reader.Interfaces.Select(i => i.LinkType));
        Assert.Equal([262144u, 0u], reader.Interfaces.Select(i => i.Snaplen));

        Assert.Equal([0, 1, 1, 0], packets.Select(p => p.Interface));
        Assert.Equal([LinkLayer.Ethernet, LinkLayer.LinuxSll2, LinkLayer.LinuxSll2, LinkLayer.Ethernet], packets.Select(p => p.LinkType));
        Assert.Equal(
            [PacketDirection.Inbound, PacketDirection.Outbound, PacketDirection.Unknown, PacketDirection.Unknown],
            packets.Select(p => p.Direction));
        Assert.Equal([1_000_000_001L, 2_000_000_002, 3_000_000_003, 4_000_000_004], packets.Select(p => p.Timestamp));
        Assert.Equal(a, packets[0].Data);
        Assert.Equal(60u, packets[0].OriginalLength);
        Assert.Equal(b, packets[1].Data);
        Assert.Equal(41u, packets[1].OriginalLength);
    }

    [Fact]
    public void BigEndianSection()
    {
        byte[] data = CaptureTestUtil.Bytes(33, 3);
        byte[] file = new PcapngBuilder()
            .Section(bigEndian: true)
            .Interface(LinkLayer.Raw, 1500, TestOption.Name("eth9"), TestOption.Tsresol(9), TestOption.U64(14, 10))
            .Enhanced(0, 0x0000_0012_3456_789A, data, 1400, TestOption.Flags(2))
            .ToArray();

        using var reader = new CaptureReader(new MemoryStream(file));
        Assert.True(reader.TryRead(out CapturedPacket packet));
        CaptureInterface iface = Assert.Single(reader.Interfaces);
        Assert.Equal("eth9", iface.Name);
        Assert.Equal(LinkLayer.Raw, iface.LinkType);
        Assert.Equal(1500u, iface.Snaplen);
        Assert.Equal(10, iface.TimestampOffsetSeconds);
        Assert.Equal(0x0000_0012_3456_789AL + 10_000_000_000, packet.TimestampNanoseconds);
        Assert.Equal(1400u, packet.OriginalLength);
        Assert.Equal(PacketDirection.Outbound, packet.Direction);
        Assert.Equal(data, packet.Data.ToArray());
        Assert.False(reader.TryRead(out _));
    }

    [Fact]
    public void SeveralSectionsOfEitherByteOrderNumberInterfacesAcrossTheFile()
    {
        byte[] file = new PcapngBuilder()
            .Section()
            .Interface(LinkLayer.Ethernet, 0, TestOption.Name("first"))
            .Enhanced(0, 1, [1])
            .Section(bigEndian: true)
            .Interface(LinkLayer.Raw, 0, TestOption.Name("second"))
            .Interface(LinkLayer.IPv6, 0, TestOption.Name("third"))
            .Enhanced(1, 2, [2])
            .Enhanced(0, 3, [3])
            .Section()
            .Interface(LinkLayer.Null, 0)
            .Enhanced(0, 4, [4])
            .ToArray();

        using var reader = new CaptureReader(new MemoryStream(file));
        List<ReadPacket> packets = CaptureTestUtil.ReadAll(reader);

        Assert.Equal([0, 1, 2, 3], reader.Interfaces.Select(i => i.Id));
        Assert.Equal(["first", "second", "third", null], reader.Interfaces.Select(i => i.Name));
        Assert.Equal([0, 2, 1, 3], packets.Select(p => p.Interface));
        Assert.Equal([LinkLayer.Ethernet, LinkLayer.IPv6, LinkLayer.Raw, LinkLayer.Null], packets.Select(p => p.LinkType));
        // Default resolution is microseconds.
        Assert.Equal([1_000L, 2_000, 3_000, 4_000], packets.Select(p => p.Timestamp));
        Assert.Equal([1, 2, 3, 4], packets.Select(p => (int)p.Data[0]));
    }

    [Fact]
    public void InterfaceIdsDoNotReachIntoAnEarlierSection()
    {
        byte[] file = new PcapngBuilder()
            .Section()
            .Interface(LinkLayer.Ethernet)
            .Interface(LinkLayer.Ethernet)
            .Section()
            .Interface(LinkLayer.Raw)
            .Enhanced(1, 0, [1])
            .ToArray();

        using var reader = new CaptureReader(new MemoryStream(file));
        var error = Assert.Throws<CaptureFormatException>(() => reader.TryRead(out _));
        Assert.Contains("interface 1", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, 3_500_000UL, 3_500_000_000L)]          // default: microseconds
    [InlineData((byte)3, 3_500UL, 3_500_000_000L)]           // milliseconds
    [InlineData((byte)0, 7UL, 7_000_000_000L)]               // seconds
    [InlineData((byte)12, 3_500_000_000_123UL, 3_500_000_000L)] // picoseconds, rounded down
    [InlineData((byte)0x94, 3_670_016UL, 3_500_000_000L)]   // 2^-20 s: 3.5 * 2^20 units
    [InlineData((byte)0x80, 5UL, 5_000_000_000L)]           // 2^0 s
    [InlineData((byte)0x9E, 1UL << 30, 1_000_000_000L)]     // 2^-30 s
    public void TimestampResolutions(byte? tsresol, ulong units, long nanoseconds)
    {
        TestOption[] options = tsresol is byte code ? [TestOption.Tsresol(code)] : [];
        byte[] file = new PcapngBuilder()
            .Section()
            .Interface(LinkLayer.Raw, 0, options)
            .Enhanced(0, units, [0x45])
            .ToArray();

        using var reader = new CaptureReader(new MemoryStream(file));
        Assert.True(reader.TryRead(out CapturedPacket packet));
        Assert.Equal(nanoseconds, packet.TimestampNanoseconds);
        Assert.Equal(tsresol ?? 6, reader.Interfaces[0].TimestampResolution.Code);
    }

    [Fact]
    public void BlocksOfOtherTypesAreSkipped()
    {
        byte[] file = new PcapngBuilder()
            .Section()
            .Block(0x0000_0BAD, CaptureTestUtil.Bytes(13, 9))      // custom block, odd length padded
            .Interface(LinkLayer.Raw)
            .Block(4, [0, 0, 0, 0])                                // name resolution, empty
            .Enhanced(0, 1, [1])
            .Block(5, new byte[12])                                // interface statistics
            .Block(0xDEAD_BEE0, [])                                // unknown, empty body
            .Block(2, CaptureTestUtil.Bytes(40, 1))                // obsolete packet block: not read
            .Enhanced(0, 2, [2])
            .Block(0x0000_000A, CaptureTestUtil.Bytes(100, 3))     // decryption secrets
            .ToArray();

        List<ReadPacket> packets = CaptureTestUtil.ReadAll(file);
        Assert.Equal([1L * 1000, 2L * 1000], packets.Select(p => p.Timestamp));
        Assert.Equal([1, 2], packets.Select(p => (int)p.Data[0]));
    }

    [Fact]
    public void SimplePacketBlocks()
    {
        byte[] data = CaptureTestUtil.Bytes(10, 4);
        byte[] file = new PcapngBuilder()
            .Section()
            .Interface(LinkLayer.Ethernet, 4)
            .Enhanced(0, 77, [1, 2])
            .Simple(10, data)                                          // cut to the snaplen
            .Simple(1514, data)                                        // original length beyond the snaplen and the data
            .Section(bigEndian: true)
            .Interface(LinkLayer.Raw, 0)
            .Simple(5, data)                                           // only 5 of the 10 (padded to 12) bytes are the packet
            .Simple(100, data)                                         // the block holds less than the packet: what is there (padding included)
            .ToArray();

        List<ReadPacket> packets = CaptureTestUtil.ReadAll(file);
        Assert.Equal(5, packets.Count);
        Assert.Equal(data[..4], packets[1].Data);
        Assert.Equal(10u, packets[1].OriginalLength);
        Assert.Equal(data[..4], packets[2].Data);
        Assert.Equal(1514u, packets[2].OriginalLength);
        Assert.Equal(data[..5], packets[3].Data);
        Assert.Equal(12, packets[4].Data.Length);
        Assert.Equal(100u, packets[4].OriginalLength);
        Assert.Equal([0, 0, 0, 1, 1], packets.Select(p => p.Interface));
        Assert.Equal([LinkLayer.Ethernet, LinkLayer.Ethernet, LinkLayer.Ethernet, LinkLayer.Raw, LinkLayer.Raw], packets.Select(p => p.LinkType));
        // No timestamp in the block: the previous packet's is repeated.
        Assert.All(packets, p => Assert.Equal(77_000L, p.Timestamp));
        Assert.All(packets.Skip(1), p => Assert.Equal(PacketDirection.Unknown, p.Direction));
    }

    [Fact]
    public void UnterminatedOptionListsAndUnknownOptionsAreAccepted()
    {
        var builder = new PcapngBuilder().Section();
        // An IDB whose options stop without opt_endofopt, with an unknown option in between.
        byte[] body =
        [
            1, 0, 0, 0, 0, 0, 0, 0,            // Ethernet, snaplen 0
            99, 0, 3, 0, 7, 7, 7, 0,           // option 99, 3 bytes
            2, 0, 2, 0, (byte)'e', (byte)'0', 0, 0,
        ];
        byte[] file = builder.Block(1, body).Enhanced(0, 1, [1]).ToArray();
        using var reader = new CaptureReader(new MemoryStream(file));
        Assert.True(reader.TryRead(out _));
        Assert.Equal("e0", reader.Interfaces[0].Name);
    }

    [Fact]
    public void ReadsFromANonSeekableTrickle()
    {
        byte[] big = CaptureTestUtil.Bytes(100_000, 6);
        byte[] file = new PcapngBuilder()
            .Section(bigEndian: true)
            .Interface(LinkLayer.Raw, 0, TestOption.Name("x"))
            .Enhanced(0, 1, [1, 2, 3])
            .Enhanced(0, 2, big)
            .Enhanced(0, 3, [4])
            .ToArray();

        using var reader = new CaptureReader(new TrickleStream(file, 5));
        List<ReadPacket> packets = CaptureTestUtil.ReadAll(reader);
        Assert.Equal(3, packets.Count);
        Assert.Equal(big, packets[1].Data);
        Assert.Equal([4], packets[2].Data);
    }

    [Fact]
    public void ReadingAllocatesNothingPerPacket()
    {
        var pcapng = new MemoryStream();
        using (var writer = new PcapngWriter(pcapng, leaveOpen: true))
        {
            writer.AddInterface("lan0", LinkLayer.Ethernet);
            for (int i = 0; i < 2000; i++)
            {
                writer.WritePacket(0, i, CaptureTestUtil.Bytes(100 + (i % 7), (byte)i), (PacketDirection)(i % 3));
            }
        }

        var records = Enumerable.Range(0, 2000).Select(i => new PcapRecord((uint)i, 0, CaptureTestUtil.Bytes(100, (byte)i), 100)).ToArray();
        byte[] pcap = PcapBuilder.Build(false, true, LinkLayer.Ethernet, 0, records);

        foreach (byte[] file in new[] { pcapng.ToArray(), pcap })
        {
            using var reader = new CaptureReader(new MemoryStream(file));
            Assert.True(reader.TryRead(out _));
            long before = GC.GetAllocatedBytesForCurrentThread();
            int count = 1;
            long sum = 0;
            while (reader.TryRead(out CapturedPacket packet))
            {
                count++;
                sum += packet.Data.Span[0];
            }

            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.Equal(2000, count);
            Assert.True(sum > 0);
            // Well under a byte per packet: nothing is allocated per packet.
            Assert.True(allocated < 1000, $"reading 1999 packets allocated {allocated} bytes");
        }
    }

    [Fact]
    public void SectionWithoutPacketsEndsCleanly()
    {
        byte[] file = new PcapngBuilder().Section().ToArray();
        using var reader = new CaptureReader(new MemoryStream(file));
        Assert.Equal(CaptureFileFormat.Pcapng, reader.Format);
        Assert.False(reader.TryRead(out _));
        Assert.Empty(reader.Interfaces);
    }
}
