using Offload.Engine.Conntrack;
using Offload.Engine.Nat;
using Offload.Engine.Tests.Nat;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Conntrack;

/// <summary>
/// A listing's copy of a connection (<see cref="ConnectionView"/>), taken under the engine's lock and formatted after
/// it: it reads as <c>conntrack -L</c> does for the entry as it was when copied, whatever the engine does to the entry
/// afterwards.
/// </summary>
public class ConnectionViewTests
{
    [Fact]
    public void A_view_formats_as_its_connection_and_keeps_what_it_copied()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan, Family = 4 }]);
        var sent = rig.Live(UdpPacket(Client, 5000, Server, 53, Ascii("q")), Lan, Wan);
        var connection = sent.Connection!;
        long now = rig.Engine.Clock.NowNanoseconds;

        var view = ConnectionView.Of(connection!.Value);
        string line = ConnectionFormatter.Format(view, now);
        Assert.Equal(ConnectionFormatter.Format(connection!.Value, now), line);
        Assert.StartsWith("ipv4     2 udp      17 30 ", line, StringComparison.Ordinal);
        Assert.Contains("[UNREPLIED]", line, StringComparison.Ordinal);

        // The reply changes the entry, not the copy.
        rig.Live(UdpPacket(Server, 53, WanAddress, SourcePort(sent.Packet), Ascii("a")), Wan, Lan);
        Assert.DoesNotContain("[UNREPLIED]", ConnectionFormatter.Format(connection!.Value, now), StringComparison.Ordinal);
        Assert.Equal(line, ConnectionFormatter.Format(view, now));
    }
}
