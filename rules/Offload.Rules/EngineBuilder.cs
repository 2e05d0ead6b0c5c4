using Offload.Engine;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Offload.Engine.Routing;

namespace Offload.Rules;

/// <summary>Turns a configuration into the engine's options.</summary>
public static class EngineBuilder
{
    /// <summary>Creates the helper named in a configuration entry, or returns null when the name is unknown.</summary>
    public delegate ConntrackHelper? HelperFactory(HelperConfig config);

    /// <summary>The interfaces of a configuration, with their addresses, as a fixed table.</summary>
    public static StaticNetworkInterfaces Interfaces(OffloadConfig config)
    {
        var interfaces = new StaticNetworkInterfaces();
        foreach (var i in config.Interfaces)
        {
            interfaces.Add(i.Name, [.. i.Addresses.Select(a => (InetAddress.From(a.Address), a.Family, a.Length))]);
        }

        return interfaces;
    }

    /// <param name="config">The configuration.</param>
    /// <param name="interfaces">Name-to-index and address knowledge (a replay's static table, or the live one).</param>
    /// <param name="helpers">Creates helpers by name.</param>
    /// <param name="deterministicSeed">Non-zero for a replay: fixes the hash key and the port search.</param>
    /// <param name="helperInvoker">How helper code is called (null: directly); offloadd runs plugins under budgets.</param>
    public static EngineOptions Build(OffloadConfig config, INetworkInterfaces interfaces, HelperFactory helpers, ulong deterministicSeed = 0, IHelperInvoker? helperInvoker = null)
    {
        var c = config.Conntrack;
        var tcp = new TcpTrackerSettings { BeLiberal = c.TcpLiberal, Loose = c.TcpLoose };
        if (c.TcpEstablishedTimeout is { } established)
        {
            tcp.EstablishedTimeout = established;
        }

        var bindings = new List<HelperBinding>();
        foreach (var h in config.Helpers)
        {
            var helper = helpers(h) ?? throw new ConfigException(config.Source, h.Line, 1, $"unknown helper '{h.Name}'");
            Configure(config, h, helper);
            var ports = h.PortsOf(helper);
            if (ports.Count == 0)
            {
                throw new ConfigException(config.Source, h.Line, 1, $"helper '{h.Name}' needs ports:");
            }

            foreach (byte protocol in h.ProtocolsOf(helper))
            {
                foreach (var port in ports)
                {
                    bindings.Add(new HelperBinding(helper, protocol, port));
                }
            }
        }

        if (HelperBinding.FindClash(bindings) is var (first, second))
        {
            // The engine would bind the first and the second would silently help nothing.
            var entry = config.Helpers.LastOrDefault(h => h.Name == second.Helper.Name);
            throw new ConfigException(config.Source, entry?.Line ?? 0, 1,
                $"helpers '{first.Helper.Name}' and '{second.Helper.Name}' both claim {new HelperPort(first.Protocol, first.Port)}: give one of them other ports:");
        }

        return new EngineOptions
        {
            MaxConnections = c.Max,
            MaxExpectations = c.ExpectMax,
            ValidateChecksums = c.Checksum,
            Tcp = tcp,
            UdpTimeout = c.UdpTimeout is { } udp ? TimeSpan.FromSeconds(udp) : TimeSpan.FromSeconds(30),
            UdpStreamTimeout = c.UdpStreamTimeout is { } stream ? TimeSpan.FromSeconds(stream) : TimeSpan.FromSeconds(120),
            IcmpTimeout = c.IcmpTimeout is { } icmp ? TimeSpan.FromSeconds(icmp) : TimeSpan.FromSeconds(30),
            GenericTimeout = c.GenericTimeout is { } generic ? TimeSpan.FromSeconds(generic) : TimeSpan.FromSeconds(600),
            NatRules = [.. config.Nat.Select(r => ToRule(r, interfaces, config.Steering))],
            NatPortMin = config.Steering?.NatPortMin ?? 0,
            NatPortMax = config.Steering?.NatPortMax ?? 0,
            Helpers = bindings,
            HelperInvoker = helperInvoker,
            Interfaces = interfaces,
            HashKey = deterministicSeed,
            RandomSeed = deterministicSeed,
        };
    }

    /// <summary>Hands a helper its entry's options; a helper that refuses them fails the configuration at the entry's line.</summary>
    private static void Configure(OffloadConfig config, HelperConfig entry, ConntrackHelper helper)
    {
        try
        {
            helper.Configure(entry.Options);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException)
        {
            // An ArgumentException's message ends with its parameter's name, which tells the user nothing.
            string message = e is ArgumentException { ParamName: { } parameter } ? e.Message.Replace($" (Parameter '{parameter}')", "", StringComparison.Ordinal) : e.Message;
            throw new ConfigException(config.Source, entry.Line, 1, $"helper '{entry.Name}': {message}");
        }
    }

    /// <summary>0 for "any interface"; -1, which matches nothing, for a named interface that does not exist (yet).</summary>
    private static int InterfaceIndex(string? name, INetworkInterfaces interfaces) =>
        name is null ? 0 : interfaces.IndexOf(name) is > 0 and var index ? index : -1;

    private static NatRule ToRule(NatRuleConfig r, INetworkInterfaces interfaces, SteeringConfig? steering)
    {
        // A live daemon's source NAT stays inside its own port range: that is how the replies find their way back
        // to its queue, and how its translations never collide with the kernel's NAT of other flows.
        if (steering is not null && r.Action is NatAction.Snat or NatAction.Masquerade && r.PortMin == 0)
        {
            r = r with { PortMin = steering.NatPortMin, PortMax = steering.NatPortMax };
        }

        var flags = NatRangeFlags.None;
        InetAddress min = default, max = default;
        if (r.ToMin is not null)
        {
            flags |= NatRangeFlags.MapIps;
            min = InetAddress.From(r.ToMin);
            max = InetAddress.From(r.ToMax!);
        }

        if (r.PortMin != 0)
        {
            flags |= NatRangeFlags.ProtoSpecified;
        }

        if (r.Random)
        {
            flags |= NatRangeFlags.ProtoRandomAll;
        }

        if (r.Persistent)
        {
            flags |= NatRangeFlags.Persistent;
        }

        return new NatRule
        {
            Action = r.Action,
            Family = r.Family,
            Protocol = r.Protocol,
            SourceNetwork = r.Source is { } s ? InetAddress.From(s.Address) : default,
            SourcePrefixLength = r.Source?.Length ?? -1,
            DestinationNetwork = r.Destination is { } d ? InetAddress.From(d.Address) : default,
            DestinationPrefixLength = r.Destination?.Length ?? -1,
            DestinationPortMin = r.DestinationPortMin,
            DestinationPortMax = r.DestinationPortMax,
            InInterface = InterfaceIndex(r.InInterface, interfaces),
            OutInterface = InterfaceIndex(r.OutInterface, interfaces),
            Range = new NatRange(flags, min, max, r.PortMin, r.PortMax),
            Origin = $"line {r.Line}",
        };
    }
}
