using System.Net;
using Offload.Daemon;
using Offload.Engine.Packets;
using Xunit;

namespace Offload.Daemon.Tests;

/// <summary>
/// The live interface table answers the engine's route question as the kernel's link-scope routes would: the
/// interface whose connected subnet holds a destination, and none for one of the host's own addresses (its local
/// route). Checked on the loopback interface, which every Linux host has (127.0.0.1/8).
/// </summary>
public sealed class LiveNetworkInterfacesTests
{
    [Fact]
    public void An_address_in_the_loopback_subnet_routes_out_lo_and_the_hosts_own_address_routes_nowhere()
    {
        using var interfaces = new LiveNetworkInterfaces();
        int lo = interfaces.IndexOf("lo");
        Assert.NotEqual(0, lo);

        Assert.Equal(lo, interfaces.RouteOut(4, InetAddress.From(IPAddress.Parse("127.0.0.2"))));
        Assert.Equal(0, interfaces.RouteOut(4, InetAddress.From(IPAddress.Parse("127.0.0.1"))));
        Assert.Equal(0, interfaces.RouteOut(6, InetAddress.From(IPAddress.Parse("127.0.0.2"))));
    }
}
