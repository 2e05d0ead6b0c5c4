using System.Buffers.Binary;
using Offload.Interop.Netlink;

namespace Offload.Interop.Tests.Support;

/// <summary>
/// Netlink datagrams the real kernel (6.18) sent to our socket, recorded by Integration/RecordingTests.cs into
/// Data/: bytes of record, not of our imagination.
/// </summary>
internal static class Recorded
{
    /// <summary>Bind acknowledgement (NLM_F_CAPPED, request sequence 1, our port 0x2acd).</summary>
    internal const string BindAck = "ack-config-bind.bin";

    /// <summary>UDP 192.0.2.1:48889 → 192.0.2.2:9 "offload-capture", queued at mangle OUTPUT with mark 42, packet id 1, outdev 2.</summary>
    internal const string PacketLocalOut = "packet-udp-ipv4-local-out.bin";

    /// <summary>UDP → 192.0.2.2:9 "offload-arrival" queued at raw PREROUTING: indev 2, a hardware address, packet id 1.</summary>
    internal const string PacketPrerouting = "packet-udp-ipv4-prerouting.bin";

    /// <summary>ENOENT for a verdict naming a packet id the kernel did not hold (sequence 2).</summary>
    internal const string VerdictEnoent = "error-verdict-enoent.bin";

    /// <summary>ERANGE with extended ack "Attribute failed policy validation" and the offending offset 20 (sequence 3).</summary>
    internal const string PolicyExtack = "error-config-policy-extack.bin";

    /// <summary>EPERM: a second socket tried to bind a queue the first holds (sequence 1).</summary>
    internal const string BindEperm = "error-bind-eperm.bin";

    // nlmsghdr (16) + nfgenmsg (4) + nlattr (4): where NFQA_PACKET_HDR's packet_id sits in a packet message.
    internal const int PacketIdOffset = 24;

    internal static byte[] Load(string name) => File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Data", name));

    /// <summary>A recorded packet datagram with another packet id.</summary>
    internal static byte[] PacketWithId(string name, uint id)
    {
        byte[] bytes = Load(name);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(PacketIdOffset), id);
        return bytes;
    }

    /// <summary>A recorded error datagram answering another sequence number.</summary>
    internal static byte[] ErrorWithSequence(string name, uint sequence)
    {
        byte[] bytes = Load(name);
        HostOrder.Write(bytes.AsSpan(KernelLayout.NlMsgHdr.Sequence), sequence);
        HostOrder.Write(bytes.AsSpan(KernelLayout.NlMsgHdr.Size + KernelLayout.NlMsgErr.Message + KernelLayout.NlMsgHdr.Sequence), sequence);
        return bytes;
    }
}
