using System.Text;
using Offload.Interop.Netlink;
using static Offload.Interop.Ipset.IpsetConstants;
using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Ipset;

/// <summary>
/// The ipset requests we send, laid out by the shared writer. Every request starts alike: nfgenmsg with family
/// NFPROTO_IPV4, version 0 and resource id 0 (the kernel reads none of them for ipset; this is what the ipset
/// tool sends), then IPSET_ATTR_PROTOCOL. Attribute order follows the ipset tool, so our bytes can be compared
/// with its own.
/// </summary>
internal static class IpsetMessages
{
    /// <summary>Longest set name in bytes, without the NUL the kernel requires after it.</summary>
    internal const int MaxNameBytes = IPSET_MAXNAMELEN - 1;

    private const int CommonSize = NLMSG_HDRLEN + KernelLayout.NfGenMsg.Size + NLA_HDRLEN + 4;

    /// <summary>The largest add/del/test request: longest name, IPv6 addresses, a timeout.</summary>
    internal static readonly int MaxEntryMessageSize =
        CommonSize + NetlinkMessageWriter.AttributeSpace(IPSET_MAXNAMELEN) + NLA_HDRLEN
        + (2 * (NLA_HDRLEN + NetlinkMessageWriter.AttributeSpace(16)))
        + NetlinkMessageWriter.AttributeSpace(2) + NetlinkMessageWriter.AttributeSpace(4) + NetlinkMessageWriter.AttributeSpace(1);

    /// <summary>Room for any other request we send (create carries the most).</summary>
    internal const int MaxControlMessageSize = 256;

    internal static ReadOnlySpan<byte> TypeName(IpsetType type) => type switch
    {
        IpsetType.HashIpPortIp => "hash:ip,port,ip\0"u8,
        IpsetType.HashIpPort => "hash:ip,port\0"u8,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown set type."),
    };

    /// <summary>
    /// The newest revision of each type whose attributes we know: what the ipset tool (7.17) uses with Linux 6.18.
    /// Create asks for the older of this and the kernel's newest.
    /// </summary>
    internal static byte NewestKnownRevision(IpsetType type) => type == IpsetType.HashIpPortIp ? (byte)6 : (byte)7;

    /// <summary>
    /// Encodes <paramref name="name"/> as UTF-8 plus its terminating NUL into <paramref name="destination"/>
    /// (at least <see cref="IPSET_MAXNAMELEN"/> bytes). False when it is empty, too long or holds a NUL.
    /// </summary>
    internal static bool TryEncodeName(ReadOnlySpan<char> name, Span<byte> destination, out int length)
    {
        length = 0;
        if (name.IsEmpty || name.Contains('\0') || destination.Length < IPSET_MAXNAMELEN)
        {
            return false;
        }

        if (!Encoding.UTF8.TryGetBytes(name, destination[..MaxNameBytes], out int written))
        {
            return false;
        }

        destination[written] = 0;
        length = written + 1;
        return true;
    }

    internal static void WriteProtocolRequest(ref NetlinkMessageWriter w, uint sequence)
    {
        // No NLM_F_ACK: the answer is an IPSET_CMD_PROTOCOL message (or an error), as the tool expects it.
        Begin(ref w, IPSET_CMD_PROTOCOL, NLM_F_REQUEST, sequence, IPSET_PROTOCOL);
        w.EndMessage();
    }

    internal static void WriteTypeRequest(ref NetlinkMessageWriter w, uint sequence, byte protocol, IpsetType type, byte family)
    {
        Begin(ref w, IPSET_CMD_TYPE, NLM_F_REQUEST, sequence, protocol);
        w.PutAttribute(IPSET_ATTR_TYPENAME, TypeName(type));
        w.PutU8(IPSET_ATTR_FAMILY, family);
        w.EndMessage();
    }

    /// <summary>
    /// IPSET_CMD_CREATE without NLM_F_EXCL: the kernel then accepts a set of that name that already exists with
    /// the same type and parameters (the tool's "-exist"). NLM_F_CREATE is what the tool sends; the kernel does
    /// not read it.
    /// </summary>
    internal static void WriteCreate(
        ref NetlinkMessageWriter w, uint sequence, byte protocol, scoped ReadOnlySpan<byte> name, IpsetType type, byte revision, byte family, uint? timeoutSeconds, uint maxElements)
    {
        Begin(ref w, IPSET_CMD_CREATE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, sequence, protocol);
        w.PutAttribute(IPSET_ATTR_SETNAME, name);
        w.PutAttribute(IPSET_ATTR_TYPENAME, TypeName(type));
        w.PutU8(IPSET_ATTR_REVISION, revision);
        w.PutU8(IPSET_ATTR_FAMILY, family);
        int data = w.BeginNested(IPSET_ATTR_DATA);
        if (timeoutSeconds is uint timeout)
        {
            w.PutU32BigEndian(IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER, timeout);
        }

        w.PutU32BigEndian(IPSET_ATTR_MAXELEM | NLA_F_NET_BYTEORDER, maxElements);
        w.EndNested(data);
        w.EndMessage();
    }

    /// <summary>A command naming only a set: IPSET_CMD_DESTROY or IPSET_CMD_FLUSH.</summary>
    internal static void WriteSetCommand(ref NetlinkMessageWriter w, byte command, uint sequence, byte protocol, scoped ReadOnlySpan<byte> name)
    {
        Begin(ref w, command, NLM_F_REQUEST | NLM_F_ACK, sequence, protocol);
        w.PutAttribute(IPSET_ATTR_SETNAME, name);
        w.EndMessage();
    }

    /// <summary>IPSET_CMD_SWAP: the two sets exchange their contents (and so their names), at once.</summary>
    internal static void WriteSwap(ref NetlinkMessageWriter w, uint sequence, byte protocol, scoped ReadOnlySpan<byte> name, scoped ReadOnlySpan<byte> name2)
    {
        Begin(ref w, IPSET_CMD_SWAP, NLM_F_REQUEST | NLM_F_ACK, sequence, protocol);
        w.PutAttribute(IPSET_ATTR_SETNAME, name);
        w.PutAttribute(IPSET_ATTR_SETNAME2, name2);
        w.EndMessage();
    }

    /// <summary>
    /// IPSET_CMD_ADD, _DEL or _TEST for one entry, acknowledged. Without NLM_F_EXCL, adding a present entry
    /// refreshes it and deleting an absent one succeeds. Unlike the tool we send no IPSET_ATTR_LINENO: the
    /// kernel only reads it to number errors in a restore.
    /// </summary>
    internal static void WriteEntryCommand(
        ref NetlinkMessageWriter w, byte command, uint sequence, byte protocol, scoped ReadOnlySpan<byte> name, in IpsetEntry entry, uint? timeoutSeconds)
    {
        Begin(ref w, command, NLM_F_REQUEST | NLM_F_ACK, sequence, protocol);
        w.PutAttribute(IPSET_ATTR_SETNAME, name);
        int data = w.BeginNested(IPSET_ATTR_DATA);
        PutAddress(ref w, IPSET_ATTR_IP, entry.Family, entry.Address);
        w.PutU16BigEndian(IPSET_ATTR_PORT | NLA_F_NET_BYTEORDER, entry.Port);
        if (timeoutSeconds is uint timeout)
        {
            w.PutU32BigEndian(IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER, timeout);
        }

        w.PutU8(IPSET_ATTR_PROTO, entry.Protocol);
        if (entry.HasAddress2)
        {
            PutAddress(ref w, IPSET_ATTR_IP2, entry.Family, entry.Address2);
        }

        w.EndNested(data);
        w.EndMessage();
    }

    private static void Begin(ref NetlinkMessageWriter w, byte command, int flags, uint sequence, byte protocol)
    {
        w.BeginMessage(MessageType(command), (ushort)flags, sequence);
        w.WriteNfGenMsg(NFPROTO_IPV4, NFNETLINK_V0, 0);
        w.PutU8(IPSET_ATTR_PROTOCOL, protocol);
    }

    private static void PutAddress(ref NetlinkMessageWriter w, ushort type, byte family, in IpsetAddress address)
    {
        // The kernel insists on both flags: NLA_F_NESTED on the outer attribute, NLA_F_NET_BYTEORDER on the inner.
        int nest = w.BeginNested(type);
        bool v6 = family == IpsetFamily.IPv6;
        Span<byte> value = w.ReserveAttribute((ushort)((v6 ? IPSET_ATTR_IPADDR_IPV6 : IPSET_ATTR_IPADDR_IPV4) | NLA_F_NET_BYTEORDER), v6 ? 16 : 4);
        address.CopyTo(value);
        w.EndNested(nest);
    }
}
