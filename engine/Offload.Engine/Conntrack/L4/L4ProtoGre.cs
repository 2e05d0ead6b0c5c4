using Offload.Engine.Conntrack.Gre;
using Offload.Engine.Packets;

namespace Offload.Engine.Conntrack.L4;

/// <summary>
/// GRE (the kernel's nf_conntrack_proto_gre.c): plain GRE (version 0) tracked by addresses, PPTP's enhanced GRE
/// (version 1) by the call IDs its control connection negotiated (see <see cref="GreKeymap"/>). A short timeout until
/// the flow has seen a reply, a longer one (and assured) after; a call's data channel, which the PPTP helper expected,
/// keeps the PPTP helper's longer timeouts, as the kernel's pptp_expectfn sets them.
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

        bool call = conn.HasStatus(ConnStatus.Expected) && GreKeymap.IsKeyed(conn.OriginalTuple);
        TimeSpan timeout;
        if (conn.HasStatus(ConnStatus.SeenReply))
        {
            timeout = call ? options.PptpGreStreamTimeout : options.GreStreamTimeout;
            conn.StatusBits |= ConnStatus.Assured;
        }
        else
        {
            timeout = call ? options.PptpGreTimeout : options.GreTimeout;
        }

        conn.ExpiresAt = now + (long)timeout.TotalNanoseconds;
        return Verdict.Accept;
    }
}
