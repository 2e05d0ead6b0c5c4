using Offload.Engine;
using Offload.Engine.Packets;
using Offload.Replay.Compare;
using Offload.Rules;
using Xunit;

namespace Offload.Replay.Tests.Kernel;

/// <summary>
/// The acceptance test of the engine: FTP sessions and plain NAT exchanges recorded through a router namespace running
/// the kernel's own MASQUERADE and ftp helper (tests/data/ftp and nat, see their READMEs; tests/data/as-recorded holds
/// some recorded as users record, with offloads on and out of time order) are replayed through our engine, and every
/// packet that leaves must equal, byte for byte from the IP header on, what the kernel sent on the same interface
/// (its offloaded checksums finished, as its device would).
/// </summary>
public sealed class KernelCaptureTests
{
    /// <summary>Every capture of every data folder (ftp, nat, as-recorded/ftp, ...), as "folder/name".</summary>
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

    private static OffloadConfig ConfigOf(string capture) => ConfigLoader.LoadFile(RepoPaths.LabConfigOf(capture[..capture.LastIndexOf('/')]));

    private static string PathOf(string capture) =>
        Path.Combine(RepoPaths.CapturesOf(capture[..capture.LastIndexOf('/')]), capture[(capture.LastIndexOf('/') + 1)..] + ".pcapng");

    [Theory]
    [MemberData(nameof(Captures))]
    public void ReplayLeavesTheRouterExactlyAsTheKernelDid(string capture)
    {
        // The same comparer as offloadctl replay --compare: every packet, flow by flow, byte for byte once the
        // kernel's offloaded checksums are finished.
        var session = ReplaySession.Create(ConfigOf(capture));
        using var input = File.OpenRead(PathOf(capture));
        using var kernel = File.OpenRead(PathOf(capture));
        var comparison = session.Compare(input, kernel);

        var report = new StringWriter();
        comparison.Write(report);
        Assert.True(comparison.IsEqual, $"{capture}:\n{report}");
        Assert.Equal(0, session.Engine[EngineCounter.PacketsDropped]);
    }

    [Theory]
    [MemberData(nameof(Captures))]
    public void EveryPacketWeSendHasCorrectChecksums(string capture)
    {
        foreach (var packet in Replay(ConfigOf(capture), PathOf(capture)))
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

    /// <summary>What our engine sends out of the router.</summary>
    private static IEnumerable<byte[]> Replay(OffloadConfig config, string path)
    {
        var sent = new List<SentPacket>();
        using var input = File.OpenRead(path);
        ReplaySession.Create(config).Run(input, null, sent);
        return sent.Select(p => p.Packet);
    }
}

/// <summary>Where the repository's test data lives, found from the test assembly's location.</summary>
internal static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    /// <summary>Captures recorded as users record them, in folders named after the lab folder whose lab.yaml they replay with.</summary>
    public const string AsRecorded = "as-recorded";

    /// <summary>
    /// The folders of captures under tests/data that hold a lab.yaml, then those of tests/data/as-recorded named like
    /// one of them. When OFFLOAD_FRESH_CAPTURES names a folder, the captures are read from its subfolder of the same
    /// name instead (fresh recordings from this machine's kernel, as users record), and the configuration still from
    /// the repository.
    /// </summary>
    public static IEnumerable<string> CaptureFolders()
    {
        string data = Path.Combine(Root, "tests", "data");
        var labs = Directory.GetDirectories(data)
            .Where(d => File.Exists(Path.Combine(d, "lab.yaml")))
            .Select(d => Path.GetFileName(d)!)
            .Order(StringComparer.Ordinal)
            .ToList();
        if (Fresh is { } fresh)
        {
            return labs.Where(name => Directory.Exists(Path.Combine(fresh, name)));
        }

        string asRecorded = Path.Combine(data, AsRecorded);
        var recorded = Directory.Exists(asRecorded)
            ? Directory.GetDirectories(asRecorded).Select(d => Path.GetFileName(d)!).Where(labs.Contains).Order(StringComparer.Ordinal).Select(name => AsRecorded + "/" + name)
            : [];
        return [.. labs, .. recorded];
    }

    public static string CapturesOf(string folder) =>
        Fresh is { } fresh ? Path.Combine(fresh, folder) : Path.Combine(Root, "tests", "data", folder);

    /// <summary>The lab.yaml a folder's captures replay with: its own, or for as-recorded/NAME, NAME's.</summary>
    public static string LabConfigOf(string folder) => Path.Combine(Root, "tests", "data", Path.GetFileName(folder), "lab.yaml");

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
