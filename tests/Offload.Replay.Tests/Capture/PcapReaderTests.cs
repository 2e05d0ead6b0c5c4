using Offload.Replay.Capture;
using Xunit;

namespace Offload.Replay.Tests.Capture;

public sealed class PcapReaderTests
{
    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void ReadsBothByteOrdersAndResolutions(bool bigEndian, bool nanoseconds)
    {
        byte[] first = CaptureTestUtil.Bytes(60, 1);
        byte[] second = CaptureTestUtil.Bytes(3, 2);
        byte[] file = PcapBuilder.Build(bigEndian, nanoseconds, LinkLayer.Ethernet, 65535,
            new PcapRecord(1_763_800_000, 123_456, first, 60),
            new PcapRecord(4_294_967_295, nanoseconds ? 999_999_999u : 999_999u, second, 1514),
            new PcapRecord(0, 0, [], 0));

        using var reader = new CaptureReader(new MemoryStream(file));
        Assert.Equal(CaptureFileFormat.Pcap, reader.Format);
        CaptureInterface iface = Assert.Single(reader.Interfaces);
        Assert.Equal(0, iface.Id);
        Assert.Null(iface.Name);
        Assert.Equal(LinkLayer.Ethernet, iface.LinkType);
        Assert.Equal(65535u, iface.Snaplen);
        Assert.Equal(nanoseconds ? TimestampResolution.Nanoseconds : TimestampResolution.Microseconds, iface.TimestampResolution);

        List<ReadPacket> packets = CaptureTestUtil.ReadAll(reader);
        Assert.Equal(3, packets.Count);

        Assert.Equal(1_763_800_000_000_000_000 + (nanoseconds ? 123_456 : 123_456_000), packets[0].Timestamp);
        Assert.Equal(first, packets[0].Data);
        Assert.Equal(60u, packets[0].OriginalLength);

        Assert.Equal((4_294_967_295L * 1_000_000_000) + 999_999_999 - (nanoseconds ? 0 : 999), packets[1].Timestamp);
        Assert.Equal(second, packets[1].Data);
        Assert.Equal(1514u, packets[1].OriginalLength);

        Assert.Empty(packets[2].Data);
        Assert.All(packets, p =>
        {
            Assert.Equal(0, p.Interface);
            Assert.Equal(LinkLayer.Ethernet, p.LinkType);
            Assert.Equal(PacketDirection.Unknown, p.Direction);
        });
    }

    [Fact]
    public void LinkTypeIgnoresTheFcsBitsAboveIt()
    {
        // Bits 26-31 of the link-type field describe a frame check sequence, not the link type.
        byte[] file = PcapBuilder.Build(false, false, 0x9400_0000u | LinkLayer.LinuxSll, 0, new PcapRecord(1, 2, [9], 1));
        using var reader = new CaptureReader(new MemoryStream(file));
        Assert.True(reader.TryRead(out CapturedPacket packet));
        Assert.Equal(LinkLayer.LinuxSll, packet.LinkType);
        Assert.Equal(LinkLayer.LinuxSll, reader.Interfaces[0].LinkType);
    }

    [Fact]
    public void HeaderOnlyFileHasNoPackets()
    {
        byte[] file = PcapBuilder.Build(true, true, LinkLayer.Raw, 0);
        using var reader = new CaptureReader(new MemoryStream(file));
        Assert.False(reader.TryRead(out _));
        Assert.False(reader.TryRead(out _));
    }

    [Fact]
    public void DataIsValidUntilTheNextRead()
    {
        byte[] file = PcapBuilder.Build(false, false, LinkLayer.Raw, 0,
            new PcapRecord(1, 0, [1, 2, 3], 3), new PcapRecord(2, 0, [4, 5, 6], 3));
        using var reader = new CaptureReader(new MemoryStream(file));
        Assert.True(reader.TryRead(out CapturedPacket first));
        ReadOnlyMemory<byte> kept = first.Data;
        Assert.Equal(new byte[] { 1, 2, 3 }, kept.ToArray());
        Assert.True(reader.TryRead(out CapturedPacket second));
        // The documented contract: the earlier packet's bytes are overwritten by the next read.
        Assert.Equal(new byte[] { 4, 5, 6 }, kept.ToArray());
        Assert.Equal(new byte[] { 4, 5, 6 }, second.Data.ToArray());
    }

    [Fact]
    public void ReadsFromANonSeekableTrickle()
    {
        byte[] big = CaptureTestUtil.Bytes(70_000, 5);
        byte[] file = PcapBuilder.Build(false, true, LinkLayer.Raw, 0,
            new PcapRecord(1, 0, [1, 2, 3], 3), new PcapRecord(2, 0, big, 70_000));
        using var reader = new CaptureReader(new TrickleStream(file, 7));
        List<ReadPacket> packets = CaptureTestUtil.ReadAll(reader);
        Assert.Equal(2, packets.Count);
        Assert.Equal(big, packets[1].Data);
    }

    [Fact]
    public void DisposeClosesTheStreamUnlessToldOtherwise()
    {
        byte[] file = PcapBuilder.Build(false, false, LinkLayer.Raw, 0);
        var kept = new MemoryStream(file);
        new CaptureReader(kept, leaveOpen: true).Dispose();
        Assert.True(kept.CanRead);

        var closed = new MemoryStream(file);
        var reader = new CaptureReader(closed);
        reader.Dispose();
        Assert.False(closed.CanRead);
        Assert.Throws<ObjectDisposedException>(() => reader.TryRead(out _));
    }
}
