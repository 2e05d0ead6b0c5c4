using Offload.Sdk.Testing;

namespace Offload.Alg.Tests.Support;

/// <summary>What one packet costs in allocations through a router, for the helpers' no-allocation tests.</summary>
internal static class Allocations
{
    /// <summary>
    /// The bytes this thread allocates per packet while <paramref name="packet"/> goes out through <paramref name="rig"/>
    /// again and again, after a warm-up (the flow established, the helper's per-flow state made).
    /// </summary>
    public static long PerPacket(RouterRig rig, byte[] packet) => PerCall(() => rig.Out(packet));

    /// <summary>
    /// The bytes this thread allocates per call of <paramref name="send"/> (which sends <paramref name="packetsPerCall"/>
    /// packets), after a warm-up of 50 calls: the least of three rounds of 200. What a packet allocates shows in every
    /// round; a one-off of the runtime's own on this thread (a method's code swapped for a faster tier, say) in one
    /// only, and must not fail the test.
    /// </summary>
    public static long PerCall(Action send, int packetsPerCall = 1)
    {
        for (int i = 0; i < 50; i++)
        {
            send();
        }

        long least = long.MaxValue;
        for (int round = 0; round < 3; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 200; i++)
            {
                send();
            }

            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }

        return least / (200 * packetsPerCall);
    }
}
