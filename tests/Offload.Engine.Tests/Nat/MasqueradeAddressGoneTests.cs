using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Nat;

/// <summary>When an interface loses the address MASQUERADE used, the flows translated to it go (as in the kernel); others stay.</summary>
public sealed class MasqueradeAddressGoneTests
{
    [Fact]
    public void Masqueraded_flows_go_with_their_address_and_the_rest_stay()
    {
        var rig = new RouterRig(
        [
            new NatRule { Action = NatAction.Snat, Protocol = IpProtocol.Udp, Range = NatRange.ToAddress(InetAddress.From(System.Net.IPAddress.Parse(WanAddress2))) },
            new NatRule { Action = NatAction.Masquerade, OutInterface = Wan },
        ]);
        rig.PassOut(TcpPacket(Client, 40000, Server, 80));
        rig.PassOut(TcpPacket(Client2, 40001, Server, 80));
        rig.PassOut(UdpPacket(Client, 5000, Server, 53, "q"u8.ToArray()));
        Assert.Equal(3, rig.Engine.Connections.Count);

        var wan = InetAddress.From(System.Net.IPAddress.Parse(WanAddress));

        // Nothing vanished: nothing goes.
        Assert.Equal(0, rig.Engine.ForgetMasqueradedToGoneAddresses((_, _, _) => true));
        Assert.Equal(3, rig.Engine.Connections.Count);

        // The WAN address vanished: both masqueraded TCP flows go; the SNAT'd UDP flow (not masqueraded) stays.
        int removed = rig.Engine.ForgetMasqueradedToGoneAddresses((index, family, address) => !(index == Wan && family == 4 && address == wan));
        Assert.Equal(2, removed);
        Assert.Equal(1, rig.Engine.Connections.Count);
        Assert.Equal(IpProtocol.Udp, rig.Engine.Connections.Entries().Single().Original.Protocol);
        Assert.Equal(2, rig.Engine[EngineCounter.ConnectionsMasqueradeGone]);
    }
}
