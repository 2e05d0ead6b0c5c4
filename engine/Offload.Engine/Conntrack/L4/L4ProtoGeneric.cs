using Offload.Engine.Packets;

namespace Offload.Engine.Conntrack.L4;

/// <summary>
/// Every protocol without a tracker of its own, tracked by addresses only with one timeout (the kernel's
/// nf_conntrack_proto_generic.c).
/// </summary>
internal sealed class L4ProtoGeneric(EngineOptions options) : L4Proto
{
    public override Verdict Track(ReadOnlySpan<byte> packet, in PacketInfo info, Connection conn, ConnDirection dir, bool isNew, long now, out bool reopen)
    {
        reopen = false;
        conn.ExpiresAt = now + (long)options.GenericTimeout.TotalNanoseconds;
        return Verdict.Accept;
    }
}
