using Offload.Engine.Packets;

namespace Offload.Engine.Routing;

/// <summary>
/// What the engine needs to know of the router's interfaces: their names (for rules) and their
/// addresses (for MASQUERADE and REDIRECT). A live daemon keeps it current from rtnetlink; a replay
/// fills it from its configuration.
/// </summary>
public interface INetworkInterfaces
{
    /// <summary>The interface index of a name, or 0 when unknown.</summary>
    int IndexOf(string name);

    /// <summary>
    /// The address MASQUERADE uses on <paramref name="interfaceIndex"/> for a family (the kernel picks the primary
    /// address of the outgoing interface in the next hop's scope). False when the interface has none.
    /// </summary>
    bool TryGetPrimaryAddress(int interfaceIndex, byte family, InetAddress nextHop, out InetAddress address);

    /// <summary>
    /// The interface whose connected subnet holds <paramref name="destination"/> (the kernel's link-scope route; the
    /// longest prefix wins), or 0 when none does or the destination is one of the router's own addresses (the kernel's
    /// local route: such a packet is delivered, never routed out).
    /// </summary>
    /// <remarks>
    /// The engine asks it only for a new connection queued before routing (no out interface yet), to match the
    /// SNAT/MASQUERADE rules that name one: a hairpin flow DNAT'd to a host on a LAN. Routes beyond connected subnets
    /// (gateways, policy routing) are not consulted. The default answers 0: such rules then never match before routing.
    /// </remarks>
    int RouteOut(byte family, InetAddress destination) => 0;

    /// <summary>
    /// True when <paramref name="address"/> is one of the router's own. The engine asks it only for a new connection to
    /// a port of its NAT range, which it drops when nothing it knows explains it. The default answers false.
    /// </summary>
    bool IsLocal(byte family, InetAddress address) => false;
}

/// <summary>Lookups every interface table offers beyond the engine's needs.</summary>
public static class NetworkInterfacesExtensions
{
    /// <summary>True when <paramref name="interfaceIndex"/> has <paramref name="address"/> (its primary address for that address is itself).</summary>
    public static bool HasAddress(this INetworkInterfaces interfaces, int interfaceIndex, byte family, InetAddress address) =>
        interfaces.TryGetPrimaryAddress(interfaceIndex, family, address, out var found) && found == address;

    /// <summary>True when the addresses of one interface include <paramref name="address"/>.</summary>
    public static bool Holds(ReadOnlySpan<(InetAddress Address, byte Family, int PrefixLength)> addresses, byte family, InetAddress address)
    {
        foreach (var (candidate, candidateFamily, _) in addresses)
        {
            if (candidateFamily == family && candidate == address)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// The address an interface with <paramref name="addresses"/> uses towards <paramref name="nextHop"/>: the one whose
    /// subnet holds the next hop, else the first of the family (the kernel's choice for MASQUERADE, simplified).
    /// </summary>
    public static bool TryChoosePrimary(ReadOnlySpan<(InetAddress Address, byte Family, int PrefixLength)> addresses, byte family, InetAddress nextHop, out InetAddress address)
    {
        address = default;
        bool found = false;
        foreach (var (candidate, candidateFamily, prefix) in addresses)
        {
            if (candidateFamily != family)
            {
                continue;
            }

            if (nextHop.IsInPrefix(family, candidate, prefix))
            {
                address = candidate;
                return true;
            }

            if (!found)
            {
                address = candidate;
                found = true;
            }
        }

        return found;
    }
}

/// <summary>
/// Finds <see cref="INetworkInterfaces.RouteOut"/>'s answer over interfaces given one at a time: call
/// <see cref="Consider"/> with each interface's addresses, then read <see cref="Interface"/>. A struct: nothing is allocated.
/// </summary>
public struct ConnectedRouteSearch
{
    private readonly byte _family;
    private readonly InetAddress _destination;
    private int _bestPrefix;
    private int _best;
    private bool _local;

    public ConnectedRouteSearch(byte family, InetAddress destination)
    {
        _family = family;
        _destination = destination;
        _bestPrefix = -1;
    }

    /// <summary>The interface found so far: the longest connected prefix holding the destination; 0 for none, or for a local destination.</summary>
    public readonly int Interface => _local ? 0 : _best;

    /// <summary>Weighs the addresses of interface <paramref name="interfaceIndex"/>.</summary>
    public void Consider(int interfaceIndex, ReadOnlySpan<(InetAddress Address, byte Family, int PrefixLength)> addresses)
    {
        foreach (var (address, family, prefix) in addresses)
        {
            if (family != _family)
            {
                continue;
            }

            if (address == _destination)
            {
                _local = true;
            }
            else if (prefix > _bestPrefix && _destination.IsInPrefix(family, address, prefix))
            {
                _bestPrefix = prefix;
                _best = interfaceIndex;
            }
        }
    }
}

/// <summary>A fixed set of interfaces, for replays and tests.</summary>
public sealed class StaticNetworkInterfaces : INetworkInterfaces
{
    private readonly List<Entry> _entries = [];

    /// <summary>Adds an interface with its addresses (prefix lengths let the right one be chosen per next hop).</summary>
    public int Add(string name, params (InetAddress Address, byte Family, int PrefixLength)[] addresses)
    {
        _entries.Add(new Entry(name, addresses));
        return _entries.Count;
    }

    public int IndexOf(string name)
    {
        for (int i = 0; i < _entries.Count; i++)
        {
            if (_entries[i].Name == name)
            {
                return i + 1;
            }
        }

        return 0;
    }

    public string? NameOf(int index) => index >= 1 && index <= _entries.Count ? _entries[index - 1].Name : null;

    public bool TryGetPrimaryAddress(int interfaceIndex, byte family, InetAddress nextHop, out InetAddress address)
    {
        address = default;
        return interfaceIndex >= 1 && interfaceIndex <= _entries.Count
            && NetworkInterfacesExtensions.TryChoosePrimary(_entries[interfaceIndex - 1].Addresses, family, nextHop, out address);
    }

    public int RouteOut(byte family, InetAddress destination)
    {
        var search = new ConnectedRouteSearch(family, destination);
        for (int i = 0; i < _entries.Count; i++)
        {
            search.Consider(i + 1, _entries[i].Addresses);
        }

        return search.Interface;
    }

    /// <summary>True when <paramref name="address"/> is one of the router's own.</summary>
    public bool IsLocal(byte family, InetAddress address)
    {
        foreach (var entry in _entries)
        {
            if (NetworkInterfacesExtensions.Holds(entry.Addresses, family, address))
            {
                return true;
            }
        }

        return false;
    }

    private sealed record Entry(string Name, (InetAddress Address, byte Family, int PrefixLength)[] Addresses);
}
