namespace Offload.Interop.Netlink;

/// <summary>
/// Constants of &lt;linux/netlink.h&gt; and &lt;linux/netfilter/nfnetlink.h&gt;, named as in C so the kernel's
/// documentation reads as ours. ConstantsTests compiles every one of them against the real headers.
/// </summary>
internal static class NetlinkConstants
{
    internal const int NETLINK_ROUTE = 0;
    internal const int NETLINK_NETFILTER = 12;

    internal const ushort NLMSG_NOOP = 0x1;
    internal const ushort NLMSG_ERROR = 0x2;
    internal const ushort NLMSG_DONE = 0x3;
    internal const ushort NLMSG_OVERRUN = 0x4;
    internal const ushort NLMSG_MIN_TYPE = 0x10;
    internal const int NLMSG_ALIGNTO = 4;
    internal const int NLMSG_HDRLEN = 16;

    internal const ushort NLM_F_REQUEST = 0x01;
    internal const ushort NLM_F_MULTI = 0x02;
    internal const ushort NLM_F_ACK = 0x04;
    internal const ushort NLM_F_ECHO = 0x08;
    internal const ushort NLM_F_DUMP_INTR = 0x10;
    internal const ushort NLM_F_CAPPED = 0x100;
    internal const ushort NLM_F_ACK_TLVS = 0x200;

    // Socket options at SOL_NETLINK.
    internal const int NETLINK_ADD_MEMBERSHIP = 1;
    internal const int NETLINK_NO_ENOBUFS = 5;
    internal const int NETLINK_CAP_ACK = 10;
    internal const int NETLINK_EXT_ACK = 11;

    internal const ushort NLA_F_NESTED = 1 << 15;
    internal const ushort NLA_F_NET_BYTEORDER = 1 << 14;
    internal const ushort NLA_TYPE_MASK = unchecked((ushort)~(NLA_F_NESTED | NLA_F_NET_BYTEORDER));
    internal const int NLA_ALIGNTO = 4;
    internal const int NLA_HDRLEN = 4;

    internal const ushort NLMSGERR_ATTR_MSG = 1;
    internal const ushort NLMSGERR_ATTR_OFFS = 2;
    internal const ushort NLMSGERR_ATTR_COOKIE = 3;

    internal const byte NFNETLINK_V0 = 0;
    internal const byte NFNL_SUBSYS_QUEUE = 3;

    /// <summary>NLMSG_ALIGN and NLA_ALIGN: both round up to four bytes.</summary>
    internal static int Align(int length) => (length + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1);
}

/// <summary>
/// Sizes and field offsets of the kernel structures we read and write byte by byte. StructLayoutTests compares
/// every value with sizeof/offsetof from the real headers.
/// </summary>
internal static class KernelLayout
{
    /// <summary>struct nlmsghdr (host byte order).</summary>
    internal static class NlMsgHdr
    {
        internal const int Size = 16;
        internal const int Length = 0;
        internal const int Type = 4;
        internal const int Flags = 6;
        internal const int Sequence = 8;
        internal const int PortId = 12;
    }

    /// <summary>struct nfgenmsg (res_id in network order).</summary>
    internal static class NfGenMsg
    {
        internal const int Size = 4;
        internal const int Family = 0;
        internal const int Version = 1;
        internal const int ResourceId = 2;
    }

    /// <summary>struct nlattr (host byte order).</summary>
    internal static class NlAttr
    {
        internal const int Size = 4;
        internal const int Length = 0;
        internal const int Type = 2;
    }

    /// <summary>struct nlmsgerr: the error code, then the header of the request it answers.</summary>
    internal static class NlMsgErr
    {
        internal const int Size = 20;
        internal const int Error = 0;
        internal const int Message = 4;
    }

    /// <summary>struct nfqnl_msg_packet_hdr (packed, network order).</summary>
    internal static class NfqPacketHdr
    {
        internal const int Size = 7;
        internal const int PacketId = 0;
        internal const int HwProtocol = 4;
        internal const int Hook = 6;
    }

    /// <summary>struct nfqnl_msg_verdict_hdr (network order).</summary>
    internal static class NfqVerdictHdr
    {
        internal const int Size = 8;
        internal const int Verdict = 0;
        internal const int Id = 4;
    }

    /// <summary>struct nfqnl_msg_config_cmd.</summary>
    internal static class NfqConfigCmd
    {
        internal const int Size = 4;
        internal const int Command = 0;
        internal const int Pad = 1;
        internal const int Pf = 2;
    }

    /// <summary>struct nfqnl_msg_config_params (packed, network order).</summary>
    internal static class NfqConfigParams
    {
        internal const int Size = 5;
        internal const int CopyRange = 0;
        internal const int CopyMode = 4;
    }

    /// <summary>struct nfqnl_msg_packet_timestamp (network order).</summary>
    internal static class NfqPacketTimestamp
    {
        internal const int Size = 16;
        internal const int Seconds = 0;
        internal const int Microseconds = 8;
    }
}
