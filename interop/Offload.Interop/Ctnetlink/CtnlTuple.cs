using System.Buffers.Binary;
using System.Globalization;
using System.Net;

namespace Offload.Interop.Ctnetlink;

/// <summary>
/// One direction of a kernel conntrack entry: addresses, protocol and ports, as ctnetlink's CTA_TUPLE_* carry them.
/// Addresses are kept as numbers (an IPv4 address in the low 32 bits) so that reading a kernel event allocates
/// nothing and two tuples compare by value.
/// </summary>
/// <param name="Family">2 (AF_INET) or 10 (AF_INET6).</param>
/// <param name="Protocol">6 (TCP) or 17 (UDP): the protocols with ports we hand to the kernel.</param>
/// <param name="Source">The source address, network order read as a number.</param>
/// <param name="Destination">The destination address, likewise.</param>
/// <param name="SourcePort">The source port.</param>
/// <param name="DestinationPort">The destination port.</param>
public readonly record struct CtnlTuple(byte Family, byte Protocol, UInt128 Source, UInt128 Destination, ushort SourcePort, ushort DestinationPort)
{
    /// <summary>AF_INET, as nfgenmsg's family and the tuple's.</summary>
    public const byte Inet = 2;

    /// <summary>AF_INET6.</summary>
    public const byte Inet6 = 10;

    /// <summary>Bytes of one address of this tuple's family.</summary>
    public int AddressLength => Family == Inet ? 4 : 16;

    /// <summary>The tuple of the other direction with nothing translated: what the kernel's reply is before NAT.</summary>
    public CtnlTuple Inverted => new(Family, Protocol, Destination, Source, DestinationPort, SourcePort);

    /// <summary>Builds a tuple from addresses in network order (4 or 16 bytes, as <paramref name="family"/> says).</summary>
    /// <exception cref="ArgumentException">An address of the wrong length, or a family other than AF_INET and AF_INET6.</exception>
    public static CtnlTuple Of(byte family, byte protocol, ReadOnlySpan<byte> source, ReadOnlySpan<byte> destination, ushort sourcePort, ushort destinationPort)
    {
        int length = family switch
        {
            Inet => 4,
            Inet6 => 16,
            _ => throw new ArgumentException($"Family {family} is neither AF_INET (2) nor AF_INET6 (10).", nameof(family)),
        };
        if (source.Length != length || destination.Length != length)
        {
            throw new ArgumentException($"An address of family {family} has {length} bytes.", nameof(source));
        }

        return new(family, protocol, Read(source), Read(destination), sourcePort, destinationPort);
    }

    /// <summary>Reads an address of 4 or 16 bytes in network order; the length says the family.</summary>
    internal static UInt128 Read(ReadOnlySpan<byte> address) =>
        address.Length == 4 ? BinaryPrimitives.ReadUInt32BigEndian(address) : BinaryPrimitives.ReadUInt128BigEndian(address);

    /// <summary>Writes an address of this tuple's family in network order; returns its length.</summary>
    public int Write(UInt128 address, Span<byte> destination)
    {
        if (Family == Inet)
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)address);
            return 4;
        }

        BinaryPrimitives.WriteUInt128BigEndian(destination, address);
        return 16;
    }

    /// <summary>As conntrack -L shows a direction: src= dst= sport= dport=.</summary>
    public override string ToString()
    {
        Span<byte> s = stackalloc byte[16];
        Span<byte> d = stackalloc byte[16];
        int n = Write(Source, s);
        Write(Destination, d);
        string p = Protocol switch { 6 => "tcp", 17 => "udp", _ => Protocol.ToString(CultureInfo.InvariantCulture) };
        return string.Create(CultureInfo.InvariantCulture, $"{p} src={new IPAddress(s[..n])} dst={new IPAddress(d[..n])} sport={SourcePort} dport={DestinationPort}");
    }
}

/// <summary>
/// A kernel conntrack entry to create: an established flow whose tracking and NAT move from offloadd to the kernel.
/// </summary>
/// <param name="Original">The original direction as it arrives at the router (before any translation).</param>
/// <param name="Reply">The reply direction as it arrives at the router: after the NAT, its destination is the translated source.</param>
/// <param name="TimeoutSeconds">The entry's timeout until its next packet (the kernel's own then apply per TCP state).</param>
/// <param name="WindowScaleOriginal">The window scale the original direction's sender announced, or null when unknown.</param>
/// <param name="WindowScaleReply">The reply direction's, or null.</param>
public readonly record struct CtnlEntry(CtnlTuple Original, CtnlTuple Reply, uint TimeoutSeconds, byte? WindowScaleOriginal = null, byte? WindowScaleReply = null)
{
    /// <summary>The source NAT the reply implies: the reply's destination is not the original's source.</summary>
    public bool IsSourceNat => Reply.Destination != Original.Source || Reply.DestinationPort != Original.SourcePort;

    /// <summary>The destination NAT the reply implies: the reply's source is not the original's destination.</summary>
    public bool IsDestinationNat => Reply.Source != Original.Destination || Reply.SourcePort != Original.DestinationPort;
}
