using System.Buffers.Binary;
using Offload.Interop.Netlink;
using static Offload.Interop.Ipset.IpsetConstants;
using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Tests.Ipset;

/// <summary>
/// Netlink messages the ipset tool (Debian's ipset 7.17) sent to Linux 6.18, and the kernel's answers, captured with
/// strace by record-ipset-data.py into Data/: bytes of record for our encoder to match. Each file names the command
/// that produced it; the set is "offl" (inet), "offl6" (inet6) or "offlp" (hash:ip,port).
/// </summary>
internal static class IpsetRecorded
{
    /// <summary>IPSET_CMD_PROTOCOL, carrying protocol 7, no NLM_F_ACK.</summary>
    internal const string RequestProtocol = "ipset-request-protocol.bin";

    /// <summary>IPSET_CMD_TYPE for hash:ip,port,ip, family inet.</summary>
    internal const string RequestType = "ipset-request-type-ipportip.bin";

    /// <summary>The kernel's answer to the protocol request: protocol 7, minimum 6.</summary>
    internal const string ReplyProtocol = "ipset-reply-protocol.bin";

    /// <summary>The kernel's answer to the type request: revisions 0 to 6.</summary>
    internal const string ReplyType = "ipset-reply-type-ipportip.bin";

    /// <summary>create offl hash:ip,port,ip family inet timeout 60 maxelem 1024 -exist (revision 6).</summary>
    internal const string CreateIpPortIpInet = "ipset-create-ipportip-inet-timeout.bin";

    /// <summary>create offl6 hash:ip,port,ip family inet6 timeout 60 maxelem 1024 -exist (revision 6).</summary>
    internal const string CreateIpPortIpInet6 = "ipset-create-ipportip-inet6-timeout.bin";

    /// <summary>create offlp hash:ip,port family inet maxelem 65536 -exist (revision 7).</summary>
    internal const string CreateIpPortInet = "ipset-create-ipport-inet.bin";

    /// <summary>add offl 192.0.2.1,udp:5000,192.0.2.2 timeout 30 -exist.</summary>
    internal const string AddIpv4 = "ipset-add-ipportip-ipv4-timeout.bin";

    /// <summary>add offl6 2001:db8::1,udp:5000,2001:db8::2 timeout 30 -exist.</summary>
    internal const string AddIpv6 = "ipset-add-ipportip-ipv6-timeout.bin";

    /// <summary>add offlp 192.0.2.9,tcp:21 -exist.</summary>
    internal const string AddIpPort = "ipset-add-ipport-ipv4.bin";

    /// <summary>del offl 192.0.2.1,udp:5000,192.0.2.2 -exist.</summary>
    internal const string DelIpv4 = "ipset-del-ipportip-ipv4.bin";

    /// <summary>test offl 192.0.2.1,udp:5000,192.0.2.2.</summary>
    internal const string TestIpv4 = "ipset-test-ipportip-ipv4.bin";

    /// <summary>The kernel's answer to that test after the entry was deleted: -IPSET_ERR_EXIST, the request echoed whole.</summary>
    internal const string ReplyTestNotInSet = "ipset-reply-test-not-in-set.bin";

    /// <summary>flush offl.</summary>
    internal const string Flush = "ipset-flush.bin";

    /// <summary>destroy offl -exist.</summary>
    internal const string Destroy = "ipset-destroy.bin";

    internal static byte[] Load(string name) => File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Data", name));

    internal static uint Sequence(byte[] message) => HostOrder.ReadU32(message.AsSpan(KernelLayout.NlMsgHdr.Sequence));

    /// <summary>A recorded answer re-addressed to <paramref name="sequence"/> (an error's echoed request header too).</summary>
    internal static byte[] Answering(string name, uint sequence)
    {
        byte[] bytes = Load(name);
        HostOrder.Write(bytes.AsSpan(KernelLayout.NlMsgHdr.Sequence), sequence);
        if (HostOrder.ReadU16(bytes.AsSpan(KernelLayout.NlMsgHdr.Type)) == NLMSG_ERROR)
        {
            HostOrder.Write(bytes.AsSpan(NLMSG_HDRLEN + KernelLayout.NlMsgErr.Message + KernelLayout.NlMsgHdr.Sequence), sequence);
        }

        return bytes;
    }

    /// <summary>The recorded type answer with its IPSET_ATTR_REVISION set to <paramref name="revision"/>.</summary>
    internal static byte[] TypeReplyWithRevision(uint sequence, byte revision)
    {
        byte[] bytes = Answering(ReplyType, sequence);
        int offset = AttributeValueOffset(bytes, IPSET_ATTR_REVISION);
        bytes[offset] = revision;
        return bytes;
    }

    /// <summary>
    /// The tool ends every add and delete with IPSET_ATTR_LINENO 0, which the kernel reads only to number the
    /// errors of a restore; we do not send it. This removes it (the last attribute of IPSET_ATTR_DATA, which is
    /// the message's last attribute), after checking that it is exactly that, and fixes both lengths.
    /// </summary>
    internal static byte[] WithoutLineNumber(byte[] message)
    {
        int data = AttributeOffset(message, IPSET_ATTR_DATA);
        ushort dataLength = HostOrder.ReadU16(message.AsSpan(data));
        if (data + dataLength != message.Length)
        {
            throw new InvalidDataException("IPSET_ATTR_DATA is not the message's last attribute");
        }

        ReadOnlySpan<byte> last = message.AsSpan(message.Length - 8);
        if (HostOrder.ReadU16(last) != 8 || HostOrder.ReadU16(last[2..]) != (IPSET_ATTR_LINENO | NLA_F_NET_BYTEORDER) || BinaryPrimitives.ReadUInt32BigEndian(last[4..]) != 0)
        {
            throw new InvalidDataException("the message does not end with IPSET_ATTR_LINENO 0");
        }

        byte[] trimmed = message[..^8];
        HostOrder.Write(trimmed.AsSpan(KernelLayout.NlMsgHdr.Length), (uint)trimmed.Length);
        HostOrder.Write(trimmed.AsSpan(data), (ushort)(dataLength - 8));
        return trimmed;
    }

    private static int AttributeOffset(byte[] message, ushort type)
    {
        int offset = NLMSG_HDRLEN + KernelLayout.NfGenMsg.Size;
        while (offset + NLA_HDRLEN <= message.Length)
        {
            ushort length = HostOrder.ReadU16(message.AsSpan(offset));
            if ((HostOrder.ReadU16(message.AsSpan(offset + 2)) & NLA_TYPE_MASK) == type)
            {
                return offset;
            }

            offset += Align(length);
        }

        throw new InvalidDataException($"no attribute {type}");
    }

    private static int AttributeValueOffset(byte[] message, ushort type) => AttributeOffset(message, type) + NLA_HDRLEN;
}
