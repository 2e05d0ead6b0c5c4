using System.Text;
using Offload.Alg.Rtsp;
using Offload.Engine;
using Offload.Replay.Capture;
using Offload.Sdk.Testing;
using Xunit;

namespace Offload.Alg.Tests.Rtsp;

/// <summary>
/// A real session replayed: tests/data/rtsp/masquerade.pcapng, ffmpeg playing GStreamer's RTSP server (audio, PCMU over
/// RTP/UDP) through the kernel's MASQUERADE, recorded on the router's lan0 and wan0 (tests/lab/record-rtsp-capture.sh).
/// Through the engine with the rtsp helper, what left on the WAN is what the kernel sent (the client's ports were free
/// at the router: nothing to rewrite), ffmpeg's first datagrams to the server's ports are RELATED (paired with the
/// media), every RTP datagram the server sent reaches the client, and TEARDOWN leaves no expectation behind.
/// </summary>
public class RtspCaptureTests
{
    private static string Data(string file)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Offload.sln")))
            {
                return Path.Combine(dir.FullName, "tests", "data", "rtsp", file);
            }
        }

        throw new InvalidOperationException("no Offload.sln above " + AppContext.BaseDirectory);
    }

    [Fact]
    public void The_recorded_session_plays_through_the_helper_and_leaves_nothing_behind()
    {
        var replay = CaptureReplay.Run(Data("lab.yaml"), Data("masquerade.pcapng"), new RtspHelper());

        var wan = replay.LeftOn("wan0");
        var lan = replay.LeftOn("lan0");
        // The RTSP the kernel sent on the WAN, and ours: the same messages, byte for byte.
        Assert.Equal(KernelRtspOnWan(), wan.Where(p => p[9] == 6).Select(Payload).Where(p => p.Length > 0));
        string setup = wan.Select(Payload).First(p => p.StartsWith("SETUP ", StringComparison.Ordinal));
        Assert.Contains("client_port=", setup, StringComparison.Ordinal);
        Assert.DoesNotContain("192.0.2.", setup, StringComparison.Ordinal);

        // The server's RTP (UDP from the server's media port to the client's): as many reach the client as entered.
        var answer = lan.Select(Payload).First(p => p.Contains("server_port=", StringComparison.Ordinal));
        Assert.Contains("client_port=", answer, StringComparison.Ordinal);
        int udpToClient = lan.Count(p => p[9] == 17 && p.AsSpan(12, 4).SequenceEqual(new byte[] { 198, 51, 100, 2 })
            && p.AsSpan(16, 4).SequenceEqual(new byte[] { 192, 0, 2, 2 }));
        Assert.True(udpToClient >= 10, $"{udpToClient} datagrams reached the client");
        Assert.Equal(2, replay[EngineCounter.ConnectionsExpected]); // ffmpeg's datagram to the RTP and to the RTCP port
        Assert.Equal(0, replay[EngineCounter.HelperMalformedCommand] + replay[EngineCounter.HelperPartialCommand] + replay[EngineCounter.HelperFailures]);
        Assert.Empty(replay.Engine.Expectations.Entries()); // TEARDOWN
    }

    /// <summary>The TCP payloads the router sent on wan0 in the recording (the kernel's), in order.</summary>
    private static List<string> KernelRtspOnWan()
    {
        var sent = new List<string>();
        using var stream = File.OpenRead(Data("masquerade.pcapng"));
        using var reader = new CaptureReader(stream);
        while (reader.TryRead(out var frame))
        {
            var data = frame.Data.Span;
            if (reader.Interfaces[frame.InterfaceId].Name == "wan0" && LinkLayer.TryGetNetworkLayer(frame.LinkType, data, out int offset, out ushort etherType)
                && etherType == 0x0800 && data[offset + 9] == 6 && data.Slice(offset + 12, 4).SequenceEqual(new byte[] { 198, 51, 100, 1 }))
            {
                string payload = Payload(data[offset..].ToArray());
                if (payload.Length > 0)
                {
                    sent.Add(payload);
                }
            }
        }

        return sent;
    }

    private static string Payload(byte[] packet) => Encoding.ASCII.GetString(TestPackets.Payload(packet));
}
