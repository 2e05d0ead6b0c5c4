using System.Buffers.Binary;
using Offload.Engine.Conntrack;
using Offload.Engine.Packets;

namespace Offload.Engine.Rewrite;

/// <summary>
/// The payload rewrites a helper asks for during one call, applied together after it returns (the kernel's
/// nf_nat_mangle_tcp_packet and nf_nat_mangle_udp_packet, with the length change recorded once for seqadj).
/// </summary>
/// <remarks>
/// Per-packet scratch: it belongs to one engine and holds only the packet being processed, so it is reused for every
/// packet without allocating (its tail buffer is allocated on the first rewrite, once).
/// </remarks>
internal sealed class PayloadRewriter(EngineCounters counters)
{
    private const int MaxRewrites = 16;
    private const int ScratchBytes = 2048;

    private readonly (int Offset, int Length, int ScratchOffset, int ScratchLength)[] _rewrites = new (int, int, int, int)[MaxRewrites];
    private readonly byte[] _scratch = new byte[ScratchBytes];

    // Where a rewritten packet's tail waits while the rewrites are laid out (allocated on the first rewrite).
    private byte[] _tail = [];
    private int _count;
    private int _scratchUsed;

    /// <summary>True when a rewrite waits to be applied.</summary>
    public bool HasRewrites => _count > 0;

    /// <summary>Forgets what the last call queued (a new helper call starts, or its packet goes on untouched).</summary>
    public void Clear()
    {
        _count = 0;
        _scratchUsed = 0;
    }

    /// <summary>
    /// Queues a replacement of <paramref name="length"/> payload bytes at <paramref name="offset"/>. Refused when it
    /// lies outside the payload, overlaps or precedes the last one queued, or the scratch space is used up.
    /// </summary>
    public bool Queue(int payloadLength, int offset, int length, ReadOnlySpan<byte> replacement)
    {
        if (offset < 0 || length < 0 || offset + length > payloadLength || _count == MaxRewrites
            || replacement.Length > ScratchBytes - _scratchUsed)
        {
            return false;
        }

        if (_count > 0)
        {
            var last = _rewrites[_count - 1];
            if (offset < last.Offset + last.Length)
            {
                return false;
            }
        }

        replacement.CopyTo(_scratch.AsSpan(_scratchUsed));
        _rewrites[_count++] = (offset, length, _scratchUsed, replacement.Length);
        _scratchUsed += replacement.Length;
        return true;
    }

    /// <summary>
    /// Applies the queued payload rewrites: moves the bytes, fixes the IP length and checksums, and for TCP
    /// records the length change for sequence adjustment (once per packet, however many rewrites it had).
    /// </summary>
    /// <returns>False when the packet would not fit its buffer or 65535 bytes; it is then left as it was.</returns>
    public bool Apply(ref PacketContext ctx, Connection conn)
    {
        var info = ctx.Info;
        int delta = 0;
        for (int i = 0; i < _count; i++)
        {
            delta += _rewrites[i].ScratchLength - _rewrites[i].Length;
        }

        int newLength = ctx.Length + delta;
        if (newLength > ctx.Buffer.Length || newLength > 65535)
        {
            _count = 0;
            return false;
        }

        // The packet from the first rewrite on is copied aside, then written back piece by piece: original bytes,
        // replacement, original bytes... Only the final length has to fit, whatever the order of growing and shrinking.
        int from = info.PayloadOffset + _rewrites[0].Offset;
        if (_tail.Length < ctx.Length - from)
        {
            _tail = new byte[65536];
        }

        var tail = _tail.AsSpan(0, ctx.Length - from);
        ctx.Buffer.Slice(from, tail.Length).CopyTo(tail);
        int read = 0;
        int write = from;
        for (int i = 0; i < _count; i++)
        {
            var (offset, length, scratch, scratchLength) = _rewrites[i];
            int keep = info.PayloadOffset + offset - from - read;
            tail.Slice(read, keep).CopyTo(ctx.Buffer.Slice(write));
            write += keep;
            read += keep + length;
            _scratch.AsSpan(scratch, scratchLength).CopyTo(ctx.Buffer.Slice(write));
            write += scratchLength;
        }

        tail.Slice(read).CopyTo(ctx.Buffer.Slice(write));
        ctx.Length = newLength;
        ctx.Changed = true;

        _count = 0;
        counters.Count(EngineCounter.PayloadRewrites);

        var packet = ctx.Packet;
        info.TotalLength = ctx.Length;
        ctx.Info = info;
        if (info.Family == 4)
        {
            BinaryPrimitives.WriteUInt16BigEndian(packet.Slice(HeaderOffsets.IPv4TotalLength), (ushort)ctx.Length);
            packet[HeaderOffsets.IPv4Checksum] = 0;
            packet[HeaderOffsets.IPv4Checksum + 1] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(packet.Slice(HeaderOffsets.IPv4Checksum), Checksum.Compute(packet.Slice(0, info.L4Offset)));
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(packet.Slice(HeaderOffsets.IPv6PayloadLength), (ushort)(ctx.Length - HeaderOffsets.IPv6HeaderLength));
        }

        var l4 = packet.Slice(info.L4Offset);
        if (info.Protocol == IpProtocol.Tcp)
        {
            if (delta != 0)
            {
                var extras = conn.EnsureExtras();
                uint seq = BinaryPrimitives.ReadUInt32BigEndian(l4.Slice(HeaderOffsets.TcpSeq));
                SeqAdj.Record(ref extras.SeqAdj(ctx.Dir), seq, delta);
                conn.StatusBits |= ConnStatus.SeqAdjust;
            }

            TransportChecksum.Recompute(packet, info, HeaderOffsets.TcpChecksum, zeroMeansNone: false);
        }
        else if (info.Protocol == IpProtocol.Udp)
        {
            bool hadChecksum = BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(HeaderOffsets.UdpChecksum)) != 0;
            BinaryPrimitives.WriteUInt16BigEndian(l4.Slice(HeaderOffsets.UdpLength), (ushort)l4.Length);
            if (hadChecksum)
            {
                TransportChecksum.Recompute(packet, info, HeaderOffsets.UdpChecksum, zeroMeansNone: true);
            }
        }

        return true;
    }
}
