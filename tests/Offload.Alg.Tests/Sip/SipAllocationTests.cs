using Offload.Alg.Sip;
using Offload.Alg.Tests.Support;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Sip.SipText;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Sip;

/// <summary>
/// The helper's share of a message's cost on an established call flow: parsing and rewriting allocate nothing (the
/// edits live in a per-thread scratch, the call state is made once per flow), measured against the same packets
/// through the same router without the helper.
/// </summary>
public class SipAllocationTests
{
    [Fact]
    public void Translating_an_ipv4_message_allocates_nothing_beyond_the_rewritten_packet()
    {
        // An OPTIONS from the phone: Via, From and Contact rewritten every time; no SDP, so no expectation is made.
        var packet = UdpPacket(Client, 5060, Server, 5060, Ascii(Invite(Client, 5060, Server, "", method: "OPTIONS")));
        long without = Allocations.PerPacket(Masquerading(), packet);
        long with = Allocations.PerPacket(Masquerading(new SipHelper()), packet);
        // Measured equal (3224 bytes per packet, the rig's own copies and hop records); the margin only absorbs a runtime
        // that counts a few bytes differently, far below one allocation of the helper's.
        Assert.True(with - without <= 16, $"{with} bytes per packet with the helper, {without} without");
    }
}
