using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Offload.Engine.Packets;

namespace Offload.Engine.Conntrack;

/// <summary>
/// What the engine does with tuples beyond what helpers see (<see cref="ConnTuple"/> lives in the SDK): read them
/// from packets, invert them, hash them into the tables.
/// </summary>
public static class ConnTuples
{
    /// <summary>
    /// The tuple of the answer to a packet with this tuple: addresses and ports swapped; for ICMP the
    /// identifier stays and the type becomes its reply type. False when an ICMP type has no answer.
    /// </summary>
    public static bool TryInvert(this in ConnTuple tuple, out ConnTuple inverse)
    {
        inverse = new ConnTuple(tuple.Family, tuple.Protocol, tuple.Destination, tuple.DestinationPort, tuple.Source, tuple.SourcePort);
        if (!tuple.IsIcmp)
        {
            return true;
        }

        inverse.SourcePort = tuple.SourcePort;
        int replyType = Icmp.ReplyType(tuple.Protocol, tuple.IcmpType);
        if (replyType < 0)
        {
            return false;
        }

        inverse.DestinationPort = (ushort)((replyType << 8) | (tuple.DestinationPort & 0xFF));
        return true;
    }

    /// <summary>The inverse tuple; for an ICMP type without an answer the type is kept.</summary>
    public static ConnTuple Invert(this in ConnTuple tuple)
    {
        if (!tuple.TryInvert(out var inverse))
        {
            inverse.DestinationPort = tuple.DestinationPort;
        }

        return inverse;
    }

    /// <summary>A keyed hash of the tuple. The key is secret in a live daemon, so that nobody outside can aim at one bucket.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Hash(this in ConnTuple tuple, ulong key)
    {
        ulong h = key ^ ((ulong)tuple.Family << 56) ^ ((ulong)tuple.Protocol << 48) ^ ((ulong)tuple.SourcePort << 16) ^ tuple.DestinationPort;
        h = Mix(h, tuple.Source.High);
        h = Mix(h, tuple.Source.Low);
        h = Mix(h, tuple.Destination.High);
        h = Mix(h, tuple.Destination.Low);
        return h ^ (h >> 29);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Mix(ulong h, ulong v)
    {
        h ^= v;
        h *= 0x9E3779B97F4A7C15UL;
        return h ^ (h >> 32);
    }

    /// <summary>
    /// Reads the tuple of a parsed packet. False when the packet has no trackable tuple (a later fragment, an error).
    /// For ICMP errors this gives the outer tuple; use <see cref="Icmp.IsError"/> first.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> packet, in PacketInfo info, out ConnTuple tuple)
    {
        tuple = default;
        if (!info.HasTransportHeader)
        {
            return false;
        }

        tuple.Family = info.Family;
        tuple.Protocol = info.Protocol;
        tuple.Source = InetAddress.Read(info.Family, packet.Slice(info.SourceAddressOffset));
        tuple.Destination = InetAddress.Read(info.Family, packet.Slice(info.DestinationAddressOffset));
        ReadPorts(packet.Slice(info.L4Offset, info.L4Length), info.Protocol, ref tuple);
        return true;
    }

    /// <summary>Reads the protocol part of a tuple from the first bytes of a transport header (which may be truncated to 8 bytes, as inside an ICMP error).</summary>
    internal static void ReadPorts(ReadOnlySpan<byte> l4, byte protocol, ref ConnTuple tuple)
    {
        switch (protocol)
        {
            case IpProtocol.Tcp:
            case IpProtocol.Udp:
            case IpProtocol.UdpLite:
            case IpProtocol.Sctp:
                tuple.SourcePort = BinaryPrimitives.ReadUInt16BigEndian(l4);
                tuple.DestinationPort = BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(2));
                break;
            case IpProtocol.Icmp:
            case IpProtocol.IcmpV6:
                tuple.DestinationPort = (ushort)((l4[0] << 8) | l4[1]);
                tuple.SourcePort = BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(4));
                break;
            case IpProtocol.Gre:
                // Enhanced GRE (PPTP) names only its receiver's call ID; the sender's comes from the keymap
                // (GreKeymap.SourceKeyOf). Plain GRE has no keys, as the kernel's generic tracking.
                Gre.GreHeader.TryReadCallId(l4, out tuple.DestinationPort);
                break;
        }
    }
}

/// <summary>ICMP and ICMPv6 type knowledge the tracker needs.</summary>
public static class Icmp
{
    public const byte EchoReply = 0;
    public const byte DestinationUnreachable = 3;
    public const byte SourceQuench = 4;
    public const byte Redirect = 5;
    public const byte EchoRequest = 8;
    public const byte TimeExceeded = 11;
    public const byte ParameterProblem = 12;
    public const byte V6DestinationUnreachable = 1;
    public const byte V6PacketTooBig = 2;
    public const byte V6TimeExceeded = 3;
    public const byte V6ParameterProblem = 4;
    public const byte V6EchoRequest = 128;
    public const byte V6EchoReply = 129;

    /// <summary>True for the error types that quote the packet that caused them.</summary>
    public static bool IsError(byte protocol, byte type) => protocol == IpProtocol.Icmp
        ? type is DestinationUnreachable or SourceQuench or Redirect or TimeExceeded or ParameterProblem
        : type is V6DestinationUnreachable or V6PacketTooBig or V6TimeExceeded or V6ParameterProblem;

    /// <summary>The type answering a query type, or -1 when the type is not a query/answer pair.</summary>
    public static int ReplyType(byte protocol, byte type)
    {
        if (protocol == IpProtocol.Icmp)
        {
            return type switch
            {
                8 => 0,
                0 => 8,
                13 => 14,
                14 => 13,
                15 => 16,
                16 => 15,
                17 => 18,
                18 => 17,
                _ => -1,
            };
        }

        return type switch
        {
            128 => 129,
            129 => 128,
            139 => 140,
            140 => 139,
            _ => -1,
        };
    }

    /// <summary>
    /// True for the ICMPv6 types the kernel's conntrack leaves untracked (its noct_valid_new): MLD query, report and
    /// done, router and neighbour solicitation and advertisement, MLDv2 report. They never leave their link.
    /// </summary>
    public static bool IsLinkScoped(byte type) => type is >= 130 and <= 136 or 143;

    /// <summary>True for the query types that may start a tracked "connection" (the kernel's valid_new).</summary>
    public static bool IsQuery(byte protocol, byte type) => protocol == IpProtocol.Icmp
        ? type is 8 or 13 or 15 or 17
        : type is 128 or 139;
}
