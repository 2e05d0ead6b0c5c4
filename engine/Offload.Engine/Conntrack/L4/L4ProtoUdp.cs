using Offload.Engine.Packets;

namespace Offload.Engine.Conntrack.L4;

/// <summary>
/// UDP and UDP-Lite (the kernel's nf_conntrack_proto_udp.c): a short timeout until the flow has seen a reply, a long
/// one (and assured) once it has carried traffic both ways for a while.
/// </summary>
internal sealed class L4ProtoUdp(EngineOptions options) : L4Proto
{
    public override Verdict Track(ReadOnlySpan<byte> packet, in PacketInfo info, Connection conn, ConnDirection dir, bool isNew, long now, out bool reopen)
    {
        reopen = false;
        long timeout;
        if (conn.HasStatus(ConnStatus.SeenReply))
        {
            bool stream = now > conn.StreamAt;
            timeout = (long)(stream ? options.UdpStreamTimeout : options.UdpTimeout).TotalNanoseconds;
            if (stream)
            {
                conn.StatusBits |= ConnStatus.Assured;
            }
        }
        else
        {
            timeout = (long)options.UdpTimeout.TotalNanoseconds;
        }

        conn.ExpiresAt = now + timeout;
        return Verdict.Accept;
    }
}
