using System.Runtime.CompilerServices;
using Offload.Engine;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Sdk.Tests;

/// <summary>
/// The rig a helper author tests with (Offload.Sdk.Testing) fails where it must: a dropped packet or a wrong checksum is
/// a <see cref="RigAssertionException"/> under any test framework, and its capture replay finds what the helper does.
/// </summary>
public class RigTests
{
    private static string Example(string file, [CallerFilePath] string here = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "..", "..", "examples", "helpers", "callback", file));

    [Fact]
    public void A_dropped_packet_fails_pass_with_the_drop_counters()
    {
        var rig = Masquerading(new CallbackHelper());
        var packet = TcpPacket(Client, 3000, Server, 111, Syn, seq: 1);
        packet[^1] ^= 0xff; // the TCP checksum no longer holds: the engine drops it, as the kernel's conntrack would not track it

        var error = Assert.Throws<RigAssertionException>(() => rig.PassOut(packet));

        Assert.StartsWith("packet was dropped; drops: ", error.Message, StringComparison.Ordinal);
        Assert.Contains("Checksum", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_wrong_checksum_fails_assert_valid_and_a_right_one_passes()
    {
        var packet = UdpPacket(Client, 5000, Server, 53, Ascii("query"));
        AssertValid(packet);
        packet[^1] ^= 0x01;
        Assert.Contains("transport checksum", Assert.Throws<RigAssertionException>(() => AssertValid(packet)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_capture_replayed_with_the_helper_gets_the_call_back_to_the_client_and_without_it_does_not()
    {
        var with = CaptureReplay.Run(Example("replay.yaml"), Example("callback.pcapng"), new CallbackHelper());
        // The same router without the helper: what the kernel's MASQUERADE alone did.
        string plain = Path.Combine(Path.GetTempPath(), $"rig-{Environment.ProcessId}.yaml");
        string config = File.ReadAllText(Example("replay.yaml"));
        File.WriteAllText(plain, config[..config.IndexOf("helpers:", StringComparison.Ordinal)]);
        CaptureReplay without;
        try
        {
            without = CaptureReplay.Run(plain, Example("callback.pcapng"));
        }
        finally
        {
            File.Delete(plain);
        }

        static bool CallBack(byte[] p) => Family(p) == 4 && Protocol(p) == ProtoTcp && TcpFlagsOf(p) == Syn && DestinationPort(p) == 40000;
        var back = Assert.Single(with.LeftOn("lan0"), CallBack);
        Assert.Equal(Ip("192.0.2.2"), Destination(back));
        AssertValid(back);
        Assert.Equal(1, with[EngineCounter.ConnectionsExpected]);
        Assert.DoesNotContain(without.LeftOn("lan0"), CallBack);
        Assert.Equal(0, without[EngineCounter.ConnectionsExpected]);
        Assert.True(with.Left.Count > 10);
    }
}
