using Offload.Replay.Capture;
using Offload.Replay.Tests.Capture;
using Offload.Replay.Tests.Kernel;
using Offload.Rules;
using Xunit;

namespace Offload.Replay.Tests;

/// <summary>
/// A frame larger than any IP packet (a capture's snaplen allows 256 KiB) is dropped and counted as such, never cut
/// to fit and handed to the engine; a super-packet within the IP limit is replayed whole.
/// </summary>
public sealed class OversizeFrameTests
{
    private static readonly byte[] LanMac = [0x02, 0x00, 0xc0, 0x00, 0x02, 0x01];
    private static readonly byte[] ClientMac = [0x02, 0x00, 0xc0, 0x00, 0x02, 0x02];

    private static ReplayStatistics Replay(byte[] ip)
    {
        byte[] frame = [.. LanMac, .. ClientMac, 0x08, 0x00, .. ip];
        byte[] file = new PcapngBuilder().Section()
            .Interface(LinkLayer.Ethernet, 0, TestOption.Name("lan0"))
            .Interface(LinkLayer.Ethernet, 0, TestOption.Name("wan0"))
            .Enhanced(0, 1_000_000, frame)
            .ToArray();
        var session = ReplaySession.Create(ConfigLoader.LoadFile(Path.Combine(RepoPaths.Root, "tests", "data", "ftp", "lab.yaml")));
        session.Run(new MemoryStream(file), new MemoryStream());
        return session.Router.Statistics;
    }

    [Fact]
    public void AFrameLargerThanAnyIpPacketIsDroppedAndCounted()
    {
        byte[] ip = Wire.V4("192.0.2.2", "198.51.100.2", 17, Wire.Udp(40000, 5300, new byte[60000]));
        byte[] tooLong = [.. ip, .. new byte[70000 - ip.Length]];

        var s = Replay(tooLong);

        Assert.Equal(1, s.TooLong);
        Assert.Equal(1, s.Dropped);
        Assert.Equal(0, s.Forwarded);
    }

    [Fact]
    public void ASuperPacketWithinTheIpLimitIsReplayedWhole()
    {
        var s = Replay(Wire.V4("192.0.2.2", "198.51.100.2", 17, Wire.Udp(40000, 5300, new byte[60000])));

        Assert.Equal(0, s.TooLong);
        Assert.Equal(1, s.SuperPackets);
        Assert.Equal(1, s.Forwarded);
    }
}
