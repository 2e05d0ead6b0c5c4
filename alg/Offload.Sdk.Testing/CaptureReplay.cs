using Offload.Alg;
using Offload.Engine;
using Offload.Replay;
using Offload.Replay.Capture;
using Offload.Rules;

namespace Offload.Sdk.Testing;

/// <summary>A packet that left the router during a replay: the interface it left by, when, and its bytes (raw IP).</summary>
/// <param name="Interface">The router interface's name, as the configuration names it.</param>
/// <param name="TimestampNanoseconds">The capture's time of the packet that caused it.</param>
/// <param name="Packet">The IP packet as it left, translated, with its checksums.</param>
public sealed record LeftPacket(string Interface, long TimestampNanoseconds, byte[] Packet);

/// <summary>
/// A capture (pcap or pcapng) replayed through the engine as <c>offloadctl replay</c> replays it, with the helpers under
/// test: each packet entering the router goes through PREROUTING, routing, the TTL decrement and POSTROUTING, the
/// capture's timestamps are the clock, and what leaves is collected. The same capture, configuration and helper always
/// give the same packets.
/// </summary>
public sealed class CaptureReplay
{
    private CaptureReplay(ReplaySession session, IReadOnlyList<LeftPacket> left)
    {
        Engine = session.Engine;
        Statistics = session.Router.Statistics;
        Left = left;
    }

    /// <summary>Every packet that left the router, in the order it left.</summary>
    public IReadOnlyList<LeftPacket> Left { get; }

    /// <summary>The engine after the replay: its connections, expectations and counters.</summary>
    public ConntrackEngine Engine { get; }

    /// <summary>What the router did with the capture's frames (read, forwarded, dropped...).</summary>
    public ReplayStatistics Statistics { get; }

    /// <summary>One of the engine's counters (drops by reason, expected connections...).</summary>
    /// <param name="counter">The counter.</param>
    public long this[EngineCounter counter] => Engine[counter];

    /// <summary>The packets that left by one interface, in order.</summary>
    /// <param name="interfaceName">The interface's name in the configuration.</param>
    public IReadOnlyList<byte[]> LeftOn(string interfaceName) =>
        [.. Left.Where(p => p.Interface == interfaceName).Select(p => p.Packet)];

    /// <summary>
    /// Replays a capture through a router described by an offloadd configuration file (interfaces with their addresses
    /// and, for a capture without direction flags, MAC addresses; NAT rules; routes; helpers).
    /// </summary>
    /// <param name="configurationPath">The router's configuration (YAML, as offloadd and <c>offloadctl replay</c> read it).</param>
    /// <param name="capturePath">The capture of the router's interfaces (pcapng with interface names, or pcap).</param>
    /// <param name="helpers">
    /// The helpers under test. A helper the configuration's <c>helpers:</c> names is bound where that entry says (and
    /// configured with its <c>options:</c>); one it does not name is bound at its own ports and protocols. Other names in
    /// the configuration are the built-in helpers.
    /// </param>
    /// <exception cref="ConfigException">The configuration is invalid (the message names its line), or names an unknown helper.</exception>
    /// <exception cref="CaptureFormatException">The capture cannot be read.</exception>
    public static CaptureReplay Run(string configurationPath, string capturePath, params ConntrackHelper[] helpers)
    {
        ArgumentNullException.ThrowIfNull(helpers);
        var config = ConfigLoader.LoadFile(configurationPath);
        var named = config.Helpers.Select(h => h.Name).ToHashSet(StringComparer.Ordinal);
        config = config with { Helpers = [.. config.Helpers, .. helpers.Where(h => !named.Contains(h.Name)).Select(h => new HelperConfig(h.Name, 0, [], false, 0))] };
        var session = ReplaySession.Create(config, entry => helpers.FirstOrDefault(h => h.Name == entry.Name) ?? BuiltInHelpers.Create(entry.Name, entry.Loose));

        var left = new List<LeftPacket>();
        using (var stream = File.OpenRead(capturePath))
        using (var reader = new CaptureReader(stream))
        {
            session.Router.Run(reader, (iface, timestamp, packet) => left.Add(new LeftPacket(iface.Name, timestamp, packet.ToArray())));
        }

        return new CaptureReplay(session, left);
    }
}
