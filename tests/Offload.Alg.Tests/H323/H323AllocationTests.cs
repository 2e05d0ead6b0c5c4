using Offload.Alg.H323;
using Offload.Alg.Tests.Support;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.H323;

/// <summary>
/// The helper's share of a message's cost: the PER walk and a rewrite allocate nothing (findings live on the stack),
/// measured against the same packets through the same router without the helper.
/// </summary>
public class H323AllocationTests
{
    private static long AllocatedPerPacket(RouterRig rig, byte[] packet) => Allocations.PerPacket(rig, packet);

    [Fact]
    public void Decoding_and_translating_an_admission_request_allocates_nothing_beyond_the_rewritten_packet()
    {
        // Its srcCallSignalAddress is rewritten every time; it expects nothing.
        var packet = UdpPacket(Client, 1719, Server, 1719, H323Messages.AdmissionRequest(("192.0.2.99", 1720), (Client, 1720)).ToArray());
        long without = AllocatedPerPacket(Masquerading(), packet);
        var rig = Masquerading(new H323RasHelper());
        long with = AllocatedPerPacket(rig, packet);
        Assert.NotEqual(Payload(packet), Payload(rig.Out(packet).Packet)); // it was rewritten
        Assert.True(with - without <= 16, $"{with} bytes per packet with the helper, {without} without");
    }
}
