using System.Runtime.CompilerServices;
using System.Text;
using Offload.Alg.Rpc;
using Offload.Engine;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Rpc;

/// <summary>
/// Real rpcbind and rpcinfo bytes (libtirpc's record marks and credentials), recorded in the lab through the kernel's
/// port forward of port 111, which has no RPC helper (tests/data/rpc/record-capture.sh): rpcbind answered with the LAN
/// host's address, and the WAN host's connection to the service was refused. Replayed with the rpc helper, every
/// answer that leaves names the router and that connection goes on to the LAN host; replayed without it, what the
/// kernel did.
/// </summary>
public class RpcCaptureTests
{
    private const string LanHost = "192.0.2.2";
    private const string WanHost = "198.51.100.2";
    private const string Router = "198.51.100.1";

    private static string Data(string file, [CallerFilePath] string here = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "..", "..", "data", "rpc", file));

    private static CaptureReplay Replay(bool helper)
    {
        if (helper)
        {
            return CaptureReplay.Run(Data("replay.yaml"), Data("port-forward.pcapng"), new RpcHelper());
        }

        string plain = Path.Combine(Path.GetTempPath(), $"rpc-{Environment.ProcessId}.yaml");
        string config = File.ReadAllText(Data("replay.yaml"));
        File.WriteAllText(plain, config[..config.IndexOf("helpers:", StringComparison.Ordinal)]);
        try
        {
            return CaptureReplay.Run(plain, Data("port-forward.pcapng"));
        }
        finally
        {
            File.Delete(plain);
        }
    }

    private static bool ToService(byte[] p) => Protocol(p) == ProtoTcp && TcpFlagsOf(p) == Syn && DestinationPort(p) == 4711;

    private static bool Portmapper(byte[] p) => (Protocol(p) is ProtoTcp or ProtoUdp) && SourcePort(p) == 111 && Payload(p).Length > 0;

    [Fact]
    public void With_the_helper_the_answers_name_the_router_and_the_service_connection_reaches_the_lan_host()
    {
        var replay = Replay(helper: true);
        var answers = replay.LeftOn("wan0").Where(Portmapper).ToList();
        Assert.Equal(3, answers.Count); // GETADDR over TCP and UDP, GETPORT over UDP
        foreach (var answer in answers)
        {
            AssertValid(answer);
            Assert.DoesNotContain(LanHost, Encoding.ASCII.GetString(Payload(answer)));
        }

        Assert.Equal(2, answers.Count(a => Encoding.ASCII.GetString(Payload(a)).Contains($"{Router}.18.103", StringComparison.Ordinal)));
        Assert.Equal(3, replay[EngineCounter.ExpectationsCreated]);
        Assert.Equal(0, replay[EngineCounter.HelperMalformedCommand]);
        Assert.Equal(0, replay[EngineCounter.HelperPartialCommand]);

        var service = Assert.Single(replay.LeftOn("lan0"), ToService);
        Assert.Equal(Ip(LanHost), Destination(service));
        Assert.Equal(Ip(WanHost), Source(service));
        AssertValid(service);
        Assert.Equal(1, replay[EngineCounter.ConnectionsExpected]);
    }

    [Fact]
    public void Without_it_the_answers_name_the_lan_host_and_the_service_connection_goes_nowhere()
    {
        var replay = Replay(helper: false);
        var answers = replay.LeftOn("wan0").Where(Portmapper).ToList();
        Assert.Equal(2, answers.Count(a => Encoding.ASCII.GetString(Payload(a)).Contains($"{LanHost}.18.103", StringComparison.Ordinal)));
        Assert.DoesNotContain(replay.LeftOn("lan0"), ToService);
        Assert.Equal(0, replay[EngineCounter.ConnectionsExpected]);
    }
}
