namespace Offload.Interop.Nfqueue;

/// <summary>
/// Constants of &lt;linux/netfilter/nfnetlink_queue.h&gt; and &lt;linux/netfilter.h&gt;, named as in C.
/// ConstantsTests compiles every one of them against the real headers.
/// </summary>
internal static class NfqConstants
{
    // enum nfqnl_msg_types
    internal const byte NFQNL_MSG_PACKET = 0;
    internal const byte NFQNL_MSG_VERDICT = 1;
    internal const byte NFQNL_MSG_CONFIG = 2;
    internal const byte NFQNL_MSG_VERDICT_BATCH = 3;

    // enum nfqnl_attr_type
    internal const ushort NFQA_PACKET_HDR = 1;
    internal const ushort NFQA_VERDICT_HDR = 2;
    internal const ushort NFQA_MARK = 3;
    internal const ushort NFQA_TIMESTAMP = 4;
    internal const ushort NFQA_IFINDEX_INDEV = 5;
    internal const ushort NFQA_IFINDEX_OUTDEV = 6;
    internal const ushort NFQA_IFINDEX_PHYSINDEV = 7;
    internal const ushort NFQA_IFINDEX_PHYSOUTDEV = 8;
    internal const ushort NFQA_HWADDR = 9;
    internal const ushort NFQA_PAYLOAD = 10;
    internal const ushort NFQA_CT = 11;
    internal const ushort NFQA_CT_INFO = 12;
    internal const ushort NFQA_CAP_LEN = 13;
    internal const ushort NFQA_SKB_INFO = 14;
    internal const ushort NFQA_EXP = 15;
    internal const ushort NFQA_UID = 16;
    internal const ushort NFQA_GID = 17;
    internal const ushort NFQA_SECCTX = 18;
    internal const ushort NFQA_VLAN = 19;
    internal const ushort NFQA_L2HDR = 20;
    internal const ushort NFQA_PRIORITY = 21;

    // enum nfqnl_msg_config_cmds
    internal const byte NFQNL_CFG_CMD_NONE = 0;
    internal const byte NFQNL_CFG_CMD_BIND = 1;
    internal const byte NFQNL_CFG_CMD_UNBIND = 2;
    internal const byte NFQNL_CFG_CMD_PF_BIND = 3;
    internal const byte NFQNL_CFG_CMD_PF_UNBIND = 4;

    // enum nfqnl_config_mode
    internal const byte NFQNL_COPY_NONE = 0;
    internal const byte NFQNL_COPY_META = 1;
    internal const byte NFQNL_COPY_PACKET = 2;

    // enum nfqnl_attr_config
    internal const ushort NFQA_CFG_CMD = 1;
    internal const ushort NFQA_CFG_PARAMS = 2;
    internal const ushort NFQA_CFG_QUEUE_MAXLEN = 3;
    internal const ushort NFQA_CFG_MASK = 4;
    internal const ushort NFQA_CFG_FLAGS = 5;

    internal const uint NFQA_CFG_F_FAIL_OPEN = 1 << 0;
    internal const uint NFQA_CFG_F_CONNTRACK = 1 << 1;
    internal const uint NFQA_CFG_F_GSO = 1 << 2;
    internal const uint NFQA_CFG_F_UID_GID = 1 << 3;
    internal const uint NFQA_CFG_F_SECCTX = 1 << 4;
    internal const uint NFQA_CFG_F_MAX = 1 << 5;

    internal const uint NFQA_SKB_CSUMNOTREADY = 1 << 0;
    internal const uint NFQA_SKB_GSO = 1 << 1;
    internal const uint NFQA_SKB_CSUM_NOTVERIFIED = 1 << 2;

    // <linux/netfilter.h> verdicts, hooks, families.
    internal const uint NF_DROP = 0;
    internal const uint NF_ACCEPT = 1;
    internal const uint NF_STOLEN = 2;
    internal const uint NF_QUEUE = 3;
    internal const uint NF_REPEAT = 4;
    internal const uint NF_VERDICT_MASK = 0x000000ff;

    internal const byte NF_INET_PRE_ROUTING = 0;
    internal const byte NF_INET_LOCAL_IN = 1;
    internal const byte NF_INET_FORWARD = 2;
    internal const byte NF_INET_LOCAL_OUT = 3;
    internal const byte NF_INET_POST_ROUTING = 4;

    internal const byte NFPROTO_UNSPEC = 0;
    internal const byte NFPROTO_IPV4 = 2;
    internal const byte NFPROTO_IPV6 = 10;

    /// <summary>The largest copy range: nla_len is 16 bits and includes the attribute header.</summary>
    internal const int MaxCopyRange = ushort.MaxValue - Netlink.NetlinkConstants.NLA_HDRLEN;

    /// <summary>nlmsg_type of a queue message: subsystem in the high byte.</summary>
    internal static ushort MessageType(byte message) => (ushort)((Netlink.NetlinkConstants.NFNL_SUBSYS_QUEUE << 8) | message);
}
