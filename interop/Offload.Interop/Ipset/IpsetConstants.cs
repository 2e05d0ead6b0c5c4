namespace Offload.Interop.Ipset;

/// <summary>
/// Constants of &lt;linux/netfilter/ipset/ip_set.h&gt; and ip_set_hash.h, named as in C. ConstantsTests compiles every
/// one of them against the real headers.
/// </summary>
internal static class IpsetConstants
{
    // Versions of the ipset netlink protocol. Commands carry ours in IPSET_ATTR_PROTOCOL; the kernel serves any
    // value from its IPSET_PROTOCOL_MIN up for the commands we send.
    internal const byte IPSET_PROTOCOL = 7;
    internal const byte IPSET_PROTOCOL_MIN = 6;

    /// <summary>Set and type names, the terminating NUL included.</summary>
    internal const int IPSET_MAXNAMELEN = 32;

    // enum ipset_cmd: the low byte of nlmsg_type.
    internal const byte IPSET_CMD_PROTOCOL = 1;
    internal const byte IPSET_CMD_CREATE = 2;
    internal const byte IPSET_CMD_DESTROY = 3;
    internal const byte IPSET_CMD_FLUSH = 4;
    internal const byte IPSET_CMD_SWAP = 6;
    internal const byte IPSET_CMD_ADD = 9;
    internal const byte IPSET_CMD_DEL = 10;
    internal const byte IPSET_CMD_TEST = 11;
    internal const byte IPSET_CMD_TYPE = 13;

    // Attributes at command level.
    internal const ushort IPSET_ATTR_PROTOCOL = 1;
    internal const ushort IPSET_ATTR_SETNAME = 2;
    internal const ushort IPSET_ATTR_TYPENAME = 3;
    internal const ushort IPSET_ATTR_SETNAME2 = 3; // the same attribute: the second set of a rename or swap
    internal const ushort IPSET_ATTR_REVISION = 4;
    internal const ushort IPSET_ATTR_FAMILY = 5;
    internal const ushort IPSET_ATTR_DATA = 7;
    internal const ushort IPSET_ATTR_LINENO = 9;
    internal const ushort IPSET_ATTR_PROTOCOL_MIN = 10;
    internal const ushort IPSET_ATTR_REVISION_MIN = 10;

    // Attributes inside IPSET_ATTR_DATA (create and add/del/test).
    internal const ushort IPSET_ATTR_IP = 1;
    internal const ushort IPSET_ATTR_PORT = 4;
    internal const ushort IPSET_ATTR_TIMEOUT = 6;
    internal const ushort IPSET_ATTR_PROTO = 7;
    internal const ushort IPSET_ATTR_MAXELEM = 19;
    internal const ushort IPSET_ATTR_IP2 = 20;

    // Inside IPSET_ATTR_IP and IPSET_ATTR_IP2.
    internal const ushort IPSET_ATTR_IPADDR_IPV4 = 1;
    internal const ushort IPSET_ATTR_IPADDR_IPV6 = 2;

    // enum ipset_errno: the kernel answers with their negatives, beyond the range of errno proper.
    internal const int IPSET_ERR_PRIVATE = 4096;
    internal const int IPSET_ERR_PROTOCOL = 4097;
    internal const int IPSET_ERR_FIND_TYPE = 4098;
    internal const int IPSET_ERR_MAX_SETS = 4099;
    internal const int IPSET_ERR_BUSY = 4100;
    internal const int IPSET_ERR_EXIST_SETNAME2 = 4101;
    internal const int IPSET_ERR_TYPE_MISMATCH = 4102;
    internal const int IPSET_ERR_EXIST = 4103;
    internal const int IPSET_ERR_INVALID_CIDR = 4104;
    internal const int IPSET_ERR_INVALID_NETMASK = 4105;
    internal const int IPSET_ERR_INVALID_FAMILY = 4106;
    internal const int IPSET_ERR_TIMEOUT = 4107;
    internal const int IPSET_ERR_REFERENCED = 4108;
    internal const int IPSET_ERR_IPADDR_IPV4 = 4109;
    internal const int IPSET_ERR_IPADDR_IPV6 = 4110;
    internal const int IPSET_ERR_COUNTER = 4111;
    internal const int IPSET_ERR_COMMENT = 4112;
    internal const int IPSET_ERR_INVALID_MARKMASK = 4113;
    internal const int IPSET_ERR_SKBINFO = 4114;
    internal const int IPSET_ERR_TYPE_SPECIFIC = 4352;

    // ip_set_hash.h: errors of the hash types.
    internal const int IPSET_ERR_HASH_FULL = 4352;
    internal const int IPSET_ERR_HASH_ELEM = 4353;
    internal const int IPSET_ERR_INVALID_PROTO = 4354;
    internal const int IPSET_ERR_MISSING_PROTO = 4355;
    internal const int IPSET_ERR_HASH_RANGE_UNSUPPORTED = 4356;
    internal const int IPSET_ERR_HASH_RANGE = 4357;

    /// <summary>
    /// The kernel's internal "-exist" flag. It is not sent as an attribute: the kernel sets it for every request
    /// whose nlmsg_flags lack NLM_F_EXCL, which is how we ask for it.
    /// </summary>
    internal const uint IPSET_FLAG_EXIST = 1;

    // From <linux/netlink.h> and <linux/netfilter/nfnetlink.h>, <linux/netfilter.h>: they belong with
    // NetlinkConstants; only ipset uses them so far.
    internal const ushort NLM_F_EXCL = 0x200;
    internal const ushort NLM_F_CREATE = 0x400;
    internal const byte NFNL_SUBSYS_IPSET = 6;
    internal const byte NFPROTO_IPV4 = 2;
    internal const byte NFPROTO_IPV6 = 10;

    /// <summary>nlmsg_type of an ipset command: subsystem in the high byte.</summary>
    internal static ushort MessageType(byte command) => (ushort)((NFNL_SUBSYS_IPSET << 8) | command);
}
