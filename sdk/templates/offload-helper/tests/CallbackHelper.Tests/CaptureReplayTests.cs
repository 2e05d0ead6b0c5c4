using Offload.Engine;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

/// <summary>
/// A capture of the real protocol, replayed through the engine with the helper as offloadctl replay does it.
/// data/capture.pcapng was recorded on a lab router's lan0 and wan0 through the kernel's MASQUERADE alone, which knows
/// nothing of the protocol: the server's connection back to the client was refused there. With the helper it leaves
/// on lan0 towards the client.
/// </summary>
public class CaptureReplayTests
{
    private static string Data(string file) => Path.Combine(AppContext.BaseDirectory, "data", file);

    [Fact]
    public void The_connection_back_the_kernel_refused_reaches_the_client_with_the_helper()
    {
        var replay = CaptureReplay.Run(Data("router.yaml"), Data("capture.pcapng"), new CallbackHelper());

        var back = Assert.Single(replay.LeftOn("lan0"), p => Family(p) == 4 && Protocol(p) == ProtoTcp && TcpFlagsOf(p) == Syn && DestinationPort(p) == 40000);
        Assert.Equal(Ip("192.0.2.2"), Destination(back));
        Assert.Equal(Ip("198.51.100.2"), Source(back));
        Assert.Equal(1, replay[EngineCounter.ConnectionsExpected]);
    }
}
