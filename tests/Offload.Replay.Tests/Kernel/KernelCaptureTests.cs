using System.Buffers.Binary;
using Offload.Engine;
using Offload.Engine.Packets;
using Offload.Replay.Capture;
using Offload.Rules;
using Xunit;

namespace Offload.Replay.Tests.Kernel;

/// <summary>
/// The acceptance test of the engine: FTP sessions recorded through a router namespace running the kernel's own
/// MASQUERADE and ftp helper (tests/data/ftp, see its README) are replayed through our engine, and every packet
/// that leaves must equal, byte for byte from the IP header on, what the kernel sent on the same interface.
/// </summary>
public sealed class KernelCaptureTests
{
    /// <summary>Every capture of every data folder (ftp, nat, ...), as "folder/name".</summary>
    public static TheoryData<string> Captures()
    {
        var data = new TheoryData<string>();
        foreach (var folder in RepoPaths.CaptureFolders())
        {
            foreach (var file in Directory.GetFiles(RepoPaths.CapturesOf(folder), "*.pcapng").Order(StringComparer.Ordinal))
            {
                data.Add(folder + "/" + Path.GetFileNameWithoutExtension(file));
            }
        }

        return data;
    }

    private static OffloadConfig ConfigOf(string capture) => ConfigLoader.LoadFile(RepoPaths.LabConfigOf(capture.Split('/')[0]));

    private static string PathOf(string capture)
    {
        string[] parts = capture.Split('/');
        return Path.Combine(RepoPaths.CapturesOf(parts[0]), parts[1] + ".pcapng");
    }

    [Theory]
    [MemberData(nameof(Captures))]
    public void ReplayLeavesTheRouterExactlyAsTheKernelDid(string capture)
    {
        var config = ConfigOf(capture);
        string path = PathOf(capture);

        var ours = Replay(config, path);
        var kernel = KernelOutput(config, path);

        Assert.NotEmpty(kernel);
        foreach (var name in kernel.Keys.Union(ours.Keys))
        {
            var expected = kernel.GetValueOrDefault(name) ?? [];
            var actual = ours.GetValueOrDefault(name) ?? [];
            for (int i = 0; i < Math.Min(expected.Count, actual.Count); i++)
            {
                if (!expected[i].AsSpan().SequenceEqual(actual[i]))
                {
                    Assert.Fail($"{capture}: packet {i} leaving by {name} differs from the kernel's:\n kernel {Convert.ToHexString(expected[i])}\n ours   {Convert.ToHexString(actual[i])}");
                }
            }

            Assert.True(expected.Count == actual.Count, $"{capture}: {actual.Count} packets left by {name}, the kernel sent {expected.Count}");
        }
    }

    [Theory]
    [MemberData(nameof(Captures))]
    public void EveryPacketWeSendHasCorrectChecksums(string capture)
    {
        foreach (var packet in Replay(ConfigOf(capture), PathOf(capture)).Values.SelectMany(p => p))
        {
            var info = PacketParser.Parse(packet);
            Assert.True(info.IsValid);
            if (info.Family == 4)
            {
                Assert.True(PacketParser.IPv4HeaderChecksumIsValid(packet));
            }

            Assert.True(PacketParser.TransportChecksumIsValid(packet, info));
        }
    }

    [Fact]
    public void TheMultiTransferSessionAccumulatesSequenceOffsets()
    {
        // Each PORT rewrite makes the command 3 bytes longer ("192,0,2,2" becomes "198,51,100,1"): the
        // client's later segments on the control connection must be shifted by 3, 6, 9... bytes.
        var session = ReplaySession.Create(ConfigOf("ftp/ipv4-port-multi"));
        using var input = File.OpenRead(PathOf("ftp/ipv4-port-multi"));
        using var output = new MemoryStream();
        session.Run(input, output);

        Assert.True(session.Engine[EngineCounter.PayloadRewrites] >= 3, "several PORT commands were rewritten");
        Assert.Equal(session.Engine[EngineCounter.PayloadRewrites], session.Engine[EngineCounter.ConnectionsExpected]);
        Assert.Equal(0, session.Engine[EngineCounter.PacketsDropped]);
    }

    [Fact]
    public void ReplayIsDeterministic()
    {
        var config = ConfigOf("ftp/ipv4-port-multi");
        string path = PathOf("ftp/ipv4-port-multi");
        byte[] first = ReplayToBytes(config, path);
        byte[] second = ReplayToBytes(config, path);
        Assert.Equal(first, second);
    }

    private static byte[] ReplayToBytes(OffloadConfig config, string path)
    {
        using var input = File.OpenRead(path);
        using var output = new MemoryStream();
        ReplaySession.Create(config).Run(input, output);
        return output.ToArray();
    }

    /// <summary>What our engine sends out of each interface, as IP packets.</summary>
    private static Dictionary<string, List<byte[]>> Replay(OffloadConfig config, string path)
    {
        var session = ReplaySession.Create(config);
        var result = new Dictionary<string, List<byte[]>>(StringComparer.Ordinal);
        using var stream = File.OpenRead(path);
        using var reader = new CaptureReader(stream);
        session.Router.Run(reader, (iface, _, packet) =>
        {
            if (!result.TryGetValue(iface.Name, out var list))
            {
                result[iface.Name] = list = [];
            }

            list.Add(packet.ToArray());
        });
        return result;
    }

    /// <summary>What the kernel sent out of each interface: frames with the router's MAC as source, IP, not link control.</summary>
    private static Dictionary<string, List<byte[]>> KernelOutput(OffloadConfig config, string path)
    {
        var result = new Dictionary<string, List<byte[]>>(StringComparer.Ordinal);
        using var stream = File.OpenRead(path);
        using var reader = new CaptureReader(stream);
        while (reader.TryRead(out var frame))
        {
            string? name = reader.Interfaces[frame.InterfaceId].Name;
            var iface = config.Interfaces.Single(i => i.Name == name);
            var data = frame.Data.Span;
            if (!data.Slice(6, 6).SequenceEqual(iface.Mac)
                || !LinkLayer.TryGetNetworkLayer(frame.LinkType, data, out int offset, out ushort etherType)
                || etherType is not (LinkLayer.EtherTypeIPv4 or LinkLayer.EtherTypeIPv6))
            {
                continue;
            }

            var ip = data.Slice(offset);
            if (ReplayRouter.IsLinkControl(ip))
            {
                continue;
            }

            // Trim Ethernet padding: the datagram ends where its header says.
            int length = etherType == LinkLayer.EtherTypeIPv4
                ? BinaryPrimitives.ReadUInt16BigEndian(ip.Slice(2))
                : 40 + BinaryPrimitives.ReadUInt16BigEndian(ip.Slice(4));
            if (!result.TryGetValue(name!, out var list))
            {
                result[name!] = list = [];
            }

            list.Add(ip.Slice(0, length).ToArray());
        }

        return result;
    }
}

/// <summary>Where the repository's test data lives, found from the test assembly's location.</summary>
internal static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    /// <summary>
    /// The folders of captures under tests/data that hold a lab.yaml. When OFFLOAD_FRESH_CAPTURES names a folder, the
    /// captures are read from its subfolder of the same name instead (fresh recordings from this machine's kernel),
    /// and the configuration still from the repository.
    /// </summary>
    public static IEnumerable<string> CaptureFolders() =>
        Directory.GetDirectories(Path.Combine(Root, "tests", "data"))
            .Where(d => File.Exists(Path.Combine(d, "lab.yaml")))
            .Select(Path.GetFileName)
            .Where(name => Fresh is null || Directory.Exists(Path.Combine(Fresh, name!)))
            .Order(StringComparer.Ordinal)!;

    public static string CapturesOf(string folder) =>
        Fresh is { } fresh ? Path.Combine(fresh, folder) : Path.Combine(Root, "tests", "data", folder);

    public static string LabConfigOf(string folder) => Path.Combine(Root, "tests", "data", folder, "lab.yaml");

    private static string? Fresh => Environment.GetEnvironmentVariable("OFFLOAD_FRESH_CAPTURES") is { Length: > 0 } fresh ? fresh : null;

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Offload.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("Cannot find the repository root (Offload.sln) above " + AppContext.BaseDirectory);
    }
}
