using Offload.Alg.Rpc;
using Offload.Alg.Tests.Support;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Rpc.RpcMessages;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Rpc;

/// <summary>
/// The helper's share of a packet's cost once its connection's state exists: reading calls and answers (a record of
/// several fragments joined in the per-thread scratch included) allocates nothing, measured against the same packets
/// through the same router without the helper.
/// </summary>
public class RpcAllocationTests
{
    private static long AllocatedPerPacket(RouterRig rig, byte[] call, byte[] answer)
    {
        var first = rig.Out(UdpPacket(Client, 40000, Server, 111, call));
        var back = UdpPacket(Server, 111, WanAddress, SourcePort(first.Packet), answer);
        for (int i = 0; i < 50; i++)
        {
            rig.Out(UdpPacket(Client, 40000, Server, 111, call));
            rig.In(back);
        }

        var again = UdpPacket(Client, 40000, Server, 111, call);
        return Allocations.PerCall(
            () =>
            {
                rig.Out(again);
                rig.In(back);
            },
            packetsPerCall: 2);
    }

    private static RouterRig Rig(bool helper) => new(
        [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }],
        helper ? HelperBinding.Defaults(new RpcHelper()) : []);

    [Fact]
    public void Reading_a_call_and_an_answer_that_matches_no_lookup_allocates_nothing()
    {
        // A DUMP and its answer: parsed whole, nothing expected (an expectation is the engine's allocation, not the parser's).
        long without = AllocatedPerPacket(Rig(false), DumpCall(1), Reply(1, Words(0)));
        long with = AllocatedPerPacket(Rig(true), DumpCall(1), Reply(1, Words(0)));
        Assert.True(with - without <= 16, $"{with} bytes per packet with the helper, {without} without");
    }

    [Fact]
    public void Reading_lookups_and_their_answers_allocates_nothing_beyond_the_expectation()
    {
        long without = AllocatedPerPacket(Rig(false), GetPortCall(1), GetPortReply(1, 2049));
        long with = AllocatedPerPacket(Rig(true), GetPortCall(1), GetPortReply(1, 2049));
        // Each answer replaces the connection's expectation (the engine allocates one, about 150 bytes, per answer: 2 packets).
        Assert.True(with - without <= 128, $"{with} bytes per packet with the helper, {without} without");
    }
}
