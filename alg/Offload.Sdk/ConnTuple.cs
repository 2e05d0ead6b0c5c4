using System.Runtime.CompilerServices;

namespace Offload.Sdk;

/// <summary>
/// What identifies one direction of a connection, as the kernel's <c>nf_conntrack_tuple</c>:
/// addresses, protocol, and per protocol the "ports". For ICMP and ICMPv6 queries the source
/// port holds the identifier and the destination port holds <c>type &lt;&lt; 8 | code</c>.
/// </summary>
/// <remarks>
/// A connection has two: the original tuple (as its first packet was seen, before NAT) and the reply tuple
/// (as the answers are expected to arrive, after NAT). Helpers get them read-only.
/// </remarks>
public struct ConnTuple : IEquatable<ConnTuple>
{
    /// <summary>The sender's address.</summary>
    public InetAddress Source;

    /// <summary>The receiver's address.</summary>
    public InetAddress Destination;

    /// <summary>The sender's port (the identifier for ICMP queries).</summary>
    public ushort SourcePort;

    /// <summary>The receiver's port (type and code for ICMP queries).</summary>
    public ushort DestinationPort;

    /// <summary>The IP protocol (<see cref="IpProtocol"/>).</summary>
    public byte Protocol;

    /// <summary>4 or 6.</summary>
    public byte Family;

    /// <summary>A tuple from its parts.</summary>
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

    /// <summary>Field-by-field equality.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly bool Equals(ConnTuple other) =>
        Source.Equals(other.Source)
        && Destination.Equals(other.Destination)
        && SourcePort == other.SourcePort
        && DestinationPort == other.DestinationPort
        && Protocol == other.Protocol
        && Family == other.Family;

    /// <inheritdoc/>
    public override readonly bool Equals(object? obj) => obj is ConnTuple other && Equals(other);

    /// <inheritdoc/>
    public override readonly int GetHashCode() => HashCode.Combine(Source, Destination, SourcePort, DestinationPort, Protocol, Family);

    /// <summary>Field-by-field equality.</summary>
    public static bool operator ==(ConnTuple a, ConnTuple b) => a.Equals(b);

    /// <summary>Field-by-field inequality.</summary>
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
}
