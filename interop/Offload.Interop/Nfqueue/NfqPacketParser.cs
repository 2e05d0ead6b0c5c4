using System.Buffers.Binary;
using Offload.Interop.Netlink;
using static Offload.Interop.Nfqueue.NfqConstants;

namespace Offload.Interop.Nfqueue;

/// <summary>What parsing an NFQNL_MSG_PACKET message gave.</summary>
internal enum PacketParseStatus
{
    /// <summary>A packet to hand over.</summary>
    Ok,

    /// <summary>Broken, but its id was read: the packet must still get a verdict or it sits in the kernel forever.</summary>
    MalformedWithId,

    /// <summary>Broken before its id: nothing can be done but count it.</summary>
    Unreadable,
}

/// <summary>
/// Reads NFQNL_MSG_PACKET into a <see cref="QueuedPacket"/>. Every attribute's length is checked before its value
/// is read; unknown attributes are skipped, so newer kernels' additions do not break us.
/// </summary>
internal static class NfqPacketParser
{
    /// <summary>
    /// Parses <paramref name="message"/>, a message whose bytes lie inside <paramref name="buffer"/> (the payload
    /// is exposed as a slice of it). Never throws.
    /// </summary>
    internal static PacketParseStatus Parse(byte[] buffer, NetlinkMessage message, out QueuedPacket packet)
    {
        packet = default;
        ReadOnlySpan<byte> body = message.Payload;
        if (body.Length < KernelLayout.NfGenMsg.Size)
        {
            return PacketParseStatus.Unreadable;
        }

        byte family = body[KernelLayout.NfGenMsg.Family];
        bool haveHeader = false, broken = false;
        uint id = 0, mark = 0, indev = 0, outdev = 0, physin = 0, physout = 0, capLen = 0, skbInfo = 0;
        ushort hwProtocol = 0;
        byte hook = 0;
        bool hasTimestamp = false, hasCapLen = false;
        long timestamp = 0;
        int payloadOffset = 0, payloadLength = 0;
        bool hasPayload = false;

        AttributeReader attributes = message.GetAttributes(KernelLayout.NfGenMsg.Size);
        while (attributes.TryRead(out NetlinkAttribute a))
        {
            ReadOnlySpan<byte> v = a.Value;
            switch (a.Type)
            {
                case NFQA_PACKET_HDR:
                    if (v.Length < KernelLayout.NfqPacketHdr.Size)
                    {
                        return PacketParseStatus.Unreadable;
                    }

                    id = BinaryPrimitives.ReadUInt32BigEndian(v[KernelLayout.NfqPacketHdr.PacketId..]);
                    hwProtocol = BinaryPrimitives.ReadUInt16BigEndian(v[KernelLayout.NfqPacketHdr.HwProtocol..]);
                    hook = v[KernelLayout.NfqPacketHdr.Hook];
                    haveHeader = true;
                    break;
                case NFQA_MARK:
                    broken |= !a.TryGetU32BigEndian(out mark);
                    break;
                case NFQA_IFINDEX_INDEV:
                    broken |= !a.TryGetU32BigEndian(out indev);
                    break;
                case NFQA_IFINDEX_OUTDEV:
                    broken |= !a.TryGetU32BigEndian(out outdev);
                    break;
                case NFQA_IFINDEX_PHYSINDEV:
                    broken |= !a.TryGetU32BigEndian(out physin);
                    break;
                case NFQA_IFINDEX_PHYSOUTDEV:
                    broken |= !a.TryGetU32BigEndian(out physout);
                    break;
                case NFQA_CAP_LEN:
                    hasCapLen = a.TryGetU32BigEndian(out capLen);
                    broken |= !hasCapLen;
                    break;
                case NFQA_SKB_INFO:
                    broken |= !a.TryGetU32BigEndian(out skbInfo);
                    break;
                case NFQA_TIMESTAMP:
                    if (v.Length < KernelLayout.NfqPacketTimestamp.Size)
                    {
                        broken = true;
                        break;
                    }

                    long sec = BinaryPrimitives.ReadInt64BigEndian(v[KernelLayout.NfqPacketTimestamp.Seconds..]);
                    long usec = BinaryPrimitives.ReadInt64BigEndian(v[KernelLayout.NfqPacketTimestamp.Microseconds..]);
                    timestamp = unchecked((sec * 1_000_000) + usec);
                    hasTimestamp = true;
                    break;
                case NFQA_PAYLOAD:
                    if (v.IsEmpty)
                    {
                        break;
                    }

                    if (!buffer.AsSpan().Overlaps(v, out payloadOffset))
                    {
                        broken = true;
                        break;
                    }

                    payloadLength = v.Length;
                    hasPayload = true;
                    break;
            }
        }

        if (!haveHeader)
        {
            return PacketParseStatus.Unreadable;
        }

        if (broken || attributes.IsMalformed || (hasCapLen && capLen < (uint)payloadLength) || capLen > int.MaxValue)
        {
            packet = new QueuedPacket(null, 0, 0) { PacketId = id };
            return PacketParseStatus.MalformedWithId;
        }

        packet = new QueuedPacket(hasPayload ? buffer : null, payloadOffset, payloadLength)
        {
            PacketId = id,
            Family = family,
            HwProtocol = hwProtocol,
            Hook = (NfHook)hook,
            Mark = mark,
            InputInterface = indev,
            OutputInterface = outdev,
            PhysicalInputInterface = physin,
            PhysicalOutputInterface = physout,
            HasTimestamp = hasTimestamp,
            TimestampMicroseconds = timestamp,
            SkbInfo = (NfqSkbInfo)skbInfo,

            // NFQA_CAP_LEN appears only when the copy range cut the packet.
            OriginalLength = hasCapLen ? (int)capLen : payloadLength,
        };
        return PacketParseStatus.Ok;
    }

    /// <summary>
    /// Finds the packet id at the start of a packet message whose end is missing (truncated datagram, or a
    /// message whose nlmsg_len lied): NFQA_PACKET_HDR comes first, so it usually survives.
    /// </summary>
    internal static bool TryRecoverPacketId(ReadOnlySpan<byte> messageStart, out uint packetId)
    {
        packetId = 0;
        int headers = KernelLayout.NlMsgHdr.Size + KernelLayout.NfGenMsg.Size;
        if (messageStart.Length < headers
            || HostOrder.ReadU16(messageStart[KernelLayout.NlMsgHdr.Type..]) != MessageType(NFQNL_MSG_PACKET))
        {
            return false;
        }

        var attributes = new AttributeReader(messageStart[headers..]);
        while (attributes.TryRead(out NetlinkAttribute a))
        {
            if (a.Type == NFQA_PACKET_HDR)
            {
                return a.Value.Length >= KernelLayout.NfqPacketHdr.Size
                    && BinaryPrimitives.TryReadUInt32BigEndian(a.Value, out packetId);
            }
        }

        return false;
    }
}
