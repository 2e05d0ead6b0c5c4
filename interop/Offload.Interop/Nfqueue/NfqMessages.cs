using System.Buffers.Binary;
using Offload.Interop.Netlink;
using static Offload.Interop.Netlink.NetlinkConstants;
using static Offload.Interop.Nfqueue.NfqConstants;

namespace Offload.Interop.Nfqueue;

/// <summary>The messages a queue consumer sends: configuration and verdicts, laid out by the shared writer.</summary>
internal static class NfqMessages
{
    /// <summary>A verdict with neither mark nor payload, and a batch verdict without mark (add <see cref="MarkSize"/> for one).</summary>
    internal const int PlainVerdictSize = NLMSG_HDRLEN + KernelLayout.NfGenMsg.Size + NLA_HDRLEN + KernelLayout.NfqVerdictHdr.Size;

    internal const int MarkSize = NLA_HDRLEN + 4;

    internal static int VerdictSize(bool hasMark, int payloadLength) =>
        PlainVerdictSize + (hasMark ? MarkSize : 0) + (payloadLength >= 0 ? NetlinkMessageWriter.AttributeSpace(payloadLength) : 0);

    /// <summary>The largest verdict: mark plus the largest payload.</summary>
    internal static readonly int MaxVerdictSize = VerdictSize(true, MaxCopyRange);

    /// <summary>
    /// NFQNL_MSG_CONFIG. The kernel applies a command first, then copy parameters, queue length and flags, all
    /// under one lock, so binding and configuring in one message leaves no moment where packets meet an unset
    /// copy mode (the kernel refuses to queue those).
    /// </summary>
    internal static void WriteConfig(
        ref NetlinkMessageWriter w,
        ushort queue,
        uint sequence,
        bool ack,
        byte command,
        byte copyMode = NFQNL_COPY_NONE,
        int copyRange = -1,
        uint maxQueueLength = 0,
        uint flagsMask = 0,
        uint flags = 0)
    {
        w.BeginMessage(MessageType(NFQNL_MSG_CONFIG), (ushort)(NLM_F_REQUEST | (ack ? NLM_F_ACK : 0)), sequence);
        w.WriteNfGenMsg(NFPROTO_UNSPEC, NFNETLINK_V0, queue);
        if (command != NFQNL_CFG_CMD_NONE)
        {
            Span<byte> cmd = w.ReserveAttribute(NFQA_CFG_CMD, KernelLayout.NfqConfigCmd.Size);
            cmd[KernelLayout.NfqConfigCmd.Command] = command;
            cmd[KernelLayout.NfqConfigCmd.Pad] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(cmd[KernelLayout.NfqConfigCmd.Pf..], 0);
        }

        if (copyRange >= 0)
        {
            Span<byte> p = w.ReserveAttribute(NFQA_CFG_PARAMS, KernelLayout.NfqConfigParams.Size);
            BinaryPrimitives.WriteUInt32BigEndian(p[KernelLayout.NfqConfigParams.CopyRange..], (uint)copyRange);
            p[KernelLayout.NfqConfigParams.CopyMode] = copyMode;
        }

        if (maxQueueLength != 0)
        {
            w.PutU32BigEndian(NFQA_CFG_QUEUE_MAXLEN, maxQueueLength);
        }

        if (flagsMask != 0)
        {
            // The kernel refuses FLAGS without MASK: the mask says which flags this message decides.
            w.PutU32BigEndian(NFQA_CFG_MASK, flagsMask);
            w.PutU32BigEndian(NFQA_CFG_FLAGS, flags);
        }

        w.EndMessage();
    }

    /// <summary>NFQNL_MSG_VERDICT for one packet, optionally with a mark and a replacement packet.</summary>
    internal static void WriteVerdict(
        ref NetlinkMessageWriter w, ushort queue, uint sequence, uint packetId, uint verdict, bool hasMark, uint mark, ReadOnlySpan<byte> payload, bool hasPayload)
    {
        w.BeginMessage(MessageType(NFQNL_MSG_VERDICT), NLM_F_REQUEST, sequence);
        w.WriteNfGenMsg(NFPROTO_UNSPEC, NFNETLINK_V0, queue);
        WriteVerdictHeader(ref w, verdict, packetId);
        if (hasMark)
        {
            w.PutU32BigEndian(NFQA_MARK, mark);
        }

        if (hasPayload)
        {
            w.PutAttribute(NFQA_PAYLOAD, payload);
        }

        w.EndMessage();
    }

    /// <summary>
    /// NFQNL_MSG_VERDICT_BATCH: the kernel applies the verdict to every packet it still holds for this queue whose
    /// id is not after <paramref name="maxPacketId"/>, and with <paramref name="hasMark"/> sets the mark of each
    /// (nfqnl_recv_verdict_batch; its policy takes NFQA_MARK, never a payload).
    /// </summary>
    internal static void WriteVerdictBatch(ref NetlinkMessageWriter w, ushort queue, uint sequence, uint maxPacketId, uint verdict, bool hasMark = false, uint mark = 0)
    {
        w.BeginMessage(MessageType(NFQNL_MSG_VERDICT_BATCH), NLM_F_REQUEST, sequence);
        w.WriteNfGenMsg(NFPROTO_UNSPEC, NFNETLINK_V0, queue);
        WriteVerdictHeader(ref w, verdict, maxPacketId);
        if (hasMark)
        {
            w.PutU32BigEndian(NFQA_MARK, mark);
        }

        w.EndMessage();
    }

    private static void WriteVerdictHeader(ref NetlinkMessageWriter w, uint verdict, uint id)
    {
        Span<byte> v = w.ReserveAttribute(NFQA_VERDICT_HDR, KernelLayout.NfqVerdictHdr.Size);
        BinaryPrimitives.WriteUInt32BigEndian(v[KernelLayout.NfqVerdictHdr.Verdict..], verdict);
        BinaryPrimitives.WriteUInt32BigEndian(v[KernelLayout.NfqVerdictHdr.Id..], id);
    }
}
