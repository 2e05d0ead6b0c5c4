using Offload.Alg;
using Offload.Engine;
using Offload.Engine.Packets;
using Offload.Replay.Capture;
using Offload.Replay.Compare;
using Offload.Rules;

namespace Offload.Replay;

/// <summary>A replay built from a configuration: the engine, its clock, and the router around it.</summary>
public sealed class ReplaySession
{
    /// <summary>The fixed seed of every replay, so that the same capture and configuration give the same bytes.</summary>
    public const ulong Seed = 0x0FF10AD5EED;

    private ReplaySession(ReplayRouter router, IReadOnlyList<ReplayInterface> interfaces)
    {
        Router = router;
        Interfaces = interfaces;
    }

    public ReplayRouter Router { get; }

    public ConntrackEngine Engine => Router.Engine;

    public IReadOnlyList<ReplayInterface> Interfaces { get; }

    /// <param name="config">The router: interfaces, NAT rules, helpers.</param>
    /// <param name="helpers">Resolves the configured helpers by name (default: the built-ins only).</param>
    public static ReplaySession Create(OffloadConfig config, EngineBuilder.HelperFactory? helpers = null)
    {
        var table = EngineBuilder.Interfaces(config);
        var options = EngineBuilder.Build(config, table, helpers ?? (h => BuiltInHelpers.Create(h.Name, h.Loose)), Seed);
        var clock = new ManualClock();
        var engine = new ConntrackEngine(options, clock);
        var interfaces = config.Interfaces.Select(i => new ReplayInterface(i.Name, table.IndexOf(i.Name), i.Mac)).ToList();

        var routes = new List<ReplayRoute>();
        foreach (var i in config.Interfaces)
        {
            foreach (var a in i.Addresses)
            {
                routes.Add(new ReplayRoute(a.Family, InetAddress.From(a.Address), a.Length, table.IndexOf(i.Name)));
            }
        }

        foreach (var r in config.Routes)
        {
            routes.Add(new ReplayRoute(r.Destination.Family, InetAddress.From(r.Destination.Address), r.Destination.Length, table.IndexOf(r.Device)));
        }

        return new ReplaySession(new ReplayRouter(engine, clock, interfaces, routes, table.IsLocal), interfaces);
    }

    /// <summary>Replays <paramref name="input"/> and writes what leaves the router to <paramref name="output"/> as pcapng, one interface per router interface, raw IP.</summary>
    public void Run(Stream input, Stream output) => Run(input, output, sent: null);

    /// <summary>
    /// Replays <paramref name="input"/>; writes what leaves the router to <paramref name="output"/> (when given, as
    /// <see cref="Run(Stream, Stream)"/> does) and adds it to <paramref name="sent"/> (when given), to compare with
    /// what the kernel sent (<see cref="ReplayComparison"/>).
    /// </summary>
    public void Run(Stream input, Stream? output, List<SentPacket>? sent)
    {
        using var reader = new CaptureReader(input, leaveOpen: true);
        using var writer = output is null ? null : new PcapngWriter(output, leaveOpen: true);
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var i in Interfaces)
        {
            ids[i.Name] = writer?.AddInterface(i.Name, LinkLayer.Raw) ?? 0;
        }

        Router.Run(reader, (iface, timestamp, packet) =>
        {
            writer?.WritePacket(ids[iface.Name], timestamp, packet, PacketDirection.Outbound);
            sent?.Add(new SentPacket(iface.Name, timestamp, packet.ToArray()));
        });
        writer?.Flush();
    }

    /// <summary>What the kernel sent in a capture of this router's interfaces (see <see cref="LeavingFrames.Read"/>).</summary>
    public List<SentPacket> KernelSent(Stream capture)
    {
        using var reader = new CaptureReader(capture, leaveOpen: true);
        return LeavingFrames.Read(reader, Interfaces);
    }

    /// <summary>Replays <paramref name="input"/> and compares what leaves with what the kernel sent in <paramref name="kernel"/> (often the same file).</summary>
    public ReplayComparison Compare(Stream input, Stream kernel, Stream? output = null)
    {
        var ours = new List<SentPacket>();
        Run(input, output, ours);
        return ReplayComparison.Compare(KernelSent(kernel), ours);
    }
}
