using Offload.Engine.Packets;

namespace Offload.Engine.Conntrack.L4;

/// <summary>
/// ICMP and ICMPv6 queries (the kernel's nf_conntrack_proto_icmp.c and icmpv6.c): only a query starts a connection
/// (its reply and errors never do; errors are matched to the flow they quote before tracking), then one timeout.
/// </summary>
internal sealed class L4ProtoIcmp(EngineOptions options) : L4Proto
{
    public override bool CanStart(in ConnTuple tuple) => Icmp.IsQuery(tuple.Protocol, tuple.IcmpType);

    public override Verdict Track(ReadOnlySpan<byte> packet, in PacketInfo info, Connection conn, ConnDirection dir, bool isNew, long now, out bool reopen)
    {
        reopen = false;
        conn.ExpiresAt = now + (long)options.IcmpTimeout.TotalNanoseconds;
        return Verdict.Accept;
    }
}
