using System.Globalization;
using System.Net;
using Offload.Engine.Nat;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Offload.Rules;

/// <summary>
/// Reads the YAML configuration. Every error names the file, line and column it is at; unknown keys are
/// errors too, so a typo never silently changes behaviour.
/// </summary>
public static partial class ConfigLoader
{
    public static OffloadConfig LoadFile(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException(path, 0, 0, $"cannot read the configuration: {e.Message}");
        }

        return Parse(text, path);
    }

    public static OffloadConfig Parse(string text, string? file = null)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new ConfigException(file, (int)e.Start.Line, (int)e.Start.Column, $"not valid YAML: {e.InnerException?.Message ?? e.Message}");
        }

        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root)
        {
            throw new ConfigException(file, 1, 1, "the configuration must be a mapping (interfaces:, nat:, helpers:, ...)");
        }

        var reader = new Reader(file);
        var interfaces = new List<InterfaceConfig>();
        var nat = new List<NatRuleConfig>();
        var helpers = new List<HelperConfig>();
        var routes = new List<RouteConfig>();
        var conntrack = new ConntrackConfig();

        SteeringConfig? steering = null;
        PluginsConfig? plugins = null;
        ReplicationConfig? replication = null;
        HandbackConfig? handback = null;
        foreach (var (key, value) in reader.Entries(root, "interfaces", "nat", "helpers", "routes", "conntrack", "steering", "plugins", "replication", "handback"))
        {
            switch (key)
            {
                case "interfaces":
                    foreach (var item in reader.Sequence(value))
                    {
                        interfaces.Add(reader.Interface(item));
                    }

                    break;
                case "nat":
                    foreach (var item in reader.Sequence(value))
                    {
                        nat.Add(reader.NatRule(item));
                    }

                    break;
                case "helpers":
                    foreach (var item in reader.Sequence(value))
                    {
                        helpers.Add(reader.Helper(item));
                    }

                    break;
                case "routes":
                    foreach (var item in reader.Sequence(value))
                    {
                        routes.Add(reader.Route(item));
                    }

                    break;
                case "conntrack":
                    conntrack = reader.Conntrack(value);
                    break;
                case "steering":
                    steering = reader.Steering(value);
                    break;
                case "plugins":
                    plugins = reader.Plugins(value);
                    break;
                case "replication":
                    replication = reader.Replication(value);
                    break;
                case "handback":
                    handback = reader.Handback(value);
                    break;
            }
        }

        var config = new OffloadConfig(interfaces, nat, helpers, routes, conntrack, file) { Steering = steering, Plugins = plugins, Replication = replication, Handback = handback };
        Validate(config, reader);
        return config;
    }

    /// <summary>Checks what single entries cannot: names refer to configured interfaces, names are unique.</summary>
    private static void Validate(OffloadConfig config, Reader reader)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var i in config.Interfaces)
        {
            if (!names.Add(i.Name))
            {
                throw reader.Error(i.Line, 1, $"interface '{i.Name}' is configured twice");
            }
        }

        foreach (var rule in config.Nat)
        {
            foreach (var name in new[] { rule.InInterface, rule.OutInterface })
            {
                if (name is not null && !names.Contains(name))
                {
                    throw reader.Error(rule.Line, 1, $"NAT rule names interface '{name}', which is not under interfaces:");
                }
            }
        }

        if (config.Steering is { } steering)
        {
            foreach (var name in steering.From.Concat(steering.To))
            {
                if (!names.Contains(name))
                {
                    throw reader.Error(steering.Line, 1, $"steering names interface '{name}', which is not under interfaces:");
                }
            }

            if (steering.From.Count == 0 || steering.To.Count == 0)
            {
                throw reader.Error(steering.Line, 1, "steering needs from: and to: (the interfaces whose forwarded traffic offloadd handles)");
            }

            if (steering.QueuePre == steering.QueuePost)
            {
                throw reader.Error(steering.Line, 1, "steering: queue-pre and queue-post must differ");
            }

            if (SteeringRules.KernelPorts(steering) is null)
            {
                throw reader.Error(steering.Line, 1, "steering: nat-ports leaves no ports for the kernel's NAT of the flows offloadd does not take (keep some of 1024-65535 outside it)");
            }

            if (steering.Flows == SteeredFlows.Helpers)
            {
                RefuseForwardsToHelperPorts(config, reader);
            }

            RefuseShardsWithoutRoom(config, steering, reader);
        }

        if (config.Replication is not null)
        {
            RefuseMasqueradeWithReplication(config, reader);
        }

        RefusePptpServersBehindForwards(config, reader);
        ValidateHandback(config, reader);

        foreach (var route in config.Routes)
        {
            if (!names.Contains(route.Device))
            {
                throw reader.Error(route.Line, 1, $"route names interface '{route.Device}', which is not under interfaces:");
            }
        }
    }

    /// <summary>
    /// More than one shard needs a queue each way per shard and a slice of the NAT ports per shard, and is not there yet
    /// for what still runs in one engine (helpers mode's sets, replication, PPTP's GRE keys).
    /// </summary>
    private static void RefuseShardsWithoutRoom(OffloadConfig config, SteeringConfig steering, Reader reader)
    {
        int n = steering.Shards;
        if (n <= 1)
        {
            return;
        }

        if (ShardCount.SingleShardReason(config) is { } reason)
        {
            throw reader.Error(steering.Line, 1, $"steering: shards: {n} with {reason}: that runs in one shard for now; use shards: 1 (or auto)");
        }

        if (ShardCount.QueueRoom(steering) < n)
        {
            throw reader.Error(steering.Line, 1, $"steering: shards: {n} takes queues {steering.QueuePre}-{steering.QueuePre + n - 1} before routing and {steering.QueuePost}-{steering.QueuePost + n - 1} after: they overlap or pass 65535; set queue-post to queue-pre + {n} or more");
        }

        if (ShardCount.PortRoom(steering) < n)
        {
            throw reader.Error(steering.Line, 1, $"steering: shards: {n} splits nat-ports {steering.NatPortMin}-{steering.NatPortMax} into slices of fewer than {Engine.Sharding.PortSlice.MinimumPortsPerShard} ports; widen nat-ports or use fewer shards");
        }

        foreach (var rule in config.Nat.Where(r => r.Action is NatAction.Snat or NatAction.Masquerade && r.PortMin != 0))
        {
            if (rule.PortMax - rule.PortMin + 1 < n)
            {
                throw reader.Error(rule.Line, 1, $"source NAT to ports {rule.PortMin}-{rule.PortMax} with shards: {n}: each shard translates to a slice of its own, and this range has fewer ports than shards");
            }
        }
    }

    /// <summary>
    /// A replicated binding must hold on the standby: MASQUERADE binds to the outgoing interface's own address, which
    /// the other router does not have, so the flows it translated would die at the failover (docs/failover.md). SNAT to
    /// the address VRRP moves between the routers is the way.
    /// </summary>
    private static void RefuseMasqueradeWithReplication(OffloadConfig config, Reader reader)
    {
        foreach (var rule in config.Nat)
        {
            if (rule.Action == NatAction.Masquerade)
            {
                throw reader.Error(
                    rule.Line, 1, "masquerade with replication: the standby does not have this router's own address, so its flows would not survive a failover; use type: snat with to: the WAN address VRRP moves (docs/failover.md)");
            }
        }
    }

    /// <summary>
    /// Helpers mode leaves a port forward to the kernel, which has no helper of ours: a forward to a helper's port would
    /// lose what the helper does (FTP's passive replies, say) where the kernel with its own helper would not.
    /// </summary>
    private static void RefuseForwardsToHelperPorts(OffloadConfig config, Reader reader)
    {
        foreach (var rule in config.Nat.Where(r => r.Action is NatAction.Dnat or NatAction.Redirect))
        {
            foreach (var helper in config.Helpers.Where(h => h.Ports.Count > 0))
            {
                bool protocolMatches = rule.Protocol == 0 || helper.ConfiguredProtocols.Count == 0 || helper.ConfiguredProtocols.Contains(rule.Protocol);
                ushort min = rule.DestinationPortMin, max = rule.DestinationPortMax;
                if (protocolMatches && helper.Ports.Any(p => min == 0 || (p >= min && p <= max)))
                {
                    throw reader.Error(rule.Line, 1, $"flows: helpers leaves this {rule.Action.ToString().ToLowerInvariant()} rule to the kernel, without the {helper.Name} helper its port needs: use flows: all, or give the rule a dport: outside the helper's ports");
                }
            }
        }
    }

    /// <summary>
    /// A PPTP server behind a port forward needs its call's GRE translated both ways at once (the kernel's
    /// pptp_nat_expected sets a source and a destination manip on it); the pptp helper does not do that yet, so the call
    /// would set up and its GRE be dropped. Refused until it does.
    /// </summary>
    private static void RefusePptpServersBehindForwards(OffloadConfig config, Reader reader)
    {
        foreach (var helper in config.Helpers.Where(h => h.Name == "pptp"))
        {
            IReadOnlyList<ushort> ports = helper.Ports.Count > 0 ? helper.Ports : [1723];
            foreach (var rule in config.Nat.Where(r => r.Action is NatAction.Dnat or NatAction.Redirect && r.Protocol is 0 or 6))
            {
                ushort min = rule.DestinationPortMin, max = rule.DestinationPortMax;
                if (ports.Any(p => min == 0 || (p >= min && p <= max)))
                {
                    throw reader.Error(
                        rule.Line, 1, $"this {rule.Action.ToString().ToLowerInvariant()} rule can forward TCP {string.Join(",", ports)} to a PPTP server, which the pptp helper (line {helper.Line}) does not support behind a port forward yet (its GRE would be dropped): give the rule a dport: outside the pptp helper's ports, or leave PPTP to the kernel");
                }
            }
        }
    }

    private sealed partial class Reader(string? file)
    {
        public ConfigException Error(YamlNode node, string message) =>
            new(file, (int)node.Start.Line, (int)node.Start.Column, message);

        public ConfigException Error(int line, int column, string message) => new(file, line, column, message);

        public IEnumerable<(string Key, YamlNode Value)> Entries(YamlNode node, params string[] allowed)
        {
            if (node is not YamlMappingNode mapping)
            {
                throw Error(node, $"expected a mapping with keys: {string.Join(", ", allowed)}");
            }

            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (k, v) in mapping.Children)
            {
                string key = Scalar(k);
                if (Array.IndexOf(allowed, key) < 0)
                {
                    throw Error(k, $"unknown key '{key}' (expected one of: {string.Join(", ", allowed)})");
                }

                if (!seen.Add(key))
                {
                    throw Error(k, $"key '{key}' is given twice");
                }

                yield return (key, v);
            }
        }

        public IEnumerable<YamlNode> Sequence(YamlNode node)
        {
            if (node is YamlScalarNode { Value: null or "" or "~" or "null" })
            {
                yield break;
            }

            if (node is not YamlSequenceNode sequence)
            {
                throw Error(node, "expected a list");
            }

            foreach (var item in sequence.Children)
            {
                yield return item;
            }
        }

        public string Scalar(YamlNode node) =>
            node is YamlScalarNode { Value: { } value } ? value : throw Error(node, "expected a single value");

        public int Integer(YamlNode node, int min, int max)
        {
            string text = Scalar(node);
            if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int value) || value < min || value > max)
            {
                throw Error(node, $"'{text}' is not a whole number from {min} to {max}");
            }

            return value;
        }

        public bool Boolean(YamlNode node)
        {
            string text = Scalar(node);
            return text switch
            {
                "true" or "yes" or "on" => true,
                "false" or "no" or "off" => false,
                _ => throw Error(node, $"'{text}' is not true or false"),
            };
        }

        public IPAddress Address(YamlNode node, string text)
        {
            string trimmed = text.StartsWith('[') && text.EndsWith(']') ? text[1..^1] : text;
            if (!IPAddress.TryParse(trimmed, out var address) || trimmed.Contains('%', StringComparison.Ordinal))
            {
                throw Error(node, $"'{text}' is not an IPv4 or IPv6 address");
            }

            return address;
        }

        public Prefix Prefix(YamlNode node)
        {
            string text = Scalar(node);
            int slash = text.IndexOf('/', StringComparison.Ordinal);
            var address = Address(node, slash < 0 ? text : text[..slash]);
            int max = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128;
            int length = max;
            if (slash >= 0 && (!int.TryParse(text.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out length) || length > max))
            {
                throw Error(node, $"'{text}' has a bad prefix length (0 to {max})");
            }

            return new Prefix(address, length);
        }

        public (ushort Min, ushort Max) PortRange(YamlNode node)
        {
            string text = Scalar(node);
            int dash = text.IndexOf('-', StringComparison.Ordinal);
            if (!TryPort(dash < 0 ? text : text[..dash], out ushort min) || !TryPort(dash < 0 ? text : text[(dash + 1)..], out ushort max) || max < min)
            {
                throw Error(node, $"'{text}' is not a port or a port range (1-65535, low-high)");
            }

            return (min, max);
        }

        private static bool TryPort(string text, out ushort port) =>
            ushort.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port) && port != 0;

        public byte Protocol(YamlNode node)
        {
            string text = Scalar(node);
            return text switch
            {
                "tcp" => 6,
                "udp" => 17,
                "icmp" => 1,
                "icmpv6" or "ipv6-icmp" => 58,
                "gre" => 47,
                "sctp" => 132,
                _ when byte.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out byte number) && number != 0 => number,
                _ => throw Error(node, $"'{text}' is not a protocol (tcp, udp, icmp, icmpv6, gre, sctp or a number 1-255)"),
            };
        }

        /// <summary>A mark mask of eight contiguous bits, in hex (0x00ff0000) or decimal.</summary>
        public uint StateMark(YamlNode node)
        {
            string text = Scalar(node);
            bool parsed = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                ? uint.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint mask)
                : uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out mask);
            uint lowest = mask & (~mask + 1);
            if (!parsed || mask == 0 || mask != (ulong)lowest * 0xff)
            {
                throw Error(node, $"'{text}' is not a state mark mask (eight contiguous bits, e.g. 0x00ff0000)");
            }

            return mask;
        }

        public byte Family(YamlNode node)
        {
            string text = Scalar(node);
            return text switch
            {
                "ipv4" or "inet" => 4,
                "ipv6" or "inet6" => 6,
                "any" or "both" => 0,
                _ => throw Error(node, $"'{text}' is not a family (ipv4, ipv6 or any)"),
            };
        }

        public InterfaceConfig Interface(YamlNode node)
        {
            string? name = null;
            byte[]? mac = null;
            var addresses = new List<Prefix>();
            foreach (var (key, value) in Entries(node, "name", "addresses", "mac"))
            {
                if (key == "mac")
                {
                    mac = Mac(value);
                }
                else if (key == "name")
                {
                    name = Scalar(value);
                    if (name.Length is 0 or > 15 || name.Contains('/', StringComparison.Ordinal) || name.Any(char.IsWhiteSpace))
                    {
                        throw Error(value, $"'{name}' is not a valid interface name (1-15 characters, no '/' or spaces)");
                    }
                }
                else
                {
                    foreach (var item in Sequence(value))
                    {
                        addresses.Add(Prefix(item));
                    }
                }
            }

            return new InterfaceConfig(name ?? throw Error(node, "an interface needs a name:"), addresses, mac, (int)node.Start.Line);
        }

        private byte[] Mac(YamlNode node)
        {
            string text = Scalar(node);
            string[] parts = text.Split(':');
            var mac = new byte[6];
            if (parts.Length != 6)
            {
                throw Error(node, $"'{text}' is not a MAC address (six hex bytes separated by ':')");
            }

            for (int i = 0; i < 6; i++)
            {
                if (parts[i].Length != 2 || !byte.TryParse(parts[i], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out mac[i]))
                {
                    throw Error(node, $"'{text}' is not a MAC address (six hex bytes separated by ':')");
                }
            }

            return mac;
        }

        public RouteConfig Route(YamlNode node)
        {
            Prefix? destination = null;
            string? device = null;
            foreach (var (key, value) in Entries(node, "to", "dev"))
            {
                if (key == "to")
                {
                    destination = Scalar(value) switch
                    {
                        "default" => new Prefix(IPAddress.Any, 0),
                        "default6" => new Prefix(IPAddress.IPv6Any, 0),
                        _ => Prefix(value),
                    };
                }
                else
                {
                    device = Scalar(value);
                }
            }

            return new RouteConfig(
                destination ?? throw Error(node, "a route needs to: (a prefix, default or default6)"),
                device ?? throw Error(node, "a route needs dev: (an interface name)"),
                (int)node.Start.Line);
        }

        public HelperConfig Helper(YamlNode node)
        {
            string? name = null;
            var protocols = new List<byte>();
            var ports = new List<ushort>();
            var options = new Dictionary<string, string>(StringComparer.Ordinal);
            bool loose = false;
            foreach (var (key, value) in Entries(node, "name", "protocol", "ports", "loose", "options"))
            {
                switch (key)
                {
                    case "name":
                        name = Scalar(value);
                        break;
                    case "protocol":
                        // One protocol, or a list for a helper that serves several (protocol: [tcp, udp]).
                        foreach (var item in value is YamlSequenceNode ? Sequence(value) : [value])
                        {
                            byte protocol = Protocol(item);
                            if (protocols.Contains(protocol))
                            {
                                throw Error(item, $"protocol '{Scalar(item)}' is given twice");
                            }

                            protocols.Add(protocol);
                        }

                        if (protocols.Count == 0)
                        {
                            throw Error(value, "protocol: needs at least one protocol (or leave it out for the helper's own)");
                        }

                        break;
                    case "ports":
                        foreach (var item in Sequence(value))
                        {
                            ports.Add((ushort)Integer(item, 1, 65535));
                        }

                        break;
                    case "loose":
                        loose = Boolean(value);
                        break;
                    case "options":
                        options = Options(value);
                        break;
                }
            }

            return new HelperConfig(name ?? throw Error(node, "a helper needs a name: (e.g. ftp)"), protocols.FirstOrDefault(), ports, loose, (int)node.Start.Line)
            {
                Protocols = protocols.Count > 1 ? protocols : [],
                Options = options,
            };
        }

        /// <summary>A helper's <c>options:</c>: a mapping of names to single values, kept as text for the helper to read.</summary>
        private Dictionary<string, string> Options(YamlNode node)
        {
            if (node is not YamlMappingNode mapping)
            {
                throw Error(node, "options: is a mapping of names to values (e.g. options: { timeout: 30 })");
            }

            var options = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (k, v) in mapping.Children)
            {
                string key = Scalar(k);
                if (!options.TryAdd(key, v is YamlScalarNode { Value: { } text } ? text : throw Error(v, $"option '{key}' needs a single value")))
                {
                    throw Error(k, $"option '{key}' is given twice");
                }
            }

            return options;
        }

        public SteeringConfig Steering(YamlNode node)
        {
            var config = new SteeringConfig { Line = (int)node.Start.Line };
            foreach (var (key, value) in Entries(node, "from", "to", "queue-pre", "queue-post", "nat-ports", "protocols", "fail-open", "gso", "flows", "set-prefix", "state-mark", "shards"))
            {
                switch (key)
                {
                    case "from":
                        config = config with { From = [.. Sequence(value).Select(Scalar)] };
                        break;
                    case "to":
                        config = config with { To = [.. Sequence(value).Select(Scalar)] };
                        break;
                    case "queue-pre":
                        config = config with { QueuePre = (ushort)Integer(value, 0, 65535) };
                        break;
                    case "queue-post":
                        config = config with { QueuePost = (ushort)Integer(value, 0, 65535) };
                        break;
                    case "nat-ports":
                        var (min, max) = PortRange(value);
                        config = config with { NatPortMin = min, NatPortMax = max };
                        break;
                    case "protocols":
                        // icmp and icmpv6 name the same choice: ICMP of each family.
                        var protocols = Sequence(value).Select(Protocol).Select(p => p == 58 ? (byte)1 : p).Distinct().ToList();
                        if (protocols.Any(p => p is not (6 or 17 or 1)))
                        {
                            throw Error(value, "steering protocols: tcp, udp and icmp only (the kernel keeps the others, NATed by the rules offloadd gives it)");
                        }

                        config = config with { Protocols = protocols };
                        break;
                    case "fail-open":
                        config = config with { FailOpen = Boolean(value) };
                        break;
                    case "gso":
                        config = config with { Gso = Boolean(value) };
                        break;
                    case "flows":
                        config = config with
                        {
                            Flows = Scalar(value) switch
                            {
                                "all" => SteeredFlows.All,
                                "helpers" => SteeredFlows.Helpers,
                                var other => throw Error(value, $"'{other}' is not a flows choice (all, helpers)"),
                            },
                        };
                        break;
                    case "state-mark":
                        config = config with { StateMark = StateMark(value) };
                        break;
                    case "shards":
                        config = config with { Shards = Scalar(value) == "auto" ? 0 : Integer(value, 1, ShardCount.Max) };
                        break;
                    case "set-prefix":
                        string prefix = Scalar(value);
                        if (prefix.Length is 0 or > 28 || !prefix.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
                        {
                            throw Error(value, $"'{prefix}' is not a set name prefix (1-28 letters, digits, '-' or '_')");
                        }

                        config = config with { SetPrefix = prefix };
                        break;
                }
            }

            return config;
        }

        /// <summary><c>plugins: DIR</c>, or a mapping with <c>directory</c> and the budgets of one call.</summary>
        public PluginsConfig Plugins(YamlNode node)
        {
            if (node is YamlScalarNode)
            {
                return new PluginsConfig(AbsoluteDirectory(node)) { Line = (int)node.Start.Line };
            }

            var config = new PluginsConfig(PluginsConfig.DefaultDirectory) { Line = (int)node.Start.Line };
            foreach (var (key, value) in Entries(node, "directory", "call-budget-ms", "allocation-budget-mib"))
            {
                config = key switch
                {
                    "directory" => config with { Directory = AbsoluteDirectory(value) },
                    "call-budget-ms" => config with { CallBudgetMilliseconds = Integer(value, 1, 10_000) },
                    _ => config with { AllocationBudgetMiB = Integer(value, 1, 4096) },
                };
            }

            return config;
        }

        private string AbsoluteDirectory(YamlNode node)
        {
            string text = Scalar(node);
            if (!text.StartsWith('/'))
            {
                throw Error(node, $"'{text}' is not an absolute directory path (the daemon's working directory is not the configuration's)");
            }

            return text;
        }

        public ConntrackConfig Conntrack(YamlNode node)
        {
            var config = new ConntrackConfig();
            foreach (var (key, value) in Entries(node, "max", "expect-max", "checksum", "tcp-liberal", "tcp-loose", "timeouts"))
            {
                config = key switch
                {
                    "max" => config with { Max = Integer(value, 1, 64 * 1024 * 1024) },
                    "expect-max" => config with { ExpectMax = Integer(value, 1, 1024 * 1024) },
                    "checksum" => config with { Checksum = Boolean(value) },
                    "tcp-liberal" => config with { TcpLiberal = Boolean(value) },
                    "tcp-loose" => config with { TcpLoose = Boolean(value) },
                    _ => Timeouts(value, config),
                };
            }

            return config;
        }

        private ConntrackConfig Timeouts(YamlNode node, ConntrackConfig config)
        {
            const int maxSeconds = 10 * 365 * 24 * 3600;
            foreach (var (key, value) in Entries(node, "tcp-established", "udp", "udp-stream", "icmp", "generic"))
            {
                int seconds = Integer(value, 1, maxSeconds);
                config = key switch
                {
                    "tcp-established" => config with { TcpEstablishedTimeout = seconds },
                    "udp" => config with { UdpTimeout = seconds },
                    "udp-stream" => config with { UdpStreamTimeout = seconds },
                    "icmp" => config with { IcmpTimeout = seconds },
                    _ => config with { GenericTimeout = seconds },
                };
            }

            return config;
        }

        public NatRuleConfig NatRule(YamlNode node)
        {
            NatAction? action = null;
            byte family = 0, protocol = 0;
            Prefix? source = null, destination = null;
            ushort dportMin = 0, dportMax = 0, portMin = 0, portMax = 0;
            string? inInterface = null, outInterface = null;
            IPAddress? toMin = null, toMax = null;
            bool random = false, persistent = false;
            YamlNode? toNode = null, portsNode = null;

            foreach (var (key, value) in Entries(node, "type", "family", "protocol", "source", "destination", "dport", "in", "out", "to", "ports", "random", "persistent"))
            {
                switch (key)
                {
                    case "type":
                        action = Scalar(value) switch
                        {
                            "masquerade" => NatAction.Masquerade,
                            "snat" => NatAction.Snat,
                            "dnat" => NatAction.Dnat,
                            "redirect" => NatAction.Redirect,
                            var other => throw Error(value, $"'{other}' is not a NAT type (masquerade, snat, dnat, redirect)"),
                        };
                        break;
                    case "family": family = Family(value); break;
                    case "protocol": protocol = Protocol(value); break;
                    case "source": source = Prefix(value); break;
                    case "destination": destination = Prefix(value); break;
                    case "dport": (dportMin, dportMax) = PortRange(value); break;
                    case "in": inInterface = Scalar(value); break;
                    case "out": outInterface = Scalar(value); break;
                    case "to":
                        toNode = value;
                        (toMin, toMax) = AddressRange(value);
                        break;
                    case "ports":
                        portsNode = value;
                        (portMin, portMax) = PortRange(value);
                        break;
                    case "random": random = Boolean(value); break;
                    case "persistent": persistent = Boolean(value); break;
                }
            }

            if (action is not { } a)
            {
                throw Error(node, "a NAT rule needs type: (masquerade, snat, dnat or redirect)");
            }

            bool source_ = a is NatAction.Snat or NatAction.Masquerade;
            if (source_ && inInterface is not null)
            {
                throw Error(node, $"{a.ToString().ToLowerInvariant()} is decided after routing: use out:, not in:");
            }

            if (!source_ && outInterface is not null)
            {
                throw Error(node, $"{a.ToString().ToLowerInvariant()} is decided before routing: use in:, not out:");
            }

            if (a is NatAction.Snat or NatAction.Dnat && toMin is null)
            {
                throw Error(node, $"{a.ToString().ToLowerInvariant()} needs to: (an address or a range low-high)");
            }

            if (a is NatAction.Masquerade or NatAction.Redirect && toNode is not null)
            {
                throw Error(toNode, $"{a.ToString().ToLowerInvariant()} takes the interface's own address: no to:");
            }

            if (portsNode is not null && protocol is not (6 or 17 or 132))
            {
                throw Error(portsNode, "ports: needs protocol: tcp, udp or sctp (other protocols have no ports)");
            }

            if (dportMin != 0 && protocol is not (6 or 17 or 132))
            {
                throw Error(node, "dport: needs protocol: tcp, udp or sctp");
            }

            if (toMin is not null)
            {
                byte toFamily = toMin.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? (byte)4 : (byte)6;
                if (family != 0 && family != toFamily)
                {
                    throw Error(toNode!, $"to: is IPv{toFamily} but the rule is for IPv{family}");
                }

                family = toFamily;
            }

            foreach (var prefix in new[] { source, destination })
            {
                if (prefix is { } p && family != 0 && p.Family != family)
                {
                    throw Error(node, $"{p} is IPv{p.Family} but the rule is for IPv{family}");
                }

                if (prefix is { } q && family == 0)
                {
                    family = q.Family;
                }
            }

            return new NatRuleConfig(a, family, protocol, source, destination, dportMin, dportMax, inInterface, outInterface, toMin, toMax, portMin, portMax, random, persistent, (int)node.Start.Line);
        }

        private (IPAddress Min, IPAddress Max) AddressRange(YamlNode node)
        {
            string text = Scalar(node);

            // A dash between two addresses; IPv6 addresses contain no dash, so the split is unambiguous.
            int dash = text.IndexOf('-', StringComparison.Ordinal);
            var min = Address(node, dash < 0 ? text : text[..dash]);
            var max = dash < 0 ? min : Address(node, text[(dash + 1)..]);
            if (min.AddressFamily != max.AddressFamily || InetAddress.Compare(InetAddress.From(min), InetAddress.From(max)) > 0)
            {
                throw Error(node, $"'{text}' is not an address range (low-high, same family)");
            }

            return (min, max);
        }
    }
}
