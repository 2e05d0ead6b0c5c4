using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Offload.Engine.Packets;
using Offload.Engine.Routing;

namespace Offload.Daemon;

/// <summary>
/// The router's interfaces as the system has them now, by kernel ifindex (what NFQUEUE reports), kept current
/// when addresses change. The framework's NetworkInterface listens to rtnetlink for us.
/// </summary>
internal sealed class LiveNetworkInterfaces : INetworkInterfaces, IDisposable
{
    private volatile Snapshot _snapshot;

    public LiveNetworkInterfaces()
    {
        _snapshot = Read();
        NetworkChange.NetworkAddressChanged += OnChanged;
    }

    /// <summary>Raised after the snapshot was refreshed (addresses or links changed).</summary>
    public event Action? Changed;

    public int IndexOf(string name) => _snapshot.ByName.TryGetValue(name, out var entry) ? entry.Index : 0;

    public string? NameOf(int index) => _snapshot.ByIndex.TryGetValue(index, out var entry) ? entry.Name : null;

    public bool TryGetPrimaryAddress(int interfaceIndex, byte family, InetAddress nextHop, out InetAddress address)
    {
        address = default;
        return _snapshot.ByIndex.TryGetValue(interfaceIndex, out var entry)
            && NetworkInterfacesExtensions.TryChoosePrimary(CollectionsMarshal.AsSpan(entry.Addresses), family, nextHop, out address);
    }

    public int RouteOut(byte family, InetAddress destination)
    {
        var search = new ConnectedRouteSearch(family, destination);
        foreach (var entry in _snapshot.ByIndex.Values)
        {
            search.Consider(entry.Index, CollectionsMarshal.AsSpan(entry.Addresses));
        }

        return search.Interface;
    }

    public bool IsLocal(byte family, InetAddress address)
    {
        foreach (var entry in _snapshot.ByIndex.Values)
        {
            if (NetworkInterfacesExtensions.Holds(CollectionsMarshal.AsSpan(entry.Addresses), family, address))
            {
                return true;
            }
        }

        return false;
    }

    public void Dispose() => NetworkChange.NetworkAddressChanged -= OnChanged;

    private void OnChanged(object? sender, EventArgs e)
    {
        _snapshot = Read();
        Changed?.Invoke();
    }

    private static Snapshot Read()
    {
        var byName = new Dictionary<string, Entry>(StringComparer.Ordinal);
        var byIndex = new Dictionary<int, Entry>();
        foreach (var ni in NetworkInterface.GetAllNetworkInterfaces())
        {
            int index = IndexOf(ni);
            if (index <= 0)
            {
                continue;
            }

            var addresses = new List<(InetAddress, byte, int)>();
            foreach (var unicast in ni.GetIPProperties().UnicastAddresses)
            {
                var a = unicast.Address;
                if (a.AddressFamily == AddressFamily.InterNetworkV6 && (a.IsIPv6LinkLocal || a.IsIPv6Multicast))
                {
                    continue; // Never a NAT address.
                }

                byte family = a.AddressFamily == AddressFamily.InterNetwork ? (byte)4 : (byte)6;
                addresses.Add((InetAddress.From(a), family, unicast.PrefixLength));
            }

            var entry = new Entry(ni.Name, index, addresses);
            byName[ni.Name] = entry;
            byIndex[index] = entry;
        }

        return new Snapshot(byName, byIndex);
    }

    private static int IndexOf(NetworkInterface ni)
    {
        var properties = ni.GetIPProperties();
        try
        {
            return properties.GetIPv4Properties()?.Index ?? properties.GetIPv6Properties()?.Index ?? 0;
        }
        catch (NetworkInformationException)
        {
            try
            {
                return properties.GetIPv6Properties()?.Index ?? 0;
            }
            catch (NetworkInformationException)
            {
                return 0;
            }
        }
    }

    private sealed record Entry(string Name, int Index, List<(InetAddress Address, byte Family, int Prefix)> Addresses);

    private sealed record Snapshot(Dictionary<string, Entry> ByName, Dictionary<int, Entry> ByIndex);
}
