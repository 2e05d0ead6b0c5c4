using Offload.Alg.Rtsp;
using Offload.Alg.Tests.Support;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Rtsp.RtspText;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Rtsp;

/// <summary>
/// The helper's share of a message's cost on an established control connection: framing a message and reading its
/// Transport header allocate nothing (the state is made once per connection, the edits live in a per-thread scratch),
/// measured against the same packets through the same router without the helper.
/// </summary>
public class RtspAllocationTests
{
    private static long AllocatedPerPacket(Control control, byte[] payload) => Allocations.PerCall(() => control.FromClient(payload));

    [Fact]
    public void Reading_requests_with_a_transport_allocates_nothing_beyond_the_rig()
    {
        // A SETUP answered by nothing, for an interleaved transport: framed and its Transport read every time, no
        // expectation made (that allocates in the engine, as it should).
        var payload = Ascii(Setup("RTP/AVP/TCP;unicast;interleaved=0-1"));
        long without = AllocatedPerPacket(Control.Masqueraded(new NullHelper()), payload);
        long with = AllocatedPerPacket(Control.Masqueraded(), payload);
        Assert.True(with - without <= 16, $"{with} bytes per packet with the helper, {without} without");
    }

    /// <summary>A helper bound to the same port that does nothing: the same router, the same connection.</summary>
    private sealed class NullHelper : ConntrackHelper
    {
        public NullHelper()
            : base("rtsp", RtspHelper.DefaultPolicy) => Ports = [554];

        public override HelperVerdict Help(ref HelperContext context) => HelperVerdict.Accept;
    }
}
