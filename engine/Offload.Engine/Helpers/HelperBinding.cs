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

    /// <summary>The bindings a helper declares for itself: each of its <see cref="ConntrackHelper.Ports"/>.</summary>
    public static IEnumerable<HelperBinding> Defaults(ConntrackHelper helper) =>
        helper.Ports.Select(port => new HelperBinding(helper, helper.Protocol, port, helper.Family));
}
