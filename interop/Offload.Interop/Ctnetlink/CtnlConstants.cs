namespace Offload.Interop.Ctnetlink;

/// <summary>
/// Constants of &lt;linux/netfilter/nfnetlink_conntrack.h&gt;, nf_conntrack_common.h, nf_conntrack_tcp.h and the
/// nfnetlink groups, named as in C. ConstantsTests compiles every one of them against the real headers.
/// </summary>
internal static class CtnlConstants
{
    // nfnetlink: the subsystem in nlmsg_type's high byte, and the multicast group of destroyed entries.
    internal const byte NFNL_SUBSYS_CTNETLINK = 1;
    internal const int NFNLGRP_CONNTRACK_DESTROY = 3;

    // Request flags of a new object (linux/netlink.h): create it, and fail with EEXIST rather than update one that is there.
    internal const ushort NLM_F_EXCL = 0x200;
    internal const ushort NLM_F_CREATE = 0x400;

    // enum cntl_msg_types: nlmsg_type's low byte.
    internal const byte IPCTNL_MSG_CT_NEW = 0;
    internal const byte IPCTNL_MSG_CT_GET = 1;
    internal const byte IPCTNL_MSG_CT_DELETE = 2;

    // enum ctattr_type
    internal const ushort CTA_TUPLE_ORIG = 1;
    internal const ushort CTA_TUPLE_REPLY = 2;
    internal const ushort CTA_STATUS = 3;
    internal const ushort CTA_PROTOINFO = 4;
    internal const ushort CTA_NAT_SRC = 6;
    internal const ushort CTA_TIMEOUT = 7;
    internal const ushort CTA_MARK = 8;
    internal const ushort CTA_NAT_DST = 13;

    // enum ctattr_tuple
    internal const ushort CTA_TUPLE_IP = 1;
    internal const ushort CTA_TUPLE_PROTO = 2;

    // enum ctattr_ip
    internal const ushort CTA_IP_V4_SRC = 1;
    internal const ushort CTA_IP_V4_DST = 2;
    internal const ushort CTA_IP_V6_SRC = 3;
    internal const ushort CTA_IP_V6_DST = 4;

    // enum ctattr_l4proto
    internal const ushort CTA_PROTO_NUM = 1;
    internal const ushort CTA_PROTO_SRC_PORT = 2;
    internal const ushort CTA_PROTO_DST_PORT = 3;

    // enum ctattr_protoinfo and ctattr_protoinfo_tcp
    internal const ushort CTA_PROTOINFO_TCP = 1;
    internal const ushort CTA_PROTOINFO_TCP_STATE = 1;
    internal const ushort CTA_PROTOINFO_TCP_WSCALE_ORIGINAL = 2;
    internal const ushort CTA_PROTOINFO_TCP_WSCALE_REPLY = 3;
    internal const ushort CTA_PROTOINFO_TCP_FLAGS_ORIGINAL = 4;
    internal const ushort CTA_PROTOINFO_TCP_FLAGS_REPLY = 5;

    // enum ctattr_nat and ctattr_protonat
    internal const ushort CTA_NAT_V4_MINIP = 1;
    internal const ushort CTA_NAT_V4_MAXIP = 2;
    internal const ushort CTA_NAT_PROTO = 3;
    internal const ushort CTA_NAT_V6_MINIP = 4;
    internal const ushort CTA_NAT_V6_MAXIP = 5;
    internal const ushort CTA_PROTONAT_PORT_MIN = 1;
    internal const ushort CTA_PROTONAT_PORT_MAX = 2;

    // enum ip_conntrack_status
    internal const uint IPS_EXPECTED = 1 << 0;
    internal const uint IPS_SEEN_REPLY = 1 << 1;
    internal const uint IPS_ASSURED = 1 << 2;
    internal const uint IPS_CONFIRMED = 1 << 3;
    internal const uint IPS_SRC_NAT = 1 << 4;
    internal const uint IPS_DST_NAT = 1 << 5;
    internal const uint IPS_SRC_NAT_DONE = 1 << 7;
    internal const uint IPS_DST_NAT_DONE = 1 << 8;

    // enum tcp_conntrack
    internal const byte TCP_CONNTRACK_ESTABLISHED = 3;

    // struct nf_ct_tcp_flags's flags
    internal const byte IP_CT_TCP_FLAG_WINDOW_SCALE = 0x01;
    internal const byte IP_CT_TCP_FLAG_SACK_PERM = 0x02;
    internal const byte IP_CT_TCP_FLAG_BE_LIBERAL = 0x08;

    /// <summary>Layout of struct nf_ct_tcp_flags (StructLayoutTests checks it).</summary>
    internal static class TcpFlagsLayout
    {
        internal const int Size = 2;
        internal const int Flags = 0;
        internal const int Mask = 1;
    }
}
