using System.Globalization;
using static Offload.Interop.Ipset.IpsetConstants;

namespace Offload.Interop.Ipset;

/// <summary>
/// The ipset-specific error codes the kernel answers with (numbers from 4096 up, past every errno), as
/// <see cref="Errno"/> values to compare with, and their meaning in words for logs.
/// </summary>
public static class IpsetErrors
{
    /// <summary>IPSET_ERR_PROTOCOL: a required attribute is missing or malformed; for an entry, most often one that does not suit the set (wrong family, no second address for hash:ip,port,ip).</summary>
    public const Errno Protocol = (Errno)IPSET_ERR_PROTOCOL;

    /// <summary>IPSET_ERR_FIND_TYPE: the kernel knows no such set type or revision.</summary>
    public const Errno FindType = (Errno)IPSET_ERR_FIND_TYPE;

    /// <summary>IPSET_ERR_BUSY: the set is in use (an iptables rule refers to it), so it cannot be destroyed.</summary>
    public const Errno Busy = (Errno)IPSET_ERR_BUSY;

    /// <summary>IPSET_ERR_TYPE_MISMATCH: a swap of sets whose types or families differ.</summary>
    public const Errno TypeMismatch = (Errno)IPSET_ERR_TYPE_MISMATCH;

    /// <summary>IPSET_ERR_EXIST_SETNAME2: the second set of a swap or rename does not exist (or, for a rename, does).</summary>
    public const Errno SecondSet = (Errno)IPSET_ERR_EXIST_SETNAME2;

    /// <summary>IPSET_ERR_EXIST: the entry is absent (a test), or present (an add that asked to fail then; we never do).</summary>
    public const Errno Exist = (Errno)IPSET_ERR_EXIST;

    /// <summary>IPSET_ERR_INVALID_FAMILY.</summary>
    public const Errno InvalidFamily = (Errno)IPSET_ERR_INVALID_FAMILY;

    /// <summary>IPSET_ERR_TIMEOUT: a timeout was given for a set created without timeout support.</summary>
    public const Errno Timeout = (Errno)IPSET_ERR_TIMEOUT;

    /// <summary>IPSET_ERR_REFERENCED: the set is referenced by another set or a rule.</summary>
    public const Errno Referenced = (Errno)IPSET_ERR_REFERENCED;

    /// <summary>IPSET_ERR_HASH_FULL: the set holds its maxelem entries already.</summary>
    public const Errno HashFull = (Errno)IPSET_ERR_HASH_FULL;

    /// <summary>IPSET_ERR_INVALID_PROTO: protocol 0.</summary>
    public const Errno InvalidProto = (Errno)IPSET_ERR_INVALID_PROTO;

    /// <summary>IPSET_ERR_MISSING_PROTO: the entry lacks a protocol.</summary>
    public const Errno MissingProto = (Errno)IPSET_ERR_MISSING_PROTO;

    /// <summary>The C name of an ipset code ("IPSET_ERR_HASH_FULL"), or null when <paramref name="code"/> is not one.</summary>
    public static string? NameOf(Errno code) => (int)code switch
    {
        IPSET_ERR_PROTOCOL => nameof(IPSET_ERR_PROTOCOL),
        IPSET_ERR_FIND_TYPE => nameof(IPSET_ERR_FIND_TYPE),
        IPSET_ERR_MAX_SETS => nameof(IPSET_ERR_MAX_SETS),
        IPSET_ERR_BUSY => nameof(IPSET_ERR_BUSY),
        IPSET_ERR_EXIST_SETNAME2 => nameof(IPSET_ERR_EXIST_SETNAME2),
        IPSET_ERR_TYPE_MISMATCH => nameof(IPSET_ERR_TYPE_MISMATCH),
        IPSET_ERR_EXIST => nameof(IPSET_ERR_EXIST),
        IPSET_ERR_INVALID_CIDR => nameof(IPSET_ERR_INVALID_CIDR),
        IPSET_ERR_INVALID_NETMASK => nameof(IPSET_ERR_INVALID_NETMASK),
        IPSET_ERR_INVALID_FAMILY => nameof(IPSET_ERR_INVALID_FAMILY),
        IPSET_ERR_TIMEOUT => nameof(IPSET_ERR_TIMEOUT),
        IPSET_ERR_REFERENCED => nameof(IPSET_ERR_REFERENCED),
        IPSET_ERR_IPADDR_IPV4 => nameof(IPSET_ERR_IPADDR_IPV4),
        IPSET_ERR_IPADDR_IPV6 => nameof(IPSET_ERR_IPADDR_IPV6),
        IPSET_ERR_COUNTER => nameof(IPSET_ERR_COUNTER),
        IPSET_ERR_COMMENT => nameof(IPSET_ERR_COMMENT),
        IPSET_ERR_INVALID_MARKMASK => nameof(IPSET_ERR_INVALID_MARKMASK),
        IPSET_ERR_SKBINFO => nameof(IPSET_ERR_SKBINFO),
        IPSET_ERR_HASH_FULL => nameof(IPSET_ERR_HASH_FULL),
        IPSET_ERR_HASH_ELEM => nameof(IPSET_ERR_HASH_ELEM),
        IPSET_ERR_INVALID_PROTO => nameof(IPSET_ERR_INVALID_PROTO),
        IPSET_ERR_MISSING_PROTO => nameof(IPSET_ERR_MISSING_PROTO),
        IPSET_ERR_HASH_RANGE_UNSUPPORTED => nameof(IPSET_ERR_HASH_RANGE_UNSUPPORTED),
        IPSET_ERR_HASH_RANGE => nameof(IPSET_ERR_HASH_RANGE),
        _ => null,
    };

    /// <summary>A code in words, errno or ipset, for logs (allocates: error paths only).</summary>
    public static string Describe(Errno code)
    {
        string? name = NameOf(code);
        if (name is not null)
        {
            return $"{name} ({((int)code).ToString(CultureInfo.InvariantCulture)})";
        }

        return Enum.IsDefined(code) ? code.ToString() : "errno " + ((int)code).ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>What usually causes <paramref name="code"/>, as a hint for <see cref="NetlinkException"/>; null if nothing to add.</summary>
    internal static string? Hint(Errno code) => (int)code switch
    {
        IPSET_ERR_PROTOCOL => "IPSET_ERR_PROTOCOL: the request lacks or mangles an attribute; for an entry, most often one that does not suit the set (other family, no second address for hash:ip,port,ip)",
        IPSET_ERR_FIND_TYPE => "IPSET_ERR_FIND_TYPE: the kernel lacks this set type or revision",
        IPSET_ERR_MAX_SETS => "IPSET_ERR_MAX_SETS: the kernel holds as many sets as it allows",
        IPSET_ERR_BUSY => "IPSET_ERR_BUSY: an iptables rule or another set still refers to the set",
        IPSET_ERR_TYPE_MISMATCH => "IPSET_ERR_TYPE_MISMATCH",
        IPSET_ERR_EXIST => "IPSET_ERR_EXIST",
        IPSET_ERR_INVALID_FAMILY => "IPSET_ERR_INVALID_FAMILY: the set type does not support this family",
        IPSET_ERR_TIMEOUT => "IPSET_ERR_TIMEOUT: the set was created without timeout support",
        IPSET_ERR_REFERENCED => "IPSET_ERR_REFERENCED: the set is in use",
        IPSET_ERR_HASH_FULL => "IPSET_ERR_HASH_FULL: the set holds its maxelem entries",
        IPSET_ERR_INVALID_PROTO => "IPSET_ERR_INVALID_PROTO",
        IPSET_ERR_MISSING_PROTO => "IPSET_ERR_MISSING_PROTO",
        _ => NameOf(code),
    };
}
