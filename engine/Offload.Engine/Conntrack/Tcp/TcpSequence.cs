using System.Runtime.CompilerServices;

namespace Offload.Engine.Conntrack.Tcp;

/// <summary>
/// Comparisons of TCP sequence numbers, which live on a circle of 2^32 values (RFC 793 / RFC 1982):
/// <c>a</c> is before <c>b</c> when going forward from <c>a</c> reaches <c>b</c> in less than half the circle.
/// </summary>
public static class TcpSequence
{
    /// <summary>True when <paramref name="a"/> comes strictly before <paramref name="b"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Before(uint a, uint b) => (int)(a - b) < 0;

    /// <summary>True when <paramref name="a"/> comes strictly after <paramref name="b"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool After(uint a, uint b) => (int)(b - a) < 0;
}
