using System.Buffers.Binary;
using Offload.Engine.Packets;

namespace Offload.Engine.Conntrack;

/// <summary>
/// TCP sequence adjustment after a helper changed a payload's length (the kernel's nf_conntrack_seqadj):
/// from the rewritten segment on, the sender's sequence numbers are shifted by the accumulated length
/// change, and the receiver's acknowledgements (and SACK blocks) are shifted back.
/// </summary>
internal static class SeqAdj
{
    /// <summary>True when sequence number <paramref name="a"/> comes after <paramref name="b"/>, modulo 2^32.</summary>
    public static bool After(uint a, uint b) => (int)(b - a) < 0;

    /// <summary>
    /// Records that the segment starting at <paramref name="seq"/> grew (or shrank) by <paramref name="delta"/> bytes.
    /// A retransmission of a segment already accounted for changes nothing.
    /// </summary>
    public static void Record(ref SeqAdjustment way, uint seq, int delta)
    {
        if (way.OffsetBefore == way.OffsetAfter || After(seq, way.CorrectionPosition))
        {
            way.CorrectionPosition = seq;
            way.OffsetBefore = way.OffsetAfter;
            way.OffsetAfter += delta;
        }
    }

    /// <summary>The shift for a sequence number of one direction (the kernel's nf_ct_seq_offset).</summary>
    public static int OffsetFor(in SeqAdjustment way, uint seq) =>
        After(seq, way.CorrectionPosition) ? way.OffsetAfter : way.OffsetBefore;

    /// <summary>The shift to take back from an acknowledgement of the other direction's data.</summary>
    private static int AckOffsetFor(in SeqAdjustment otherWay, uint ack) =>
        After(ack - (uint)otherWay.OffsetBefore, otherWay.CorrectionPosition) ? otherWay.OffsetAfter : otherWay.OffsetBefore;

    /// <summary>Adjusts seq, ack and SACK blocks of a TCP segment in place, with incremental checksum updates.</summary>
    /// <returns>True when a number was changed.</returns>
    public static bool Adjust(Span<byte> packet, in PacketInfo info, in SeqAdjustment thisWay, in SeqAdjustment otherWay)
    {
        var tcp = packet.Slice(info.L4Offset, info.PayloadOffset - info.L4Offset);
        uint seq = BinaryPrimitives.ReadUInt32BigEndian(tcp.Slice(HeaderOffsets.TcpSeq));
        uint newSeq = seq + (uint)OffsetFor(thisWay, seq);
        if (newSeq != seq)
        {
            BinaryPrimitives.WriteUInt32BigEndian(tcp.Slice(HeaderOffsets.TcpSeq), newSeq);
            Checksum.UpdateField(tcp, HeaderOffsets.TcpChecksum, seq, newSeq);
        }

        if ((tcp[HeaderOffsets.TcpFlags] & TcpFlags.Ack) == 0)
        {
            return newSeq != seq;
        }

        uint ack = BinaryPrimitives.ReadUInt32BigEndian(tcp.Slice(HeaderOffsets.TcpAck));
        uint newAck = ack - (uint)AckOffsetFor(otherWay, ack);
        if (newAck != ack)
        {
            BinaryPrimitives.WriteUInt32BigEndian(tcp.Slice(HeaderOffsets.TcpAck), newAck);
            Checksum.UpdateField(tcp, HeaderOffsets.TcpChecksum, ack, newAck);
        }

        bool sackChanged = AdjustSack(tcp, otherWay);
        return newSeq != seq || newAck != ack || sackChanged;
    }

    /// <summary>Shifts the edges of SACK blocks back by the other direction's offsets, like acknowledgements.</summary>
    private static bool AdjustSack(Span<byte> tcp, in SeqAdjustment otherWay)
    {
        bool changed = false;
        if (otherWay.IsIdentity)
        {
            return changed;
        }

        int i = HeaderOffsets.TcpMinHeader;
        while (i < tcp.Length)
        {
            byte kind = tcp[i];
            if (kind == 0)
            {
                return changed;
            }

            if (kind == 1)
            {
                i++;
                continue;
            }

            if (i + 1 >= tcp.Length)
            {
                return changed;
            }

            int length = tcp[i + 1];
            if (length < 2 || i + length > tcp.Length)
            {
                return changed; // Malformed options: leave them as they came, like the kernel.
            }

            const byte sackKind = 5;
            if (kind == sackKind)
            {
                for (int edge = i + 2; edge + 4 <= i + length; edge += 4)
                {
                    uint value = BinaryPrimitives.ReadUInt32BigEndian(tcp.Slice(edge));
                    uint adjusted = value - (uint)AckOffsetFor(otherWay, value);
                    if (adjusted != value)
                    {
                        WriteCovered(tcp, edge, adjusted);
                        changed = true;
                    }
                }
            }

            i += length;
        }

        return changed;
    }

    /// <summary>
    /// Writes a 32-bit value that may start at an odd offset (options need not be aligned), updating the
    /// checksum over the 16-bit words it touches.
    /// </summary>
    private static void WriteCovered(Span<byte> tcp, int offset, uint value)
    {
        int start = offset & ~1;
        int end = Math.Min((offset + 4 + 1) & ~1, tcp.Length);
        Span<byte> before = stackalloc byte[6];
        before = before.Slice(0, end - start);
        tcp.Slice(start, end - start).CopyTo(before);
        BinaryPrimitives.WriteUInt32BigEndian(tcp.Slice(offset), value);
        // The TCP header length is a multiple of 4, so the covering words always lie inside it.
        Checksum.UpdateField(tcp, HeaderOffsets.TcpChecksum, before, tcp.Slice(start, end - start));
    }
}
