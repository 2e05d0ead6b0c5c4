using Offload.Sdk.Testing;

namespace Offload.Alg.Tests.Support;

/// <summary>What one packet costs in allocations through a router, for the helpers' no-allocation tests.</summary>
internal static class Allocations
{
    /// <summary>
    /// The bytes this thread allocates per packet while <paramref name="packet"/> goes out through <paramref name="rig"/>
    /// again and again, after a warm-up (the flow established, the helper's per-flow state made).
    /// </summary>
    public static long PerPacket(RouterRig rig, byte[] packet)
    {
        for (int i = 0; i < 50; i++)
        {
            rig.Out(packet);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 200; i++)
        {
            rig.Out(packet);
        }

        return (GC.GetAllocatedBytesForCurrentThread() - before) / 200;
    }
}
