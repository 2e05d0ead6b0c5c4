using System.Buffers.Binary;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Packets;

namespace Offload.Engine.Conntrack.L4;

/// <summary>
/// TCP (the kernel's nf_conntrack_proto_tcp.c): the state machine and window tracking of <see cref="TcpTracker"/>,
/// fed each segment with the acknowledgement seen through seqadj, and the timeouts it chooses.
/// </summary>
internal sealed class L4ProtoTcp(TcpTrackerSettings settings, EngineCounters counters) : L4Proto
{
    /// <summary>Starts TCP tracking; the tracker runs the first segment through its state machine too.</summary>
    public override bool Start(ReadOnlySpan<byte> packet, in PacketInfo info, Connection conn, long now)
    {
        var segment = ReadSegment(packet, info);
        if (!TcpTracker.TryStart(ref conn.Tcp, segment, settings, out var update))
        {
            return false;
        }

        ApplyUpdate(conn, update, now);
        return true;
    }

    public override Verdict Track(ReadOnlySpan<byte> packet, in PacketInfo info, Connection conn, ConnDirection dir, bool isNew, long now, out bool reopen)
    {
        reopen = false;
        if (isNew)
        {
            return Verdict.Accept; // The tracker already ran this segment when it started the connection.
        }

        var segment = ReadSegment(packet, info);
        int receiverOffset = 0;
        if (conn.Extras is { } extras && conn.HasStatus(ConnStatus.SeqAdjust))
        {
            // The receiver acknowledges the other direction's data as we rewrote it; the window is in the sender's numbering.
            receiverOffset = SeqAdj.OffsetFor(extras.SeqAdj(dir.Opposite()), segment.Ack - 1);
        }

        var verdict = TcpTracker.Process(ref conn.Tcp, segment, dir == ConnDirection.Reply, receiverOffset, settings, out var update);
        switch (verdict)
        {
            case TcpVerdict.Reopen:
                reopen = true;
                return Verdict.Accept;
            case TcpVerdict.Invalid:
                return counters.Drop(EngineCounter.DroppedTcpInvalid);
            case TcpVerdict.Ignore:
                // Accepted without changing state (e.g. a segment the tracker could not judge).
                return Verdict.Accept;
        }

        ApplyUpdate(conn, update, now);
        return Verdict.Accept;
    }

    private static void ApplyUpdate(Connection conn, in TcpUpdate update, long now)
    {
        if (update.Assured)
        {
            conn.StatusBits |= ConnStatus.Assured;
        }

        long timeout = update.TimeoutSeconds * 1_000_000_000L;
        switch (update.TimeoutAction)
        {
            case TcpTimeoutAction.Set:
                conn.ExpiresAt = now + timeout;
                break;
            case TcpTimeoutAction.Shorten:
                long left = conn.ExpiresAt - now;
                if (left >= 120 * 1_000_000_000L && left > timeout)
                {
                    conn.ExpiresAt = now + timeout;
                }

                break;
        }

        if (update.Kill)
        {
            // A RST before any reply: the entry is finished. It still translates this last packet.
            conn.ExpiresAt = now;
        }
    }

    /// <summary>The segment's fields the tracker reads, from its TCP header.</summary>
    internal static TcpSegment ReadSegment(ReadOnlySpan<byte> packet, in PacketInfo info)
    {
        var tcp = packet.Slice(info.L4Offset, info.PayloadOffset - info.L4Offset);
        return new TcpSegment(
            BinaryPrimitives.ReadUInt32BigEndian(tcp.Slice(HeaderOffsets.TcpSeq)),
            BinaryPrimitives.ReadUInt32BigEndian(tcp.Slice(HeaderOffsets.TcpAck)),
            (TcpSegmentFlags)tcp[HeaderOffsets.TcpFlags],
            BinaryPrimitives.ReadUInt16BigEndian(tcp.Slice(HeaderOffsets.TcpWindow)),
            info.PayloadLength,
            tcp.Slice(HeaderOffsets.TcpMinHeader));
    }
}
