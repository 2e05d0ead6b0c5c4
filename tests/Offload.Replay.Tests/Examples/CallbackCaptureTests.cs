using System.Buffers.Binary;
using Offload.Plugins;
using Offload.Replay.Tests.Kernel;
using Offload.Replay.Capture;
using Offload.Rules;
using Xunit;

namespace Offload.Replay.Tests.Examples;

/// <summary>
/// The walk-through's replay (docs/helpers.md): examples/helpers/callback/callback.pcapng, recorded through the
/// kernel's MASQUERADE alone, where the server's call-back is refused. Replayed with CallbackHelper.cs loaded as a
/// plugin (compiled from source, as offloadd does), the same call-back leaves towards the client.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class CallbackCaptureTests
{
    private static string Example(string file) => Path.Combine(RepoPaths.Root, "examples", "helpers", "callback", file);

    [Fact]
    public void The_call_back_refused_by_the_kernel_reaches_the_client_with_the_example_helper()
    {
        // The example is loaded from a copy in a directory strict modes accept: the checkout may be anywhere (under /tmp).
        string plugins = CleanDirectory.Create("callback-");
        File.Copy(Example("CallbackHelper.cs"), Path.Combine(plugins, "CallbackHelper.cs"));
        var failures = new List<string>();
        var catalog = HelperCatalog.Load(plugins, e => failures.Add(e.Message));
        CleanDirectory.Delete(plugins);
        Assert.Empty(failures);
        var (plugin, helper) = catalog.Find("callback") ?? throw new InvalidOperationException("callback not loaded");
        Assert.EndsWith("CallbackHelper.cs", plugin.Path, StringComparison.Ordinal);
        Assert.Equal([(ushort)111], helper.Ports);

        var config = ConfigLoader.LoadFile(Example("replay.yaml"));
        var session = ReplaySession.Create(catalog.Effective(config, dropUnknown: false), catalog.Factory);
        var toLan = new List<byte[]>();
        using (var stream = File.OpenRead(Example("callback.pcapng")))
        using (var reader = new CaptureReader(stream))
        {
            session.Router.Run(reader, (iface, _, packet) =>
            {
                if (iface.Name == "lan0")
                {
                    toLan.Add(packet.ToArray());
                }
            });
        }

        // IPv4, TCP, SYN without ACK, to the client's 192.0.2.2 port 40000: the call-back, translated back to the client.
        var callBack = Assert.Single(toLan, p => p[9] == 6 && p.AsSpan(16, 4).SequenceEqual(new byte[] { 192, 0, 2, 2 })
            && BinaryPrimitives.ReadUInt16BigEndian(p.AsSpan(22)) == 40000 && (p[33] & 0x12) == 0x02);
        Assert.Equal(new byte[] { 198, 51, 100, 2 }, callBack.AsSpan(12, 4).ToArray());
        Assert.Equal(1, session.Engine[Engine.EngineCounter.ConnectionsExpected]);
    }
}
