using Offload.Engine.Conntrack;
using Offload.Engine.Packets;

namespace Offload.Engine;

// The lookups of a whole receive burst in stages, before its packets are processed one by one, as VPP's bihash and
// DPDK's bulk lookup do: once the table outgrows the caches, a lookup is a chain of dependent misses (the bucket head,
// then the entry), and a burst's packets paid them one after the other. Staged, the misses of different packets overlap.
public sealed partial class ConntrackEngine
{
    /// <summary>
    /// Connections from which staging pays: below, bucket heads and entries (a few MB) stay in the caches, and staging
    /// would only parse each packet twice.
    /// </summary>
    public const int StagedLookupsFrom = 1 << 16;

    // What the staged reads read, kept so that they are not left out as unused.
    private int _stagedReads;

    /// <summary>True when the table is large enough for a burst's lookups to be worth staging (<see cref="PrepareLookups"/>).</summary>
    public bool StagesLookups => _table.Count >= StagedLookupsFrom;

    /// <summary>
    /// Stage one of a burst's lookups: the bucket a packet's tuple hashes to (from the packet alone, no table memory
    /// read), or -1 when it has none worth staging (malformed, a later fragment, an ICMP error, GRE). Changes nothing.
    /// </summary>
    public int LookupBucketOf(ReadOnlySpan<byte> packet)
    {
        var info = PacketParser.Parse(packet);
        if (!info.HasTransportHeader || info.Protocol == IpProtocol.Gre
            || (info.Protocol is IpProtocol.Icmp or IpProtocol.IcmpV6 && Icmp.IsError(info.Protocol, packet[info.L4Offset])))
        {
            return -1;
        }

        return ConnTuples.TryRead(packet, info, out var tuple) ? _table.BucketOf(tuple) : -1;
    }

    /// <summary>
    /// Stages two and three for a burst whose buckets <see cref="LookupBucketOf"/> gave: every bucket head read, then
    /// every first entry of a chain and every second one, so that the burst's misses overlap. <paramref name="buckets"/> is overwritten. The
    /// packets are then processed as usual and find what they look up in the caches. Changes nothing of the table.
    /// </summary>
    public void PrepareLookups(Span<int> buckets) => _stagedReads += _table.Touch(buckets);
}
