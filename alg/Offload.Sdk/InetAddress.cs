using System.Buffers.Binary;
using System.Net;
using System.Runtime.CompilerServices;

namespace Offload.Sdk;

/// <summary>
/// An IPv4 or IPv6 address held by value in 16 bytes, in network order, as the kernel's
/// <c>nf_inet_addr</c> does: an IPv4 address fills the first 4 bytes and the rest is zero.
/// </summary>
/// <remarks>The family is not stored: it always travels beside the address (in a tuple, a rule, a range).</remarks>
public readonly struct InetAddress : IEquatable<InetAddress>
{
    // Two big-endian halves, so that ordering and range checks compare like numbers.
    private readonly ulong _high;
    private readonly ulong _low;

    /// <summary>An address from its two halves in host order (see <see cref="High"/> and <see cref="Low"/>).</summary>
    /// <param name="high">The first 8 bytes.</param>
    /// <param name="low">The last 8 bytes.</param>
    public InetAddress(ulong high, ulong low)
    {
        _high = high;
        _low = low;
    }

    /// <summary>The high 64 bits, in host order (the first 8 bytes of the address).</summary>
    public ulong High => _high;

    /// <summary>The low 64 bits, in host order (the last 8 bytes of the address).</summary>
    public ulong Low => _low;

    /// <summary>The all-zero address (no address).</summary>
    public static InetAddress None => default;

    /// <summary>Reads a 4-byte IPv4 address.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static InetAddress FromIPv4(ReadOnlySpan<byte> bytes) =>
        new((ulong)BinaryPrimitives.ReadUInt32BigEndian(bytes) << 32, 0);

    /// <summary>An IPv4 address from its 32-bit value in host order.</summary>
    public static InetAddress FromIPv4(uint value) => new((ulong)value << 32, 0);

    /// <summary>Reads a 16-byte IPv6 address.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static InetAddress FromIPv6(ReadOnlySpan<byte> bytes) =>
        new(BinaryPrimitives.ReadUInt64BigEndian(bytes), BinaryPrimitives.ReadUInt64BigEndian(bytes.Slice(8)));

    /// <summary>Reads an address of the given family (4 or 6).</summary>
    public static InetAddress Read(byte family, ReadOnlySpan<byte> bytes) =>
        family == 4 ? FromIPv4(bytes) : FromIPv6(bytes);

    /// <summary>The IPv4 value in host order.</summary>
    public uint IPv4Value => (uint)(_high >> 32);

    /// <summary>Writes the address in network order: 4 bytes for IPv4, 16 for IPv6.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Write(byte family, Span<byte> destination)
    {
        if (family == 4)
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination, IPv4Value);
        }
        else
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination, _high);
            BinaryPrimitives.WriteUInt64BigEndian(destination.Slice(8), _low);
        }
    }

    /// <summary>The address length in bytes for a family.</summary>
    public static int Length(byte family) => family == 4 ? 4 : 16;

    /// <summary>Converts from <see cref="IPAddress"/> (configuration and tests only: it allocates).</summary>
    public static InetAddress From(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out int written);
        return written == 4 ? FromIPv4(bytes) : FromIPv6(bytes);
    }

    /// <summary>Converts to <see cref="IPAddress"/> (display and tests only: it allocates).</summary>
    public IPAddress ToIPAddress(byte family)
    {
        Span<byte> bytes = stackalloc byte[16];
        Write(family, bytes);
        return new IPAddress(bytes.Slice(0, Length(family)));
    }

    /// <summary>Formats the address (display only: it allocates).</summary>
    public string ToString(byte family) => ToIPAddress(family).ToString();

    /// <summary>This address plus <paramref name="offset"/>, as a 128-bit (or, for IPv4, 32-bit) number.</summary>
    public InetAddress Add(byte family, ulong offset)
    {
        if (family == 4)
        {
            return FromIPv4((uint)(IPv4Value + offset));
        }

        ulong low = _low + offset;
        return new InetAddress(low < _low ? _high + 1 : _high, low);
    }

    /// <summary>How far <paramref name="other"/> lies above this address, saturated at <see cref="ulong.MaxValue"/>.</summary>
    /// <remarks>For IPv4 the distance is counted in IPv4 addresses (the address lives in the top 32 bits).</remarks>
    public ulong DistanceTo(byte family, InetAddress other)
    {
        if (family == 4)
        {
            return other.IPv4Value - (ulong)IPv4Value;
        }

        if (other._high == _high)
        {
            return other._low - _low;
        }

        return other._high == _high + 1 && other._low < _low ? other._low - _low : ulong.MaxValue;
    }

    private bool LooksLikeIPv4 => _low == 0 && (uint)_high == 0;

    /// <summary>Orders addresses as numbers (for ranges).</summary>
    /// <param name="a">One address.</param>
    /// <param name="b">The other.</param>
    /// <returns>Negative, zero or positive as <paramref name="a"/> is below, equal to or above <paramref name="b"/>.</returns>
    public static int Compare(InetAddress a, InetAddress b) =>
        a._high != b._high ? a._high.CompareTo(b._high) : a._low.CompareTo(b._low);

    /// <summary>True when the first <paramref name="prefixLength"/> bits equal those of <paramref name="network"/>.</summary>
    public bool IsInPrefix(byte family, InetAddress network, int prefixLength)
    {
        // An IPv4 address lives in the top bits of the high half, so its prefix applies there unchanged.
        if (family == 4)
        {
            prefixLength = Math.Min(prefixLength, 32);
        }

        if (prefixLength <= 0)
        {
            return true;
        }

        if (prefixLength <= 64)
        {
            ulong mask = prefixLength == 64 ? ulong.MaxValue : ~(ulong.MaxValue >> prefixLength);
            return (_high & mask) == (network._high & mask);
        }

        ulong lowMask = prefixLength >= 128 ? ulong.MaxValue : ~(ulong.MaxValue >> (prefixLength - 64));
        return _high == network._high && (_low & lowMask) == (network._low & lowMask);
    }

    /// <inheritdoc/>
    public bool Equals(InetAddress other) => _high == other._high && _low == other._low;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is InetAddress other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(_high, _low);

    /// <summary>Equal addresses.</summary>
    /// <param name="a">One address.</param>
    /// <param name="b">The other.</param>
    public static bool operator ==(InetAddress a, InetAddress b) => a.Equals(b);

    /// <summary>Different addresses.</summary>
    /// <param name="a">One address.</param>
    /// <param name="b">The other.</param>
    public static bool operator !=(InetAddress a, InetAddress b) => !a.Equals(b);

    /// <summary>The usual text form; the family is guessed (an address with only its first 4 bytes set reads as IPv4). Allocates.</summary>
    public override string ToString() => LooksLikeIPv4 ? ToString(4) : ToString(6);
}
