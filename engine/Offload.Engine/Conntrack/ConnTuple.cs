using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Offload.Engine.Packets;

namespace Offload.Engine.Conntrack;

/// <summary>
/// What identifies one direction of a connection, as the kernel's <c>nf_conntrack_tuple</c>:
/// addresses, protocol, and per protocol the "ports". For ICMP and ICMPv6 queries the source
/// port holds the identifier and the destination port holds <c>type &lt;&lt; 8 | code</c>.
/// </summary>
public struct ConnTuple : IEquatable<ConnTuple>
{
    public InetAddress Source;
    public InetAddress Destination;
    public ushort SourcePort;
    public ushort DestinationPort;
    public byte Protocol;

    /// <summary>4 or 6.</summary>
    public byte Family;

    public ConnTuple(byte family, byte protocol, InetAddress source, ushort sourcePort, InetAddress destination, ushort destinationPort)
    {
        Family = family;
        Protocol = protocol;
        Source = source;
        SourcePort = sourcePort;
        Destination = destination;
        DestinationPort = destinationPort;
    }

    /// <summary>True for ICMP and ICMPv6, whose "ports" are an identifier and a type.</summary>
    public readonly bool IsIcmp => Protocol is IpProtocol.Icmp or IpProtocol.IcmpV6;

    /// <summary>The ICMP type of a query tuple.</summary>
    public readonly byte IcmpType => (byte)(DestinationPort >> 8);

    /// <summary>
    /// The tuple of the answer to a packet with this tuple: addresses and ports swapped; for ICMP the
    /// identifier stays and the type becomes its reply type. False when an ICMP type has no answer.
    /// </summary>
    public readonly bool TryInvert(out ConnTuple inverse)
    {
        inverse = new ConnTuple(Family, Protocol, Destination, DestinationPort, Source, SourcePort);
        if (!IsIcmp)
        {
            return true;
        }

        inverse.SourcePort = SourcePort;
        int replyType = Icmp.ReplyType(Protocol, IcmpType);
        if (replyType < 0)
        {
            return false;
        }

        inverse.DestinationPort = (ushort)((replyType << 8) | (DestinationPort & 0xFF));
        return true;
    }

    /// <summary>The inverse tuple; for an ICMP type without an answer the type is kept.</summary>
    public readonly ConnTuple Invert()
    {
        if (!TryInvert(out var inverse))
        {
            inverse.DestinationPort = DestinationPort;
        }

        return inverse;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly bool Equals(ConnTuple other) =>
        Source.Equals(other.Source)
        && Destination.Equals(other.Destination)
        && SourcePort == other.SourcePort
        && DestinationPort == other.DestinationPort
        && Protocol == other.Protocol
        && Family == other.Family;

    public override readonly bool Equals(object? obj) => obj is ConnTuple other && Equals(other);

    public override readonly int GetHashCode() => (int)Hash(0);

    /// <summary>A keyed hash of the tuple. The key is secret in a live daemon, so that nobody outside can aim at one bucket.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly ulong Hash(ulong key)
    {
        ulong h = key ^ ((ulong)Family << 56) ^ ((ulong)Protocol << 48) ^ ((ulong)SourcePort << 16) ^ DestinationPort;
        h = Mix(h, Source.High);
        h = Mix(h, Source.Low);
        h = Mix(h, Destination.High);
        h = Mix(h, Destination.Low);
        return h ^ (h >> 29);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Mix(ulong h, ulong v)
    {
        h ^= v;
        h *= 0x9E3779B97F4A7C15UL;
        return h ^ (h >> 32);
    }

    public static bool operator ==(ConnTuple a, ConnTuple b) => a.Equals(b);

    public static bool operator !=(ConnTuple a, ConnTuple b) => !a.Equals(b);

    /// <summary>Formats like <c>conntrack -L</c>: <c>src=... dst=... sport=... dport=...</c> (allocates; display only).</summary>
    public override readonly string ToString()
    {
        string src = Source.ToString(Family);
        string dst = Destination.ToString(Family);
        return IsIcmp
            ? $"src={src} dst={dst} type={IcmpType} code={DestinationPort & 0xFF} id={SourcePort}"
            : Protocol is IpProtocol.Tcp or IpProtocol.Udp or IpProtocol.UdpLite or IpProtocol.Sctp
                ? $"src={src} dst={dst} sport={SourcePort} dport={DestinationPort}"
                : $"src={src} dst={dst}";
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

    /// <summary>True for the query types that may start a tracked "connection" (the kernel's valid_new).</summary>
    public static bool IsQuery(byte protocol, byte type) => protocol == IpProtocol.Icmp
        ? type is 8 or 13 or 15 or 17
        : type is 128 or 139;
}
