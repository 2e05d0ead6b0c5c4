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
}

/// <summary>Lookups every interface table offers beyond the engine's needs.</summary>
public static class NetworkInterfacesExtensions
{
    /// <summary>True when <paramref name="interfaceIndex"/> has <paramref name="address"/> (its primary address for that address is itself).</summary>
    public static bool HasAddress(this INetworkInterfaces interfaces, int interfaceIndex, byte family, InetAddress address) =>
        interfaces.TryGetPrimaryAddress(interfaceIndex, family, address, out var found) && found == address;

    /// <summary>
    /// The address an interface with <paramref name="addresses"/> uses towards <paramref name="nextHop"/>: the one whose
    /// subnet holds the next hop, else the first of the family (the kernel's choice for MASQUERADE, simplified).
    /// </summary>
    public static bool TryChoosePrimary(IEnumerable<(InetAddress Address, byte Family, int PrefixLength)> addresses, byte family, InetAddress nextHop, out InetAddress address)
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

    /// <summary>True when <paramref name="address"/> is one of the router's own.</summary>
    public bool IsLocal(byte family, InetAddress address)
    {
        foreach (var entry in _entries)
        {
            foreach (var (candidate, candidateFamily, _) in entry.Addresses)
            {
                if (candidateFamily == family && candidate == address)
                {
                    return true;
                }
            }
        }

        return false;
    }

    private sealed record Entry(string Name, (InetAddress Address, byte Family, int PrefixLength)[] Addresses);
}
