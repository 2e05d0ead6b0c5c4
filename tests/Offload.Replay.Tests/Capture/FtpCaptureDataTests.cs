using System.Globalization;
using System.Runtime.CompilerServices;
using Offload.Replay.Capture;
using Xunit;

namespace Offload.Replay.Tests.Capture;

/// <summary>The FTP captures recorded by dumpcap in the lab (tests/data/ftp) read completely with our reader.</summary>
public sealed class FtpCaptureDataTests
{
    public static TheoryData<string> Captures()
    {
        var data = new TheoryData<string>();
        string? directory = FindDataDirectory();
        // With no data, one case that fails and says why, rather than a theory that quietly has nothing to run.
        string[] files = directory is null ? [] : Directory.GetFiles(directory, "*.pcapng");
        foreach (string file in files.Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetFileName(file));
        }

        if (data.Count == 0)
        {
            data.Add("(no captures found)");
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Captures))]
    public void ReadsCompletelyWithPacketsOnLanAndWan(string name)
    {
        string? directory = FindDataDirectory();
        Assert.True(directory is not null && File.Exists(Path.Combine(directory, name)),
            $"tests/data/ftp/*.pcapng not found (looked above {AppContext.BaseDirectory} and beside this test's source)");

        using var reader = new CaptureReader(File.OpenRead(Path.Combine(directory!, name)));
        Assert.Equal(CaptureFileFormat.Pcapng, reader.Format);
        var packets = new Dictionary<int, int>();
        var ipPackets = new Dictionary<int, int>();
        while (reader.TryRead(out CapturedPacket packet))
        {
            packets[packet.InterfaceId] = packets.GetValueOrDefault(packet.InterfaceId) + 1;
            Assert.True(
                LinkLayer.TryGetNetworkLayer(packet.LinkType, packet.Data.Span, out _, out ushort etherType),
                $"packet {packets.Values.Sum()} on interface {packet.InterfaceId} has no recognisable link-layer header");
            if (etherType is LinkLayer.EtherTypeIPv4 or LinkLayer.EtherTypeIPv6)
            {
                ipPackets[packet.InterfaceId] = ipPackets.GetValueOrDefault(packet.InterfaceId) + 1;
            }
        }

        foreach (string interfaceName in new[] { "lan0", "wan0" })
        {
            CaptureInterface? iface = reader.Interfaces.SingleOrDefault(i => i.Name == interfaceName);
            Assert.True(iface is not null, $"{name} has no interface named {interfaceName}: {string.Join(", ", reader.Interfaces)}");
            Assert.True(packets.GetValueOrDefault(iface.Id) > 0, $"{name} has no packet on {interfaceName}");
            Assert.True(ipPackets.GetValueOrDefault(iface.Id) > 0, $"{name} has no IP packet on {interfaceName}");
        }
    }

    /// <summary>
    /// Our reader and tshark agree, packet by packet, on a recorded capture and on classic pcap copies of it
    /// (microsecond and nanosecond) made by editcap.
    /// </summary>
    [TsharkFact]
    public void ReaderAgreesWithTshark()
    {
        string? directory = FindDataDirectory();
        Assert.True(directory is not null, "tests/data/ftp not found");
        // tshark takes seconds to start: the largest capture stands for the rest, which share its format and writer.
        string? largest = Directory.GetFiles(directory, "*.pcapng").MaxBy(f => new FileInfo(f).Length);
        Assert.NotNull(largest);

        var checkedFiles = new List<string> { largest };

        string scratch = Path.Combine(Path.GetTempPath(), $"offload-replay-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(scratch);
        try
        {
            if (Tshark.EditcapPath is string editcap)
            {
                foreach (string format in new[] { "pcap", "nsecpcap" })
                {
                    string copy = Path.Combine(scratch, $"{format}.pcap");
                    Tshark.RunTool(editcap, "-F", format, largest, copy);
                    checkedFiles.Add(copy);
                }
            }

            foreach (string file in checkedFiles)
            {
                // tshark leaves the interface id empty for classic pcap, which has just the one interface.
                string[] expected = Tshark.Run("-r", file, "-T", "fields", "-E", "separator=|",
                        "-e", "frame.interface_id", "-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len")
                    .Split('\n', StringSplitOptions.RemoveEmptyEntries)
                    .Select(line => line.StartsWith('|') ? "0" + line : line)
                    .ToArray();

                var actual = new List<string>();
                using (var reader = new CaptureReader(File.OpenRead(file)))
                {
                    while (reader.TryRead(out CapturedPacket packet))
                    {
                        long seconds = Math.DivRem(packet.TimestampNanoseconds, 1_000_000_000L, out long nanoseconds);
                        actual.Add(string.Create(CultureInfo.InvariantCulture,
                            $"{packet.InterfaceId}|{seconds}.{nanoseconds:D9}|{packet.OriginalLength}|{packet.Data.Length}"));
                    }
                }

                Assert.Equal(expected, actual);
            }
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static string? FindDataDirectory([CallerFilePath] string sourcePath = "")
    {
        // Normally found above the test binaries; the source location serves builds whose output lives elsewhere.
        for (DirectoryInfo? directory = new(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            string candidate = Path.Combine(directory.FullName, "tests", "data", "ftp");
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }

        string beside = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(sourcePath) ?? ".", "..", "..", "data", "ftp"));
        return Directory.Exists(beside) ? beside : null;
    }
}
