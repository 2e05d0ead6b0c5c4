using Offload.Engine.Conntrack;

namespace Offload.Engine.Helpers;

/// <summary>
/// Which new connections a helper is attached to: by protocol and original destination port, and optionally
/// by the original destination address under a prefix (the tuple-and-mask form of <c>-j CT --helper</c> rules).
/// </summary>
public sealed record HelperBinding(ConntrackHelper Helper, byte Protocol, ushort Port, byte Family = 0)
{
    /// <summary>The destination network the binding is limited to (with <see cref="DestinationPrefixLength"/>).</summary>
    public InetAddress Destination { get; init; }

    /// <summary>Leading bits of the destination that must match <see cref="Destination"/>; -1 for any destination.</summary>
    public int DestinationPrefixLength { get; init; } = -1;

    public bool Matches(in ConnTuple tuple) =>
        tuple.Protocol == Protocol
        && tuple.DestinationPort == Port
        && (Family == 0 || Family == tuple.Family)
        && (DestinationPrefixLength < 0 || (tuple.Family == Family && tuple.Destination.IsInPrefix(tuple.Family, Destination, DestinationPrefixLength)));

    /// <summary>The bindings a helper declares for itself: each of its <see cref="ConntrackHelper.Ports"/> for each of its <see cref="ConntrackHelper.Protocols"/>.</summary>
    public static IEnumerable<HelperBinding> Defaults(ConntrackHelper helper) =>
        helper.Protocols.SelectMany(protocol => helper.Ports.Select(port => new HelperBinding(helper, protocol, port, helper.Family)));

    /// <summary>
    /// Two bindings of different helpers that would claim the same new connections (same protocol and port, families
    /// and destinations that overlap), or null. The engine binds the first that matches, so the second would silently
    /// help nothing: a configuration or a load that does this is refused instead.
    /// </summary>
    public static (HelperBinding First, HelperBinding Second)? FindClash(IReadOnlyList<HelperBinding> bindings)
    {
        for (int i = 0; i < bindings.Count; i++)
        {
            for (int j = i + 1; j < bindings.Count; j++)
            {
                var (a, b) = (bindings[i], bindings[j]);
                if (a.Protocol == b.Protocol && a.Port == b.Port && a.Helper.Name != b.Helper.Name
                    && (a.Family == 0 || b.Family == 0 || a.Family == b.Family) && DestinationsOverlap(a, b))
                {
                    return (a, b);
                }
            }
        }

        return null;
    }

    private static bool DestinationsOverlap(HelperBinding a, HelperBinding b)
    {
        if (a.DestinationPrefixLength < 0 || b.DestinationPrefixLength < 0)
        {
            return true;
        }

        // Two prefixes overlap when the shorter holds the longer's network.
        var (wide, narrow) = a.DestinationPrefixLength <= b.DestinationPrefixLength ? (a, b) : (b, a);
        return wide.Family == narrow.Family && narrow.Destination.IsInPrefix(wide.Family, wide.Destination, wide.DestinationPrefixLength);
    }

    /// <summary>
    /// Tells each helper the protocols and ports it is bound to now (<see cref="ConntrackHelper.BoundPorts"/>): those of
    /// <paramref name="current"/>, and none for a helper of <paramref name="previous"/> that is bound no more.
    /// </summary>
    internal static void Publish(IEnumerable<HelperBinding> previous, IReadOnlyList<HelperBinding> current)
    {
        var bound = new Dictionary<ConntrackHelper, List<HelperPort>>(ReferenceEqualityComparer.Instance);
        foreach (var binding in current)
        {
            if (!bound.TryGetValue(binding.Helper, out var ports))
            {
                bound[binding.Helper] = ports = [];
            }

            var port = new HelperPort(binding.Protocol, binding.Port);
            if (!ports.Contains(port))
            {
                ports.Add(port);
            }
        }

        foreach (var binding in previous)
        {
            if (!bound.ContainsKey(binding.Helper))
            {
                binding.Helper.BoundPortList = [];
            }
        }

        foreach (var (helper, ports) in bound)
        {
            helper.BoundPortList = [.. ports];
        }
    }
}
