using System.Net;
using Offload.Engine.Nat;

namespace Offload.Rules;

/// <summary>An address with its prefix length, as written in the configuration (<c>192.0.2.1/24</c>).</summary>
public readonly record struct Prefix(IPAddress Address, int Length)
{
    public byte Family => Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? (byte)4 : (byte)6;

    public override string ToString() => $"{Address}/{Length}";
}

/// <summary>
/// A router interface: its name, addresses and, optionally, its MAC address (a replay tells the packets the
/// router sent from those it received by it, when the capture does not record directions).
/// </summary>
public sealed record InterfaceConfig(string Name, IReadOnlyList<Prefix> Addresses, byte[]? Mac, int Line);

/// <summary>A route beyond the interfaces' own subnets (replays route by these).</summary>
public sealed record RouteConfig(Prefix Destination, string Device, int Line);

/// <summary>One NAT rule as configured.</summary>
public sealed record NatRuleConfig(
    NatAction Action,
    byte Family,
    byte Protocol,
    Prefix? Source,
    Prefix? Destination,
    ushort DestinationPortMin,
    ushort DestinationPortMax,
    string? InInterface,
    string? OutInterface,
    IPAddress? ToMin,
    IPAddress? ToMax,
    ushort PortMin,
    ushort PortMax,
    bool Random,
    bool Persistent,
    int Line);

/// <summary>A helper attached to the connections of some protocols and ports, with its options.</summary>
/// <param name="Name">The helper's name.</param>
/// <param name="Protocol">The (first) protocol configured; 0 for the helper's own.</param>
/// <param name="Ports">The ports configured; none for the helper's own.</param>
/// <param name="Loose">The built-in FTP and IRC helpers' loose switch.</param>
/// <param name="Line">Where the entry is in the file (0 for an entry the daemon made up for a plugin helper no entry names).</param>
public sealed record HelperConfig(string Name, byte Protocol, IReadOnlyList<ushort> Ports, bool Loose, int Line)
{
    /// <summary>Every protocol configured (<c>protocol: [tcp, udp]</c>); empty when one or none is.</summary>
    public IReadOnlyList<byte> Protocols { get; init; } = [];

    /// <summary>The entry's <c>options:</c>, passed to the helper's <see cref="ConntrackHelper.Configure"/>.</summary>
    public IReadOnlyDictionary<string, string> Options { get; init; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>The ports configured, or the helper's own (<see cref="ConntrackHelper.Ports"/>; empty for a helper without any).</summary>
    public IReadOnlyList<ushort> PortsOf(ConntrackHelper helper) => Ports.Count > 0 ? Ports : helper.Ports;

    /// <summary>The protocols configured, or the helper's own (<see cref="ConntrackHelper.Protocols"/>).</summary>
    public IReadOnlyList<byte> ProtocolsOf(ConntrackHelper helper) => Protocols.Count > 0 ? Protocols : Protocol != 0 ? [Protocol] : helper.Protocols;

    /// <summary>The protocols configured, when the entry names any (the helper's own are known only once it is made).</summary>
    public IReadOnlyList<byte> ConfiguredProtocols => Protocols.Count > 0 ? Protocols : Protocol != 0 ? [Protocol] : [];
}

/// <summary>Table size, validation and timeouts.</summary>
public sealed record ConntrackConfig
{
    public int Max { get; init; } = 262_144;

    public int ExpectMax { get; init; }

    public bool Checksum { get; init; } = true;

    public bool TcpLiberal { get; init; }

    public bool TcpLoose { get; init; } = true;

    public int? TcpEstablishedTimeout { get; init; }

    public int? UdpTimeout { get; init; }

    public int? UdpStreamTimeout { get; init; }

    public int? IcmpTimeout { get; init; }

    public int? GenericTimeout { get; init; }
}

/// <summary>Which forwarded flows offloadd takes.</summary>
public enum SteeredFlows : byte
{
    /// <summary>Every flow of the steered protocols from the <c>from</c> to the <c>to</c> interfaces.</summary>
    All,

    /// <summary>
    /// Only the flows of the configured helpers' ports and the connections they expect (kept in ipset sets the
    /// daemon fills); everything else stays on the kernel's fast path.
    /// </summary>
    Helpers,
}

/// <summary>
/// Which packets iptables hands to offloadd: the forwarded traffic from <see cref="From"/> to <see cref="To"/>
/// (queued after routing, where source NAT belongs) and what comes back to the daemon's own NAT port range on
/// <see cref="To"/> (queued before routing, where destination NAT belongs).
/// </summary>
public sealed record SteeringConfig
{
    public IReadOnlyList<string> From { get; init; } = [];

    public IReadOnlyList<string> To { get; init; } = [];

    /// <summary>Queue for packets steered before routing (replies, expected connections).</summary>
    public ushort QueuePre { get; init; }

    /// <summary>Queue for packets steered after routing (new and original-direction packets).</summary>
    public ushort QueuePost { get; init; } = 1;

    /// <summary>The daemon's NAT ports: its translations and translated expectations use only these, so they never collide with the kernel's own NAT of other flows.</summary>
    public ushort NatPortMin { get; init; } = 61000;

    public ushort NatPortMax { get; init; } = 65535;

    /// <summary>Protocols steered: TCP, UDP and ICMP (1, which means ICMPv6 in IPv6) by default; the others stay with the kernel and its NAT.</summary>
    public IReadOnlyList<byte> Protocols { get; init; } = [6, 17, 1];

    /// <summary>
    /// The eight contiguous bits of the packet mark where offloadd writes its view of each packet it accepts (see
    /// <see cref="StateMarkBits"/>), for firewall rules to match as they would match <c>--ctstate</c>. The rest of the
    /// mark is left as it was.
    /// </summary>
    public uint StateMark { get; init; } = DefaultStateMark;

    /// <summary>The default <see cref="StateMark"/>: bits 16 to 23.</summary>
    public const uint DefaultStateMark = 0x00ff0000;

    /// <summary>
    /// When true, packets pass un-NATed while the daemon is absent (NFQUEUE --queue-bypass). False by default:
    /// a flow whose NAT lives in the daemon must never leave un-NATed.
    /// </summary>
    public bool FailOpen { get; init; }

    /// <summary>
    /// Let the kernel queue segmentation-offload super-packets whole (the queue's GSO flag): far fewer packets to
    /// handle, with offloaded checksums the engine updates as such. On by default.
    /// </summary>
    public bool Gso { get; init; } = true;

    /// <summary>All flows, or only the helpers' (see <see cref="SteeredFlows"/>).</summary>
    public SteeredFlows Flows { get; init; }

    /// <summary>The ipset sets of flows steered one by one (helpers mode): this prefix, then 4 or 6.</summary>
    public string SetPrefix { get; init; } = "offload";

    /// <summary>
    /// Engine shards, each with its own queue before and after routing (queue-pre + i, queue-post + i) and its own
    /// thread; 0 (<c>auto</c>, the default) for as many as <see cref="ShardCount.Effective(OffloadConfig, int)"/> finds room for.
    /// </summary>
    public int Shards { get; init; }

    public int Line { get; init; }
}

/// <summary>How many engine shards a configuration runs (see <see cref="SteeringConfig.Shards"/>).</summary>
public static class ShardCount
{
    /// <summary>The most shards: 64 queues each way.</summary>
    public const int Max = 64;

    /// <summary>What keeps a configuration to one shard for now, or null.</summary>
    public static string? SingleShardReason(OffloadConfig config) =>
        config.Steering is { Flows: SteeredFlows.Helpers } ? "helpers mode (flows: helpers)"
        : config.Replication is not null ? "replication"
        : config.Helpers.Any(h => h.Name == "pptp") ? "the pptp helper"
        : config.Handback is not null ? "hand-back (a handback: section, even switched off)"
        : null;

    /// <summary>
    /// How many shards the queue numbers leave room for: the ranges queue-pre.. and queue-post.. must not overlap nor
    /// pass 65535.
    /// </summary>
    public static int QueueRoom(SteeringConfig steering)
    {
        int low = Math.Min(steering.QueuePre, steering.QueuePost);
        int high = Math.Max(steering.QueuePre, steering.QueuePost);
        return Math.Min(high - low, 65536 - high);
    }

    /// <summary>How many shards the NAT port range leaves room for (each slice at least <see cref="Engine.Sharding.PortSlice.MinimumPortsPerShard"/>).</summary>
    public static int PortRoom(SteeringConfig steering) =>
        (steering.NatPortMax - steering.NatPortMin + 1) / Engine.Sharding.PortSlice.MinimumPortsPerShard;

    /// <summary>
    /// The shards a configuration runs with: the number given, or for <c>auto</c> one per processor this process may
    /// run on, as many as the queues and the NAT ports leave room for, and one where <see cref="SingleShardReason"/>
    /// says so (an older configuration with queues 0 and 1 keeps running as before).
    /// </summary>
    public static int Effective(OffloadConfig config, int processors)
    {
        if (config.Steering is not { } steering)
        {
            return 1;
        }

        if (steering.Shards > 0)
        {
            return steering.Shards;
        }

        if (SingleShardReason(config) is not null)
        {
            return 1;
        }

        return Math.Max(1, Math.Min(Math.Min(processors, Max), Math.Min(QueueRoom(steering), PortRoom(steering))));
    }

    /// <summary>The shards of this machine (<see cref="Environment.ProcessorCount"/> processors).</summary>
    public static int Effective(OffloadConfig config) => Effective(config, Environment.ProcessorCount);
}

/// <summary>
/// Where offloadd finds helper plugins (<c>*.dll</c> assemblies and single <c>*.cs</c> files) and how long and how
/// much one call of a plugin helper may run and allocate before the helper is disabled.
/// </summary>
public sealed record PluginsConfig(string Directory)
{
    /// <summary>The directory offloadd scans when the configuration has no <c>plugins:</c> key.</summary>
    public const string DefaultDirectory = "/etc/offload/helpers.d";

    /// <summary>Wall-clock time one call of a plugin helper may take before it is aborted (milliseconds).</summary>
    public int CallBudgetMilliseconds { get; init; } = 50;

    /// <summary>What one call of a plugin helper may allocate before the helper is disabled (MiB).</summary>
    public int AllocationBudgetMiB { get; init; } = 16;

    public int Line { get; init; }
}

/// <summary>The whole configuration of offloadd (and of a replay).</summary>
public sealed record OffloadConfig(
    IReadOnlyList<InterfaceConfig> Interfaces,
    IReadOnlyList<NatRuleConfig> Nat,
    IReadOnlyList<HelperConfig> Helpers,
    IReadOnlyList<RouteConfig> Routes,
    ConntrackConfig Conntrack,
    string? Source)
{
    /// <summary>Steering for a live daemon; null in a configuration meant only for replays.</summary>
    public SteeringConfig? Steering { get; init; }

    /// <summary>The plugins section; null when absent (offloadd then scans <see cref="PluginsConfig.DefaultDirectory"/>).</summary>
    public PluginsConfig? Plugins { get; init; }

    /// <summary>State replication to a standby router; null when absent (a single router).</summary>
    public ReplicationConfig? Replication { get; init; }

    /// <summary>Hand-back of helpers' expected connections to the kernel; null when absent (every packet stays with offloadd).</summary>
    public HandbackConfig? Handback { get; init; }
}

/// <summary>A configuration error, with where it is.</summary>
public sealed class ConfigException : Exception
{
    public ConfigException(string? file, int line, int column, string message)
        : base(Format(file, line, column, message))
    {
        File = file;
        Line = line;
        Column = column;
        Problem = message;
    }

    public ConfigException()
    {
        Problem = string.Empty;
    }

    public ConfigException(string message)
        : base(message)
    {
        Problem = message;
    }

    public ConfigException(string message, Exception innerException)
        : base(message, innerException)
    {
        Problem = message;
    }

    public string? File { get; }

    public int Line { get; }

    public int Column { get; }

    public string Problem { get; }

    private static string Format(string? file, int line, int column, string message) =>
        line > 0 ? $"{file ?? "<config>"}:{line}:{column}: {message}" : $"{file ?? "<config>"}: {message}";
}
