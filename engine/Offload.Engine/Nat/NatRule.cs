using Offload.Engine.Packets;

namespace Offload.Engine.Nat;

/// <summary>The NAT targets, as iptables names them.</summary>
public enum NatAction : byte
{
    /// <summary>Source NAT to a configured address range (iptables SNAT).</summary>
    Snat,

    /// <summary>Source NAT to the outgoing interface's own address (iptables MASQUERADE).</summary>
    Masquerade,

    /// <summary>Destination NAT to a configured address range (iptables DNAT).</summary>
    Dnat,

    /// <summary>Destination NAT to the incoming interface's own address (iptables REDIRECT).</summary>
    Redirect,
}

/// <summary>
/// One NAT rule: what a connection's first packet must match, and how it is translated. Rules are
/// consulted once per connection, in order, at the hook of their manip type; the first match wins.
/// </summary>
public sealed class NatRule
{
    public NatAction Action { get; init; }

    /// <summary>4, 6, or 0 for both.</summary>
    public byte Family { get; init; }

    /// <summary>IP protocol number, or 0 for any.</summary>
    public byte Protocol { get; init; }

    public InetAddress SourceNetwork { get; init; }

    /// <summary>Prefix length of <see cref="SourceNetwork"/>, or -1 for any source.</summary>
    public int SourcePrefixLength { get; init; } = -1;

    public InetAddress DestinationNetwork { get; init; }

    /// <summary>Prefix length of <see cref="DestinationNetwork"/>, or -1 for any destination.</summary>
    public int DestinationPrefixLength { get; init; } = -1;

    /// <summary>First destination port matched (with <see cref="DestinationPortMax"/>), or 0 for any.</summary>
    public ushort DestinationPortMin { get; init; }

    public ushort DestinationPortMax { get; init; }

    /// <summary>Interface the packet came in on (DNAT, REDIRECT), or 0 for any.</summary>
    public int InInterface { get; init; }

    /// <summary>Interface the packet goes out on (SNAT, MASQUERADE), or 0 for any.</summary>
    public int OutInterface { get; init; }

    /// <summary>
    /// Where to map to. For SNAT and DNAT: addresses and optionally ports. For MASQUERADE and REDIRECT:
    /// ports only (the address comes from the interface).
    /// </summary>
    public NatRange Range { get; init; }

    /// <summary>Where the rule came from, for messages (e.g. a configuration file line).</summary>
    public string? Origin { get; init; }

    public ManipType Manip => Action is NatAction.Snat or NatAction.Masquerade ? ManipType.Source : ManipType.Destination;

    /// <summary>True when a connection's original tuple and interfaces match this rule.</summary>
    public bool Matches(in ConnTuple tuple, int inInterface, int outInterface)
    {
        if (Family != 0 && Family != tuple.Family)
        {
            return false;
        }

        if (Protocol != 0 && Protocol != tuple.Protocol)
        {
            return false;
        }

        if (InInterface != 0 && InInterface != inInterface)
        {
            return false;
        }

        if (OutInterface != 0 && OutInterface != outInterface)
        {
            return false;
        }

        if (SourcePrefixLength >= 0 && !tuple.Source.IsInPrefix(tuple.Family, SourceNetwork, SourcePrefixLength))
        {
            return false;
        }

        if (DestinationPrefixLength >= 0 && !tuple.Destination.IsInPrefix(tuple.Family, DestinationNetwork, DestinationPrefixLength))
        {
            return false;
        }

        if (DestinationPortMin != 0 || DestinationPortMax != 0)
        {
            if (tuple.IsIcmp || tuple.DestinationPort < DestinationPortMin || tuple.DestinationPort > DestinationPortMax)
            {
                return false;
            }
        }

        return true;
    }
}
