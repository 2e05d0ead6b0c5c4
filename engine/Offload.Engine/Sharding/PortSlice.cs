namespace Offload.Engine.Sharding;

/// <summary>
/// How a port range of source NAT is split between engine shards: each shard chooses ports in its own slice only, and
/// the steering rules queue the replies to a slice to that shard's queue, so that a reply comes back to the shard that
/// holds its connection without looking anywhere else (as VPP splits its outside ports per worker).
/// </summary>
public static class PortSlice
{
    /// <summary>The fewest ports a shard's slice may have: fewer would leave a shard out of ports under any load.</summary>
    public const int MinimumPortsPerShard = 16;

    /// <summary>
    /// The part of [<paramref name="min"/>, <paramref name="max"/>] that shard <paramref name="shard"/> of
    /// <paramref name="shards"/> uses: consecutive slices, the first ones one port larger when the range does not
    /// divide evenly. With one shard, the whole range.
    /// </summary>
    public static (ushort Min, ushort Max) Of(ushort min, ushort max, int shard, int shards)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(shards, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(shard);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(shard, shards);
        if (shards == 1 || max < min)
        {
            return (min, max);
        }

        int size = max - min + 1;
        int each = size / shards;
        int larger = size % shards; // the first `larger` slices take one port more
        int start = min + (shard * each) + Math.Min(shard, larger);
        int length = each + (shard < larger ? 1 : 0);
        return ((ushort)start, (ushort)(start + length - 1));
    }

    /// <summary>The shard whose slice of [<paramref name="min"/>, <paramref name="max"/>] holds <paramref name="port"/>, or -1 outside the range.</summary>
    public static int OwnerOf(ushort port, ushort min, ushort max, int shards)
    {
        if (port < min || port > max)
        {
            return -1;
        }

        for (int shard = 0; shard < shards; shard++)
        {
            if (port <= Of(min, max, shard, shards).Max)
            {
                return shard;
            }
        }

        return -1;
    }
}
