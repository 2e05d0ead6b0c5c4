using System.Buffers.Binary;
using Offload.Interop.Netlink;
using Offload.Interop.Nfqueue;
using static Offload.Interop.Netlink.NetlinkConstants;
using static Offload.Interop.Nfqueue.NfqConstants;

namespace Offload.Interop.Tests.Support;

/// <summary>Kernel-side messages built with our writer, for cases the kernel is hard to coax into (truncation, timestamps).</summary>
internal static class Synth
{
    internal static byte[] Packet(
        uint id,
        ReadOnlySpan<byte> payload,
        uint mark = 0,
        uint capLen = 0,
        uint skbInfo = 0,
        (long Sec, long Usec)? timestamp = null,
        byte hook = NF_INET_FORWARD,
        uint indev = 3,
        uint outdev = 4,
        bool shortMark = false)
    {
        var buffer = new byte[payload.Length + 256];
        var w = new NetlinkMessageWriter(buffer);
        WritePacket(ref w, id, payload, mark, capLen, skbInfo, timestamp, hook, indev, outdev, shortMark);
        return buffer.AsSpan(0, w.Length).ToArray();
    }

    internal static void WritePacket(
        ref NetlinkMessageWriter w,
        uint id,
        ReadOnlySpan<byte> payload,
        uint mark = 0,
        uint capLen = 0,
        uint skbInfo = 0,
        (long Sec, long Usec)? timestamp = null,
        byte hook = NF_INET_FORWARD,
        uint indev = 3,
        uint outdev = 4,
        bool shortMark = false)
    {
        w.BeginMessage(MessageType(NFQNL_MSG_PACKET), 0, 0);
        w.WriteNfGenMsg(NFPROTO_IPV4, NFNETLINK_V0, 7);
        Span<byte> h = w.ReserveAttribute(NFQA_PACKET_HDR, KernelLayout.NfqPacketHdr.Size);
        BinaryPrimitives.WriteUInt32BigEndian(h, id);
        BinaryPrimitives.WriteUInt16BigEndian(h[4..], 0x0800);
        h[6] = hook;
        w.PutU32BigEndian(NFQA_IFINDEX_INDEV, indev);
        w.PutU32BigEndian(NFQA_IFINDEX_OUTDEV, outdev);
        if (shortMark)
        {
            w.PutU16BigEndian(NFQA_MARK, 1);
        }
        else if (mark != 0)
        {
            w.PutU32BigEndian(NFQA_MARK, mark);
        }

        if (timestamp is { } ts)
        {
            Span<byte> t = w.ReserveAttribute(NFQA_TIMESTAMP, 16);
            BinaryPrimitives.WriteInt64BigEndian(t, ts.Sec);
            BinaryPrimitives.WriteInt64BigEndian(t[8..], ts.Usec);
        }

        if (capLen != 0)
        {
            w.PutU32BigEndian(NFQA_CAP_LEN, capLen);
        }

        if (skbInfo != 0)
        {
            w.PutU32BigEndian(NFQA_SKB_INFO, skbInfo);
        }

        w.PutAttribute(NFQA_PAYLOAD, payload);
        w.EndMessage();
    }

    /// <summary>An NLMSG_ERROR answering <paramref name="sequence"/> (error 0: an acknowledgement), capped, with an extack text if given.</summary>
    internal static byte[] Error(uint sequence, ushort requestType, int error = 0, string? message = null)
    {
        var buffer = new byte[256];
        var w = new NetlinkMessageWriter(buffer);
        w.BeginMessage(NLMSG_ERROR, (ushort)(NLM_F_CAPPED | (message is null ? 0 : NLM_F_ACK_TLVS)), sequence);
        Span<byte> err = stackalloc byte[KernelLayout.NlMsgErr.Size];
        HostOrder.Write(err, error);
        HostOrder.Write(err[(KernelLayout.NlMsgErr.Message + KernelLayout.NlMsgHdr.Length)..], 40u);
        HostOrder.Write(err[(KernelLayout.NlMsgErr.Message + KernelLayout.NlMsgHdr.Type)..], requestType);
        HostOrder.Write(err[(KernelLayout.NlMsgErr.Message + KernelLayout.NlMsgHdr.Sequence)..], sequence);
        w.WriteFamilyHeader(err);
        if (message is not null)
        {
            byte[] text = System.Text.Encoding.ASCII.GetBytes(message + "\0");
            w.PutAttribute(NLMSGERR_ATTR_MSG, text);
        }

        w.EndMessage();
        return buffer.AsSpan(0, w.Length).ToArray();
    }

    /// <summary>A 28-byte IPv4/UDP packet with a recognisable body.</summary>
    internal static byte[] Ipv4(byte marker)
    {
        var p = new byte[32];
        p[0] = 0x45;
        p[3] = 32;
        p[9] = 17;
        p[31] = marker;
        return p;
    }
}
