using Offload.Alg.Pptp;
using Offload.Alg.Tests.Support;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Pptp.PptpMessages;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Pptp;

/// <summary>
/// The helper's share of a control message's cost on an established session: reading and translating a message
/// allocates nothing (the call state is made once per control connection), measured against the same packets through
/// the same router without the helper; a call's GRE, tracked and translated by the engine, allocates nothing either.
/// </summary>
public class PptpAllocationTests
{
    private static long AllocatedPerPacket(Func<byte[]> send) => Allocations.PerCall(() => send());

    [Fact]
    public void Translating_a_call_clear_request_allocates_nothing_beyond_the_rigs_own_copies()
    {
        long Measure(RouterRig rig)
        {
            var control = new PptpControl(rig, Client, 40000, Server).Started();
            var request = control.FromClient(OutgoingCallRequest(0x1111));
            control.FromServer(OutgoingCallReply(0x2222, Field(request, 0)));
            var message = CallClearRequest(0x1111);
            return AllocatedPerPacket(() => control.FromClient(message));
        }

        long without = Measure(Masquerading());
        long with = Measure(Masquerading(new PptpHelper()));
        Assert.True(with - without <= 16, $"{with} bytes per packet with the helper, {without} without");
    }

    [Fact]
    public void A_calls_gre_allocates_nothing_beyond_the_rigs_own_copies()
    {
        var rig = Masquerading(new PptpHelper());
        var control = new PptpControl(rig, Client, 40000, Server).Started();
        var request = control.FromClient(OutgoingCallRequest(0x1111));
        control.FromServer(OutgoingCallReply(0x2222, Field(request, 0)));
        var outward = Gre(Client, Server, 0x2222);
        var inward = Gre(Server, WanAddress, control.SeenPort);
        rig.PassOut(outward);
        long gre = AllocatedPerPacket(() => rig.PassIn(inward));

        var plain = Masquerading();
        var udp = UdpPacket(Client, 5000, Server, 5000, [1, 2, 3, 4, 5, 6, 7, 8]); // as long as the GRE packet
        var sent = plain.PassOut(udp);
        var back = UdpPacket(Server, 5000, WanAddress, SourcePort(sent), [1, 2, 3, 4, 5, 6, 7, 8]);
        long udpCost = AllocatedPerPacket(() => plain.PassIn(back));
        Assert.True(gre - udpCost <= 16, $"{gre} bytes per GRE packet, {udpCost} per UDP packet");
    }
}
