using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;

namespace Offload.Interop.Ipset;

/// <summary>Address families of sets and entries (the kernel's NFPROTO_* numbers, equal to AF_INET and AF_INET6 on Linux).</summary>
/// <remarks>Not <see cref="System.Net.Sockets.AddressFamily"/>: .NET numbers InterNetworkV6 23, Linux 10.</remarks>
public static class IpsetFamily
{
    /// <summary>IPv4 (NFPROTO_IPV4, 2).</summary>
    public const byte IPv4 = IpsetConstants.NFPROTO_IPV4;

    /// <summary>IPv6 (NFPROTO_IPV6, 10).</summary>
    public const byte IPv6 = IpsetConstants.NFPROTO_IPV6;

    /// <summary>Bytes of an address of <paramref name="family"/>: 4, 16, or 0 for anything else.</summary>
    public static int AddressLength(byte family) => family switch
    {
        IPv4 => 4,
        IPv6 => 16,
        _ => 0,
    };
}

/// <summary>
/// An IPv4 or IPv6 address in 16 bytes, network order, held by value so an entry needs no array; an IPv4 address
/// fills the first four bytes. Which of the two it is, the owning <see cref="IpsetEntry"/>'s family says.
/// </summary>
public readonly struct IpsetAddress : IEquatable<IpsetAddress>
{
    private readonly ulong _high;
    private readonly ulong _low;

    private IpsetAddress(ulong high, ulong low)
    {
        _high = high;
        _low = low;
    }

    /// <summary>Takes 4 (IPv4) or 16 (IPv6) bytes in network order.</summary>
    /// <exception cref="ArgumentException">Any other length.</exception>
    public static IpsetAddress FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length == 16)
        {
            return new IpsetAddress(BinaryPrimitives.ReadUInt64BigEndian(bytes), BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]));
        }

        if (bytes.Length == 4)
        {
            return new IpsetAddress((ulong)BinaryPrimitives.ReadUInt32BigEndian(bytes) << 32, 0);
        }

        throw new ArgumentException($"An address is 4 (IPv4) or 16 (IPv6) bytes, not {bytes.Length}.", nameof(bytes));
    }

    /// <summary>Writes the first <paramref name="destination"/>.Length bytes (4 for IPv4, 16 for IPv6, at most 16).</summary>
    public void CopyTo(Span<byte> destination)
    {
        Span<byte> all = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(all, _high);
        BinaryPrimitives.WriteUInt64BigEndian(all[8..], _low);
        all[..Math.Min(destination.Length, 16)].CopyTo(destination);
    }

    /// <summary>The address as text, for logs and tests (allocates).</summary>
    public string ToString(byte family)
    {
        Span<byte> b = stackalloc byte[16];
        int length = family == IpsetFamily.IPv4 ? 4 : 16;
        CopyTo(b[..length]);
        return new IPAddress(b[..length]).ToString();
    }

    /// <inheritdoc/>
    public bool Equals(IpsetAddress other) => _high == other._high && _low == other._low;

    /// <inheritdoc/>
    public override bool Equals([NotNullWhen(true)] object? obj) => obj is IpsetAddress a && Equals(a);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(_high, _low);

    /// <summary>All 16 bytes in hex; use <see cref="ToString(byte)"/> for an address's usual text.</summary>
    public override string ToString() => _high.ToString("x16", CultureInfo.InvariantCulture) + _low.ToString("x16", CultureInfo.InvariantCulture);

    public static bool operator ==(IpsetAddress left, IpsetAddress right) => left.Equals(right);

    public static bool operator !=(IpsetAddress left, IpsetAddress right) => !left.Equals(right);
}

/// <summary>
/// One member of a hash:ip,port or hash:ip,port,ip set: address, protocol and port, and for hash:ip,port,ip a
/// second address. Which packet fields they are compared with is up to the iptables rule
/// (<c>--match-set NAME dst,dst,src</c> for a flow's destination address, destination port and source address).
/// </summary>
/// <remarks>
/// Validated when constructed, so a batch never meets a malformed entry. A plain value: copying allocates nothing.
/// </remarks>
public readonly struct IpsetEntry : IEquatable<IpsetEntry>
{
    /// <summary>IP protocol number of TCP.</summary>
    public const byte Tcp = 6;

    /// <summary>IP protocol number of UDP.</summary>
    public const byte Udp = 17;

    /// <summary>An entry of a hash:ip,port set.</summary>
    /// <param name="family"><see cref="IpsetFamily.IPv4"/> or <see cref="IpsetFamily.IPv6"/>.</param>
    /// <param name="protocol">IP protocol number (<see cref="Tcp"/>, <see cref="Udp"/>; any but 0).</param>
    /// <param name="address">4 bytes for IPv4, 16 for IPv6, network order.</param>
    /// <param name="port">The port, in host order.</param>
    /// <exception cref="ArgumentException">Unknown family, protocol 0, or an address of the wrong length.</exception>
    public IpsetEntry(byte family, byte protocol, ReadOnlySpan<byte> address, ushort port)
        : this(family, protocol, CheckedAddress(family, address, nameof(address)), port, default, hasAddress2: false)
    {
    }

    /// <summary>An entry of a hash:ip,port,ip set.</summary>
    /// <param name="family"><see cref="IpsetFamily.IPv4"/> or <see cref="IpsetFamily.IPv6"/>.</param>
    /// <param name="protocol">IP protocol number (<see cref="Tcp"/>, <see cref="Udp"/>; any but 0).</param>
    /// <param name="address">The first address: 4 bytes for IPv4, 16 for IPv6, network order.</param>
    /// <param name="port">The port, in host order.</param>
    /// <param name="address2">The second address, of the same family.</param>
    /// <exception cref="ArgumentException">Unknown family, protocol 0, or an address of the wrong length.</exception>
    public IpsetEntry(byte family, byte protocol, ReadOnlySpan<byte> address, ushort port, ReadOnlySpan<byte> address2)
        : this(family, protocol, CheckedAddress(family, address, nameof(address)), port, CheckedAddress(family, address2, nameof(address2)), hasAddress2: true)
    {
    }

    /// <summary>An entry of a hash:ip,port set, from an address already held by value.</summary>
    public IpsetEntry(byte family, byte protocol, in IpsetAddress address, ushort port)
        : this(family, protocol, address, port, default, hasAddress2: false)
    {
    }

    /// <summary>An entry of a hash:ip,port,ip set, from addresses already held by value.</summary>
    public IpsetEntry(byte family, byte protocol, in IpsetAddress address, ushort port, in IpsetAddress address2)
        : this(family, protocol, address, port, address2, hasAddress2: true)
    {
    }

    private IpsetEntry(byte family, byte protocol, IpsetAddress address, ushort port, IpsetAddress address2, bool hasAddress2)
    {
        if (IpsetFamily.AddressLength(family) == 0)
        {
            ThrowBadFamily(family);
        }

        if (protocol == 0)
        {
            // The kernel refuses protocol 0 (IPSET_ERR_INVALID_PROTO); better to say so where the entry is made.
            throw new ArgumentException("An entry needs an IP protocol number (6 TCP, 17 UDP); 0 is not one.", nameof(protocol));
        }

        Family = family;
        Protocol = protocol;
        Address = address;
        Port = port;
        Address2 = address2;
        HasAddress2 = hasAddress2;
    }

    /// <summary><see cref="IpsetFamily.IPv4"/> or <see cref="IpsetFamily.IPv6"/>.</summary>
    public byte Family { get; }

    /// <summary>IP protocol number.</summary>
    public byte Protocol { get; }

    /// <summary>The first address.</summary>
    public IpsetAddress Address { get; }

    /// <summary>The port, in host order.</summary>
    public ushort Port { get; }

    /// <summary>The second address (hash:ip,port,ip); meaningful when <see cref="HasAddress2"/>.</summary>
    public IpsetAddress Address2 { get; }

    /// <summary>True for a hash:ip,port,ip entry.</summary>
    public bool HasAddress2 { get; }

    /// <summary>Bytes of each address: 4 or 16.</summary>
    public int AddressLength => Family == IpsetFamily.IPv6 ? 16 : 4;

    /// <summary>
    /// The entry as the ipset tool prints it ("192.0.2.1,udp:5000,192.0.2.2"), for logs and tests (allocates).
    /// </summary>
    public override string ToString()
    {
        string protocol = Protocol switch
        {
            Tcp => "tcp",
            Udp => "udp",
            132 => "sctp",
            136 => "udplite",
            _ => "proto" + Protocol.ToString(CultureInfo.InvariantCulture),
        };
        string text = $"{Address.ToString(Family)},{protocol}:{Port.ToString(CultureInfo.InvariantCulture)}";
        return HasAddress2 ? text + "," + Address2.ToString(Family) : text;
    }

    /// <inheritdoc/>
    public bool Equals(IpsetEntry other) =>
        Family == other.Family && Protocol == other.Protocol && Address == other.Address && Port == other.Port &&
        HasAddress2 == other.HasAddress2 && (!HasAddress2 || Address2 == other.Address2);

    /// <inheritdoc/>
    public override bool Equals([NotNullWhen(true)] object? obj) => obj is IpsetEntry e && Equals(e);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Family, Protocol, Address, Port, HasAddress2, HasAddress2 ? Address2 : default);

    public static bool operator ==(IpsetEntry left, IpsetEntry right) => left.Equals(right);

    public static bool operator !=(IpsetEntry left, IpsetEntry right) => !left.Equals(right);

    private static IpsetAddress CheckedAddress(byte family, ReadOnlySpan<byte> address, string parameter)
    {
        int expected = IpsetFamily.AddressLength(family);
        if (expected == 0)
        {
            ThrowBadFamily(family);
        }

        if (address.Length != expected)
        {
            throw new ArgumentException($"An address of family {family} is {expected} bytes, not {address.Length}.", parameter);
        }

        return IpsetAddress.FromBytes(address);
    }

    [DoesNotReturn]
    private static void ThrowBadFamily(byte family) =>
        throw new ArgumentException($"Family {family} is neither IpsetFamily.IPv4 (2) nor IpsetFamily.IPv6 (10).", nameof(family));
}
