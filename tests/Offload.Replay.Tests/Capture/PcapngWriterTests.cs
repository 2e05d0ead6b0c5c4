using System.Diagnostics;
using System.Globalization;
using Offload.Replay.Capture;
using Xunit;

namespace Offload.Replay.Tests.Capture;

public sealed class PcapngWriterTests
{
    [Fact]
    public void WritesTheBlocksTheSpecificationDescribes()
    {
        var output = new MemoryStream();
        using (var writer = new PcapngWriter(output, leaveOpen: true))
        {
            Assert.Equal(0, writer.AddInterface("a", LinkLayer.Ethernet));
            writer.WritePacket(0, 0x0000_0001_0000_0002, [0xAB], PacketDirection.Inbound);
            writer.WritePacket(0, 5, [0x01, 0x02, 0x03, 0x04]);
        }

        string expected =
            // SHB: type, length 28, byte-order magic, version 1.0, section length -1, length
            "0A0D0D0A 1C000000 4D3C2B1A 0100 0000 FFFFFFFFFFFFFFFF 1C000000" +
            // IDB: type 1, length 40, LINKTYPE_ETHERNET, reserved, snaplen 262144, if_name "a", if_tsresol 9, end, length
            "01000000 28000000 0100 0000 00000400 0200 0100 61000000 0900 0100 09000000 00000000 28000000" +
            // EPB: type 6, length 48, interface 0, timestamp high and low, lengths 1 and 1, data padded, epb_flags 1, end, length
            "06000000 30000000 00000000 01000000 02000000 01000000 01000000 AB000000 0200 0400 01000000 00000000 30000000" +
            // EPB without direction: no options at all
            "06000000 24000000 00000000 00000000 05000000 04000000 04000000 01020304 24000000";
        Assert.Equal(expected.Replace(" ", "", StringComparison.Ordinal), Convert.ToHexString(output.ToArray()));
    }

    [Fact]
    public void RoundTripsThroughTheReader()
    {
        var output = new MemoryStream();
        var written = new List<(int Interface, long Timestamp, byte[] Data, PacketDirection Direction)>();
        using (var writer = new PcapngWriter(output, leaveOpen: true))
        {
            Assert.Equal(0, writer.AddInterface("lan0", LinkLayer.Ethernet));
            Assert.Equal(1, writer.AddInterface("wän1", LinkLayer.Raw, snaplen: 65535));
            Assert.Equal(2, writer.InterfaceCount);

            long[] timestamps = [0, 1, 4_294_967_295, 4_294_967_296, 1_763_800_000_123_456_789, long.MaxValue];
            PacketDirection[] directions = [PacketDirection.Unknown, PacketDirection.Inbound, PacketDirection.Outbound];
            for (int i = 0; i < 24; i++)
            {
                // Lengths 0 to 9 cover every padding case; the big one forces the reader's buffer to grow.
                byte[] data = CaptureTestUtil.Bytes(i < 20 ? i % 10 : 9000 + i, (byte)i);
                var packet = (i % 2, timestamps[i % timestamps.Length], data, directions[i % 3]);
                written.Add(packet);
                writer.WritePacket(packet.Item1, packet.Item2, data, packet.Item4);
            }
        }

        output.Position = 0;
        using var reader = new CaptureReader(output);
        Assert.Equal(CaptureFileFormat.Pcapng, reader.Format);
        List<ReadPacket> read = CaptureTestUtil.ReadAll(reader);

        Assert.Equal(2, reader.Interfaces.Count);
        Assert.Equal("lan0", reader.Interfaces[0].Name);
        Assert.Equal(LinkLayer.Ethernet, reader.Interfaces[0].LinkType);
        Assert.Equal((uint)PcapngWriter.DefaultSnaplen, reader.Interfaces[0].Snaplen);
        Assert.Equal("wän1", reader.Interfaces[1].Name);
        Assert.Equal(LinkLayer.Raw, reader.Interfaces[1].LinkType);
        Assert.Equal(65535u, reader.Interfaces[1].Snaplen);
        Assert.All(reader.Interfaces, i => Assert.Equal(TimestampResolution.Nanoseconds, i.TimestampResolution));

        Assert.Equal(written.Count, read.Count);
        for (int i = 0; i < written.Count; i++)
        {
            Assert.Equal(written[i].Interface, read[i].Interface);
            Assert.Equal(written[i].Timestamp, read[i].Timestamp);
            Assert.Equal(written[i].Direction, read[i].Direction);
            Assert.Equal(written[i].Data, read[i].Data);
            Assert.Equal((uint)written[i].Data.Length, read[i].OriginalLength);
            Assert.Equal(written[i].Interface == 0 ? LinkLayer.Ethernet : LinkLayer.Raw, read[i].LinkType);
        }

        Assert.False(reader.TryRead(out _));
    }

    [Fact]
    public void RejectsWhatItCannotWrite()
    {
        using var writer = new PcapngWriter(new MemoryStream());
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.WritePacket(0, 0, [1]));
        int id = writer.AddInterface("x", LinkLayer.Raw);
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.WritePacket(id + 1, 0, [1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.WritePacket(id, -1, [1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.WritePacket(id, 0, [1], (PacketDirection)3));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.AddInterface("y", LinkLayer.Raw, snaplen: -1));
        Assert.Throws<ArgumentException>(() => writer.AddInterface(new string('x', 70000), LinkLayer.Raw));
    }

    [Fact]
    public void DisposeClosesTheStreamUnlessToldOtherwise()
    {
        var kept = new MemoryStream();
        new PcapngWriter(kept, leaveOpen: true).Dispose();
        Assert.True(kept.CanWrite);

        var closed = new MemoryStream();
        var writer = new PcapngWriter(closed);
        writer.Dispose();
        Assert.False(closed.CanWrite);
        Assert.Throws<ObjectDisposedException>(() => writer.AddInterface("x", LinkLayer.Raw));
    }

    [TsharkFact]
    public void TsharkReadsTheWrittenFile()
    {
        string path = Path.Combine(Path.GetTempPath(), $"offload-replay-{Environment.ProcessId}-{Guid.NewGuid():N}.pcapng");
        try
        {
            using (var writer = new PcapngWriter(File.Create(path)))
            {
                int lan = writer.AddInterface("lan0", LinkLayer.Ethernet);
                int wan = writer.AddInterface("wan0", LinkLayer.Raw);
                writer.WritePacket(lan, 1_763_800_000_123_456_789, EthernetUdp(), PacketDirection.Inbound);
                writer.WritePacket(wan, 1_763_800_001_000_000_001, Ipv4Udp(), PacketDirection.Outbound);
                writer.WritePacket(wan, 1_763_800_002_500_000_000, Ipv4Udp());
            }

            string output = Tshark.Run(
                "-r", path, "-T", "fields", "-E", "separator=|",
                "-e", "frame.interface_name", "-e", "frame.time_epoch", "-e", "frame.packet_flags_direction",
                "-e", "frame.len", "-e", "ip.src", "-e", "ip.dst", "-e", "udp.dstport");

            string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(3, lines.Length);
            AssertLine(lines[0], "lan0", "1763800000.123456789", "1", 14 + 29);
            AssertLine(lines[1], "wan0", "1763800001.000000001", "2", 29);
            AssertLine(lines[2], "wan0", "1763800002.500000000", "", 29);
        }
        finally
        {
            File.Delete(path);
        }

        static void AssertLine(string line, string name, string time, string direction, int length)
        {
            string[] fields = line.Split('|');
            Assert.Equal(name, fields[0]);
            Assert.Equal(time, fields[1]);
            // tshark prints the direction field as a number or as "0x00000001"-style hex depending on version.
            Assert.Equal(direction, fields[2].StartsWith("0x", StringComparison.Ordinal)
                ? int.Parse(fields[2].AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture)
                : fields[2]);
            Assert.Equal(length.ToString(CultureInfo.InvariantCulture), fields[3]);
            Assert.Equal("192.0.2.1", fields[4]);
            Assert.Equal("198.51.100.2", fields[5]);
            Assert.Equal("53", fields[6]);
        }
    }

    // An IPv4/UDP datagram with one payload byte and correct checksums' worth of structure (checksums left 0: tshark does not validate by default).
    private static byte[] Ipv4Udp() =>
    [
        0x45, 0x00, 0x00, 0x1D, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00,
        192, 0, 2, 1, 198, 51, 100, 2,
        0x30, 0x39, 0x00, 0x35, 0x00, 0x09, 0x00, 0x00, 0x7A,
    ];

    private static byte[] EthernetUdp() =>
    [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        .. Ipv4Udp(),
    ];
}

/// <summary>A fact that is skipped, saying why, on machines without tshark.</summary>
public sealed class TsharkFactAttribute : FactAttribute
{
    public TsharkFactAttribute()
    {
        if (Tshark.Path is null)
        {
            Skip = "tshark is not installed, so Wireshark's acceptance of PcapngWriter's output is not checked here " +
                "(install it: apt-get install tshark).";
        }
    }
}

/// <summary>Wireshark's command-line tools, when installed.</summary>
internal static class Tshark
{
    public static string? Path { get; } = Find("tshark");

    public static string? EditcapPath { get; } = Find("editcap");

    public static string Run(params string[] arguments) => RunTool(Path!, arguments);

    public static string RunTool(string tool, params string[] arguments)
    {
        var start = new ProcessStartInfo(tool)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using Process process = Process.Start(start)!;
        Task<string> error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromMinutes(1)))
        {
            process.Kill();
            throw new TimeoutException($"{tool} did not finish within a minute.");
        }

        // tshark warns on stderr about running as root; only the exit status says whether it read the file.
        Assert.True(process.ExitCode == 0, $"{tool} exited with {process.ExitCode}: {error.Result}");
        return output;
    }

    private static string? Find(string name)
    {
        foreach (string directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = System.IO.Path.Combine(directory, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}
