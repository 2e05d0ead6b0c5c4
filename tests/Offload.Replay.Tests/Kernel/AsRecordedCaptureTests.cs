using Offload.Engine;
using Offload.Engine.Packets;
using Offload.Replay.Capture;
using Offload.Replay.Compare;
using Offload.Rules;
using Xunit;

namespace Offload.Replay.Tests.Kernel;

/// <summary>
/// Captures recorded as users record their routers (tests/data/as-recorded, see its README): one dumpcap on both
/// interfaces, veth offloads on. Their files are out of time order across interfaces, the packets leaving a host
/// carry checksums left to the device (the kernel's CHECKSUM_PARTIAL), and TSO makes segments larger than the MTU.
/// The replay takes them as they are (<see cref="KernelCaptureTests"/> checks them against the kernel); here, that they
/// really are so, and that real corruption is still told apart and counted.
/// </summary>
public sealed class AsRecordedCaptureTests
{
    private const string Ftp = RepoPaths.AsRecorded + "/ftp";

    private static string PathOf(string name) => Path.Combine(RepoPaths.Root, "tests", "data", Ftp, name + ".pcapng");

    private static OffloadConfig Config => ConfigLoader.LoadFile(RepoPaths.LabConfigOf(Ftp));

    public static TheoryData<string> Files()
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.GetFiles(Path.Combine(RepoPaths.Root, "tests", "data", RepoPaths.AsRecorded), "*.pcapng", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetRelativePath(Path.Combine(RepoPaths.Root, "tests", "data"), file));
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void TheFileIsOutOfTimeOrderAcrossInterfacesAndInOrderWithinEach(string file)
    {
        // What capinfos -o reports as "Strict time order: False", and why a file-order replay loses flows.
        using var reader = new CaptureReader(File.OpenRead(Path.Combine(RepoPaths.Root, "tests", "data", file)));
        long previous = long.MinValue;
        var last = new Dictionary<int, long>();
        int backwards = 0;
        while (reader.TryRead(out var frame))
        {
            backwards += frame.TimestampNanoseconds < previous ? 1 : 0;
            previous = frame.TimestampNanoseconds;
            Assert.True(frame.TimestampNanoseconds >= last.GetValueOrDefault(frame.InterfaceId, long.MinValue), $"{file}: interface {frame.InterfaceId} steps back");
            last[frame.InterfaceId] = frame.TimestampNanoseconds;
        }

        Assert.True(backwards > 0, $"{file} is in time order: it shows nothing of dumpcap's batches");
    }

    [Fact]
    public void TheReplayPutsFramesBackInOrderAndTakesTheOffloadedChecksumsAndTheSuperPacket()
    {
        var session = ReplaySession.Create(Config);
        var sent = new List<SentPacket>();
        using (var input = File.OpenRead(PathOf("ipv4-eprt")))
        {
            session.Run(input, null, sent);
        }

        var s = session.Router.Statistics;
        Assert.True(s.Reordered > 0, "frames put back in time order");
        Assert.Equal(s.Forwarded, s.ChecksumsPartial); // every TCP segment the lab's hosts sent left its checksum to the device
        Assert.True(s.SuperPackets >= 1, "a TSO segment above the MTU");
        Assert.Equal(0, session.Engine[EngineCounter.MalformedBadChecksum]);
        Assert.Equal(0, session.Engine[EngineCounter.PacketsDropped]);

        // Every packet leaves with checksums a receiver verifies, the super-packet too (checked the slow way).
        Assert.Contains(sent, p => p.Packet.Length > 1500);
        foreach (var packet in sent.Select(p => p.Packet))
        {
            var info = PacketParser.Parse(packet);
            Assert.True(Wire.TransportVerifies(packet, info.Family, info.L4Offset, info.L4Length, info.Protocol));
        }
    }

    [Fact]
    public void SortingTheFileFirstChangesNothing()
    {
        byte[] recorded = File.ReadAllBytes(PathOf("ipv4-eprt"));
        byte[] sorted = Rewrite(recorded, sort: true, corrupt: null);

        Assert.Equal(ReplayToBytes(sorted), ReplayToBytes(recorded));
    }

    [Fact]
    public void ASuperPacketWithACorruptedChecksumIsCountedAsBadNotTakenForPartial()
    {
        // The super-packet's checksum field one off on its way in: neither the pseudo-header sum the sender's device was
        // to finish, nor valid. (A flipped payload bit under a partial checksum cannot be seen: the field covers only
        // the pseudo-header, and the kernel trusts such a packet as well.)
        byte[] recorded = File.ReadAllBytes(PathOf("ipv4-eprt"));
        byte[] corrupted = Rewrite(recorded, sort: false, corrupt: IsEnteringSuperPacket);

        var session = ReplaySession.Create(Config);
        var comparison = session.Compare(new MemoryStream(corrupted), new MemoryStream(recorded));

        Assert.Equal(1, session.Engine[EngineCounter.MalformedBadChecksum]);
        Assert.False(comparison.IsEqual);
        // The data connection, leaving by lan0, lacks the super-packet; the control connection is untouched.
        var data = comparison.Flows.Single(f => f.Interface == "lan0" && f.Kernel!.Contains("sport=20 ", StringComparison.Ordinal));
        Assert.Equal(data.KernelPackets - 1, data.OurPackets);
        Assert.All(comparison.Flows.Where(f => f.Kernel!.Contains("port=21", StringComparison.Ordinal)), f => Assert.True(f.IsEqual));
    }

    private static bool IsEnteringSuperPacket(CapturedPacket frame) =>
        frame.Data.Length > 1514 && !frame.Data.Span.Slice(6, 6).SequenceEqual(Config.Interfaces.Single(i => i.Name == "lan0").Mac);

    private static byte[] ReplayToBytes(byte[] capture)
    {
        using var output = new MemoryStream();
        ReplaySession.Create(Config).Run(new MemoryStream(capture), output);
        return output.ToArray();
    }

    /// <summary>The capture written again: sorted by timestamp (stable), or with the transport checksum of the frames <paramref name="corrupt"/> picks changed by one.</summary>
    private static byte[] Rewrite(byte[] capture, bool sort, Func<CapturedPacket, bool>? corrupt)
    {
        using var reader = new CaptureReader(new MemoryStream(capture));
        var frames = new List<(long Time, int Interface, byte[] Data)>();
        while (reader.TryRead(out var frame))
        {
            byte[] data = frame.Data.ToArray();
            if (corrupt?.Invoke(frame) == true)
            {
                var info = PacketParser.Parse(data.AsSpan(14));
                data[14 + info.L4Offset + HeaderOffsets.TcpChecksum + 1] ^= 0x01;
            }

            frames.Add((frame.TimestampNanoseconds, frame.InterfaceId, data));
        }

        var output = new MemoryStream();
        using (var writer = new PcapngWriter(output, leaveOpen: true))
        {
            foreach (var ci in reader.Interfaces)
            {
                writer.AddInterface(ci.Name!, ci.LinkType);
            }

            foreach (var (time, iface, data) in sort ? frames.OrderBy(f => f.Time) : frames.AsEnumerable())
            {
                writer.WritePacket(iface, time, data);
            }
        }

        return output.ToArray();
    }
}
