using System.Buffers.Binary;
using Offload.Interop.Netlink;
using static Offload.Interop.Ctnetlink.CtnlConstants;
using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Ctnetlink;

/// <summary>
/// The ctnetlink requests we send and the messages we read back (a GET's answer, a destroy event), laid out by the
/// shared writer and read by the shared readers.
/// </summary>
/// <remarks>
/// A created entry carries the reply tuple untranslated (the inverse of the original) and the NAT as CTA_NAT_SRC /
/// CTA_NAT_DST ranges of one address and one port: the kernel's NAT setup (nfnetlink_parse_nat_setup) then computes
/// the translated reply itself, sets IPS_SRC_NAT / IPS_DST_NAT and both NAT_DONE bits (a null binding for the
/// manipulation not given), and enters the source binding in its bysource table, exactly as if its own NAT rule had
/// chosen that address and port. A translated reply given directly would be taken as is, but without those bits the
/// kernel would not translate a single packet (the status bits of NAT cannot be set through CTA_STATUS).
/// </remarks>
internal static class CtnlMessages
{
    /// <summary>Room for the largest request we write (IPv6 tuples, both NATs, TCP protocol information).</summary>
    internal const int MaxMessageSize = 512;

    /// <summary>nlmsg_type of a ctnetlink message.</summary>
    internal static ushort MessageType(byte message) => (ushort)((NFNL_SUBSYS_CTNETLINK << 8) | message);

    /// <summary>
    /// IPCTNL_MSG_CT_NEW with NLM_F_CREATE|NLM_F_EXCL: creates the entry, or fails with EEXIST when one of its tuples
    /// is in the table already (never changes an entry that is there).
    /// </summary>
    internal static void WriteNew(ref NetlinkMessageWriter w, uint sequence, in CtnlEntry entry)
    {
        CtnlTuple original = entry.Original;
        w.BeginMessage(MessageType(IPCTNL_MSG_CT_NEW), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, sequence);
        w.WriteNfGenMsg(original.Family, NFNETLINK_V0, 0);
        WriteTuple(ref w, CTA_TUPLE_ORIG, original);
        WriteTuple(ref w, CTA_TUPLE_REPLY, original.Inverted);
        if (entry.IsDestinationNat)
        {
            WriteNat(ref w, CTA_NAT_DST, original, entry.Reply.Source, entry.Reply.SourcePort);
        }

        if (entry.IsSourceNat)
        {
            WriteNat(ref w, CTA_NAT_SRC, original, entry.Reply.Destination, entry.Reply.DestinationPort);
        }

        // Replies were seen and the flow proved itself: ESTABLISHED both ways for a stateful firewall, and spared by early
        // drop. IPS_CONFIRMED is the kernel's (it sets it before it reads CTA_STATUS, and refuses a status that clears it).
        w.PutU32BigEndian(CTA_STATUS, IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED);
        w.PutU32BigEndian(CTA_TIMEOUT, entry.TimeoutSeconds);
        if (original.Protocol == ProtocolTcp)
        {
            WriteTcpInfo(ref w, entry);
        }

        w.EndMessage();
    }

    /// <summary>IPCTNL_MSG_CT_GET of one entry by its original tuple, without NLM_F_ACK: the answer is the entry (or an error).</summary>
    internal static void WriteGet(ref NetlinkMessageWriter w, uint sequence, in CtnlTuple original)
    {
        w.BeginMessage(MessageType(IPCTNL_MSG_CT_GET), NLM_F_REQUEST, sequence);
        w.WriteNfGenMsg(original.Family, NFNETLINK_V0, 0);
        WriteTuple(ref w, CTA_TUPLE_ORIG, original);
        w.EndMessage();
    }

    /// <summary>IPCTNL_MSG_CT_DELETE of one entry by its original tuple.</summary>
    internal static void WriteDelete(ref NetlinkMessageWriter w, uint sequence, in CtnlTuple original)
    {
        w.BeginMessage(MessageType(IPCTNL_MSG_CT_DELETE), NLM_F_REQUEST | NLM_F_ACK, sequence);
        w.WriteNfGenMsg(original.Family, NFNETLINK_V0, 0);
        WriteTuple(ref w, CTA_TUPLE_ORIG, original);
        w.EndMessage();
    }

    /// <summary>
    /// Reads an entry message (a GET's answer, an event): its original and reply tuples and, when present, its status.
    /// False when either tuple is missing or malformed, or the protocol is not one with ports.
    /// </summary>
    internal static bool TryReadEntry(NetlinkMessage message, out CtnlTuple original, out CtnlTuple reply, out uint status)
    {
        original = reply = default;
        status = 0;
        if (message.Payload.Length < KernelLayout.NfGenMsg.Size)
        {
            return false;
        }

        byte family = message.Payload[KernelLayout.NfGenMsg.Family];
        bool haveOriginal = false, haveReply = false;
        AttributeReader r = message.GetAttributes(KernelLayout.NfGenMsg.Size);
        while (r.TryRead(out NetlinkAttribute a))
        {
            switch (a.Type)
            {
                case CTA_TUPLE_ORIG:
                    haveOriginal = TryReadTuple(a.GetNested(), family, out original);
                    break;
                case CTA_TUPLE_REPLY:
                    haveReply = TryReadTuple(a.GetNested(), family, out reply);
                    break;
                case CTA_STATUS:
                    _ = a.TryGetU32BigEndian(out status);
                    break;
                default:
                    break;
            }
        }

        return haveOriginal && haveReply && !r.IsMalformed;
    }

    private const byte ProtocolTcp = 6;

    private static void WriteTuple(ref NetlinkMessageWriter w, ushort type, in CtnlTuple tuple)
    {
        Span<byte> address = stackalloc byte[16];
        int tupleNest = w.BeginNested(type);
        int ipNest = w.BeginNested(CTA_TUPLE_IP);
        bool v4 = tuple.Family == CtnlTuple.Inet;
        int length = tuple.Write(tuple.Source, address);
        w.PutAttribute(v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, address[..length]);
        tuple.Write(tuple.Destination, address);
        w.PutAttribute(v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, address[..length]);
        w.EndNested(ipNest);
        int protoNest = w.BeginNested(CTA_TUPLE_PROTO);
        w.PutU8(CTA_PROTO_NUM, tuple.Protocol);
        w.PutU16BigEndian(CTA_PROTO_SRC_PORT, tuple.SourcePort);
        w.PutU16BigEndian(CTA_PROTO_DST_PORT, tuple.DestinationPort);
        w.EndNested(protoNest);
        w.EndNested(tupleNest);
    }

    /// <summary>A NAT range of exactly one address and one port: the kernel keeps what offloadd chose.</summary>
    private static void WriteNat(ref NetlinkMessageWriter w, ushort type, in CtnlTuple original, UInt128 address, ushort port)
    {
        Span<byte> bytes = stackalloc byte[16];
        int length = original.Write(address, bytes);
        bool v4 = original.Family == CtnlTuple.Inet;
        int nest = w.BeginNested(type);
        w.PutAttribute(v4 ? CTA_NAT_V4_MINIP : CTA_NAT_V6_MINIP, bytes[..length]);
        w.PutAttribute(v4 ? CTA_NAT_V4_MAXIP : CTA_NAT_V6_MAXIP, bytes[..length]);
        int proto = w.BeginNested(CTA_NAT_PROTO);
        w.PutU16BigEndian(CTA_PROTONAT_PORT_MIN, port);
        w.PutU16BigEndian(CTA_PROTONAT_PORT_MAX, port);
        w.EndNested(proto);
        w.EndNested(nest);
    }

    /// <summary>
    /// ESTABLISHED, and liberal window tracking both ways: the kernel picks the flow up in the middle, without the
    /// window history offloadd saw, and must not call the next segments out of window (INVALID, dropped by the guard).
    /// </summary>
    private static void WriteTcpInfo(ref NetlinkMessageWriter w, in CtnlEntry entry)
    {
        bool scaled = entry.WindowScaleOriginal is not null && entry.WindowScaleReply is not null;
        byte flags = (byte)(IP_CT_TCP_FLAG_BE_LIBERAL | (scaled ? IP_CT_TCP_FLAG_WINDOW_SCALE : 0));
        int info = w.BeginNested(CTA_PROTOINFO);
        int tcp = w.BeginNested(CTA_PROTOINFO_TCP);
        w.PutU8(CTA_PROTOINFO_TCP_STATE, TCP_CONNTRACK_ESTABLISHED);
        if (scaled)
        {
            w.PutU8(CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, entry.WindowScaleOriginal!.Value);
            w.PutU8(CTA_PROTOINFO_TCP_WSCALE_REPLY, entry.WindowScaleReply!.Value);
        }

        Span<byte> f = stackalloc byte[TcpFlagsLayout.Size];
        f[TcpFlagsLayout.Flags] = flags;
        f[TcpFlagsLayout.Mask] = flags;
        w.PutAttribute(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, f);
        w.PutAttribute(CTA_PROTOINFO_TCP_FLAGS_REPLY, f);
        w.EndNested(tcp);
        w.EndNested(info);
    }

    private static bool TryReadTuple(AttributeReader r, byte family, out CtnlTuple tuple)
    {
        tuple = default;
        UInt128 source = 0, destination = 0;
        ushort sourcePort = 0, destinationPort = 0;
        byte protocol = 0;
        int found = 0;
        int length = family == CtnlTuple.Inet ? 4 : 16;
        while (r.TryRead(out NetlinkAttribute a))
        {
            if (a.Type == CTA_TUPLE_IP)
            {
                AttributeReader ip = a.GetNested();
                while (ip.TryRead(out NetlinkAttribute b))
                {
                    if (b.Value.Length != length)
                    {
                        continue;
                    }

                    switch (b.Type)
                    {
                        case CTA_IP_V4_SRC or CTA_IP_V6_SRC:
                            source = CtnlTuple.Read(b.Value);
                            found |= 1;
                            break;
                        case CTA_IP_V4_DST or CTA_IP_V6_DST:
                            destination = CtnlTuple.Read(b.Value);
                            found |= 2;
                            break;
                        default:
                            break;
                    }
                }
            }
            else if (a.Type == CTA_TUPLE_PROTO)
            {
                AttributeReader proto = a.GetNested();
                while (proto.TryRead(out NetlinkAttribute b))
                {
                    switch (b.Type)
                    {
                        case CTA_PROTO_NUM when b.TryGetU8(out protocol):
                            found |= 4;
                            break;
                        case CTA_PROTO_SRC_PORT when b.Value.Length == 2:
                            sourcePort = BinaryPrimitives.ReadUInt16BigEndian(b.Value);
                            found |= 8;
                            break;
                        case CTA_PROTO_DST_PORT when b.Value.Length == 2:
                            destinationPort = BinaryPrimitives.ReadUInt16BigEndian(b.Value);
                            found |= 16;
                            break;
                        default:
                            break;
                    }
                }
            }
        }

        if (found != 31 || family is not (CtnlTuple.Inet or CtnlTuple.Inet6))
        {
            return false;
        }

        tuple = new CtnlTuple(family, protocol, source, destination, sourcePort, destinationPort);
        return true;
    }
}
