using Offload.Replay.Capture;
using Xunit;

namespace Offload.Replay.Tests.Capture;

public sealed class LinkLayerTests
{
    private static readonly byte[] Ipv4Start = [0x45, 0x00, 0x00, 0x14];
    private static readonly byte[] Ipv6Start = [0x60, 0x00, 0x00, 0x00];
    private static readonly byte[] Macs = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];

    [Fact]
    public void LinkTypeValuesAreThoseOfTheRegistry()
    {
        Assert.Equal(0, LinkLayer.Null);
        Assert.Equal(1, LinkLayer.Ethernet);
        Assert.Equal(101, LinkLayer.Raw);
        Assert.Equal(108, LinkLayer.Loop);
        Assert.Equal(113, LinkLayer.LinuxSll);
        Assert.Equal(228, LinkLayer.IPv4);
        Assert.Equal(229, LinkLayer.IPv6);
        Assert.Equal(276, LinkLayer.LinuxSll2);
    }

    [Fact]
    public void Ethernet()
    {
        AssertFound(LinkLayer.Ethernet, [.. Macs, 0x08, 0x00, .. Ipv4Start], 14, LinkLayer.EtherTypeIPv4);
        AssertFound(LinkLayer.Ethernet, [.. Macs, 0x86, 0xDD, .. Ipv6Start], 14, LinkLayer.EtherTypeIPv6);
        // Headers alone, no payload: the offset is the frame's end.
        AssertFound(LinkLayer.Ethernet, [.. Macs, 0x08, 0x00], 14, LinkLayer.EtherTypeIPv4);
        // Other protocols are reported, for the caller to skip.
        AssertFound(LinkLayer.Ethernet, [.. Macs, 0x08, 0x06, 0, 1], 14, 0x0806);
        // 802.3 length field (LLC follows), and a frame shorter than the header.
        AssertNotFound(LinkLayer.Ethernet, [.. Macs, 0x00, 0x2E, 0xAA, 0xAA]);
        AssertNotFound(LinkLayer.Ethernet, [.. Macs, 0x08]);
        AssertNotFound(LinkLayer.Ethernet, []);
    }

    [Fact]
    public void EthernetVlanTags()
    {
        // 802.1Q, then 802.1ad over 802.1Q, then the old 0x9100 stacking.
        AssertFound(LinkLayer.Ethernet, [.. Macs, 0x81, 0x00, 0x00, 0x64, 0x08, 0x00, .. Ipv4Start], 18, LinkLayer.EtherTypeIPv4);
        AssertFound(LinkLayer.Ethernet, [.. Macs, 0x88, 0xA8, 0x00, 0x0A, 0x81, 0x00, 0x00, 0x64, 0x86, 0xDD, .. Ipv6Start], 22, LinkLayer.EtherTypeIPv6);
        AssertFound(LinkLayer.Ethernet, [.. Macs, 0x91, 0x00, 0x00, 0x0A, 0x81, 0x00, 0x00, 0x64, 0x08, 0x00], 22, LinkLayer.EtherTypeIPv4);
        // A tag cut short.
        AssertNotFound(LinkLayer.Ethernet, [.. Macs, 0x81, 0x00, 0x00, 0x64, 0x08]);
        AssertNotFound(LinkLayer.Ethernet, [.. Macs, 0x81, 0x00]);
    }

    [Fact]
    public void LinuxCooked()
    {
        // SLL: packet type 0 (to us), ARPHRD_ETHER, 6-byte address padded to 8, protocol.
        byte[] sll = [0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
        AssertFound(LinkLayer.LinuxSll, [.. sll, 0x08, 0x00, .. Ipv4Start], 16, LinkLayer.EtherTypeIPv4);
        AssertFound(LinkLayer.LinuxSll, [.. sll, 0x86, 0xDD, .. Ipv6Start], 16, LinkLayer.EtherTypeIPv6);
        AssertFound(LinkLayer.LinuxSll, [.. sll, 0x81, 0x00, 0x00, 0x05, 0x08, 0x00, .. Ipv4Start], 20, LinkLayer.EtherTypeIPv4);
        AssertNotFound(LinkLayer.LinuxSll, [.. sll, 0x00, 0x04, 0x42]);           // 802.2 LLC pseudo-protocol
        AssertNotFound(LinkLayer.LinuxSll, [0, 4, 0x03, 0x38, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x10]);   // nlmon: netlink
        AssertNotFound(LinkLayer.LinuxSll, sll);

        // SLL2: protocol, reserved, ifindex, ARPHRD_ETHER, packet type 4 (outgoing), address length, address.
        byte[] sll2Tail = [0, 0, 0, 0, 0, 3, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0];
        AssertFound(LinkLayer.LinuxSll2, [0x08, 0x00, .. sll2Tail, .. Ipv4Start], 20, LinkLayer.EtherTypeIPv4);
        AssertFound(LinkLayer.LinuxSll2, [0x86, 0xDD, .. sll2Tail, .. Ipv6Start], 20, LinkLayer.EtherTypeIPv6);
        AssertFound(LinkLayer.LinuxSll2, [0x81, 0x00, .. sll2Tail, 0x00, 0x05, 0x86, 0xDD, .. Ipv6Start], 24, LinkLayer.EtherTypeIPv6);
        AssertNotFound(LinkLayer.LinuxSll2, [0x81, 0x00, .. sll2Tail, 0x00, 0x05]);
        AssertNotFound(LinkLayer.LinuxSll2, [0x08, 0x00, .. sll2Tail[..^1]]);
        AssertNotFound(LinkLayer.LinuxSll2, [0x00, 0x03, .. sll2Tail]);
    }

    [Fact]
    public void NullAndLoopInEitherByteOrder()
    {
        foreach (ushort linkType in new[] { LinkLayer.Null, LinkLayer.Loop })
        {
            AssertFound(linkType, [2, 0, 0, 0, .. Ipv4Start], 4, LinkLayer.EtherTypeIPv4);
            AssertFound(linkType, [0, 0, 0, 2, .. Ipv4Start], 4, LinkLayer.EtherTypeIPv4);
            foreach (byte family in new byte[] { 10, 24, 28, 30 })
            {
                AssertFound(linkType, [family, 0, 0, 0, .. Ipv6Start], 4, LinkLayer.EtherTypeIPv6);
                AssertFound(linkType, [0, 0, 0, family, .. Ipv6Start], 4, LinkLayer.EtherTypeIPv6);
            }

            AssertNotFound(linkType, [7, 0, 0, 0, .. Ipv4Start]);
            AssertNotFound(linkType, [2, 0, 0]);
        }
    }

    [Fact]
    public void BareIp()
    {
        AssertFound(LinkLayer.Raw, Ipv4Start, 0, LinkLayer.EtherTypeIPv4);
        AssertFound(LinkLayer.Raw, Ipv6Start, 0, LinkLayer.EtherTypeIPv6);
        AssertNotFound(LinkLayer.Raw, [0x55, 0, 0, 0]);
        AssertNotFound(LinkLayer.Raw, []);

        AssertFound(LinkLayer.IPv4, Ipv4Start, 0, LinkLayer.EtherTypeIPv4);
        AssertNotFound(LinkLayer.IPv4, Ipv6Start);
        AssertFound(LinkLayer.IPv6, Ipv6Start, 0, LinkLayer.EtherTypeIPv6);
        AssertNotFound(LinkLayer.IPv6, Ipv4Start);
    }

    [Fact]
    public void UnknownLinkType() => AssertNotFound(147, [.. Macs, 0x08, 0x00, .. Ipv4Start]);

    private static void AssertFound(ushort linkType, byte[] frame, int offset, ushort etherType)
    {
        Assert.True(LinkLayer.TryGetNetworkLayer(linkType, frame, out int foundOffset, out ushort foundType));
        Assert.Equal(offset, foundOffset);
        Assert.Equal(etherType, foundType);
    }

    private static void AssertNotFound(ushort linkType, byte[] frame)
    {
        Assert.False(LinkLayer.TryGetNetworkLayer(linkType, frame, out int offset, out ushort etherType));
        Assert.Equal(0, offset);
        Assert.Equal(0, etherType);
    }
}
