using Offload.Engine.Conntrack.Gre;
using Offload.Engine.Packets;

namespace Offload.Engine.Conntrack.L4;

/// <summary>
/// GRE (the kernel's nf_conntrack_proto_gre.c): plain GRE (version 0) tracked by addresses, PPTP's enhanced GRE
/// (version 1) by the call IDs its control connection negotiated (see <see cref="GreKeymap"/>). A short timeout until
/// the flow has seen a reply, a longer one (and assured) after, a PPTP call's included (see <see cref="EngineOptions.GreTimeout"/>).
/// </summary>
internal sealed class L4ProtoGre(EngineOptions options, EngineCounters counters) : L4Proto
{
    public override bool Start(ReadOnlySpan<byte> packet, in PacketInfo info, Connection conn, long now) =>
        !GreHeader.IsForeignEnhanced(packet.Slice(info.L4Offset, info.L4Length));

    public override Verdict Track(ReadOnlySpan<byte> packet, in PacketInfo info, Connection conn, ConnDirection dir, bool isNew, long now, out bool reopen)
    {
        reopen = false;
        if (!isNew && GreHeader.IsForeignEnhanced(packet.Slice(info.L4Offset, info.L4Length)))
        {
            return counters.Drop(EngineCounter.DroppedGreNotPptp);
        }

        TimeSpan timeout = options.GreTimeout;
        if (conn.HasStatus(ConnStatus.SeenReply))
        {
            timeout = options.GreStreamTimeout;
            conn.StatusBits |= ConnStatus.Assured;
        }

        conn.ExpiresAt = now + (long)timeout.TotalNanoseconds;
        return Verdict.Accept;
    }
}
