using Offload.Alg;
using Offload.Engine;
using Offload.Engine.Packets;
using Offload.Replay.Capture;
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
    public void Run(Stream input, Stream output)
    {
        using var reader = new CaptureReader(input, leaveOpen: true);
        using var writer = new PcapngWriter(output, leaveOpen: true);
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var i in Interfaces)
        {
            ids[i.Name] = writer.AddInterface(i.Name, LinkLayer.Raw);
        }

        Router.Run(reader, (iface, timestamp, packet) => writer.WritePacket(ids[iface.Name], timestamp, packet, PacketDirection.Outbound));
        writer.Flush();
    }
}
