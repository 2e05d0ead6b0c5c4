using System.Buffers.Binary;
using System.Text;

namespace Offload.Alg.Ftp;

/// <summary>
/// The endpoint an FTP line announces: an address of family 4 or 6 and a port, or for an EPSV reply
/// (family 0) the port alone, since the reply means "the address you are already talking to".
/// </summary>
/// <remarks>
/// The address is held as 16 bytes in network order, split into two big-endian halves
/// (<see cref="AddressHigh"/>, <see cref="AddressLow"/>) the same way the engine's address type is,
/// so converting costs nothing. An IPv4 address fills the first 4 bytes; the rest are zero.
/// </remarks>
public readonly struct FtpAddressPort : IEquatable<FtpAddressPort>
{
    private readonly ulong _high;
    private readonly ulong _low;
    private readonly ushort _port;
    private readonly byte _family;

    private FtpAddressPort(byte family, ulong high, ulong low, ushort port)
    {
        _family = family;
        _high = high;
        _low = low;
        _port = port;
    }

    /// <summary>4 for IPv4, 6 for IPv6, 0 when only a port is known (EPSV).</summary>
    public byte Family => _family;

    /// <summary>The TCP port, in host order.</summary>
    public ushort Port => _port;

    /// <summary>The first 8 bytes of the address as a big-endian number (host order value).</summary>
    public ulong AddressHigh => _high;

    /// <summary>The last 8 bytes of the address as a big-endian number (host order value).</summary>
    public ulong AddressLow => _low;

    /// <summary>The IPv4 address as a 32-bit value in host order (a.b.c.d is a&lt;&lt;24 | … | d); meaningful when <see cref="Family"/> is 4.</summary>
    public uint IPv4Value => (uint)(_high >> 32);

    /// <summary>An IPv4 endpoint from the address value in host order.</summary>
    public static FtpAddressPort FromIPv4(uint address, ushort port) => new(4, (ulong)address << 32, 0, port);

    /// <summary>An IPv4 endpoint from 4 address bytes in network order.</summary>
    public static FtpAddressPort FromIPv4(ReadOnlySpan<byte> address4, ushort port) =>
        FromIPv4(BinaryPrimitives.ReadUInt32BigEndian(address4), port);

    /// <summary>An IPv6 endpoint from the two big-endian halves of the address.</summary>
    public static FtpAddressPort FromIPv6(ulong high, ulong low, ushort port) => new(6, high, low, port);

    /// <summary>An IPv6 endpoint from 16 address bytes in network order.</summary>
    public static FtpAddressPort FromIPv6(ReadOnlySpan<byte> address16, ushort port) =>
        new(6, BinaryPrimitives.ReadUInt64BigEndian(address16), BinaryPrimitives.ReadUInt64BigEndian(address16.Slice(8)), port);

    /// <summary>A port with no address (family 0), as an EPSV reply carries.</summary>
    public static FtpAddressPort FromPort(ushort port) => new(0, 0, 0, port);

    /// <summary>Writes the 16 address bytes in network order (IPv4 in the first 4, zeros after).</summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than 16 bytes.</exception>
    public void CopyAddressTo(Span<byte> destination)
    {
        if (destination.Length < 16)
        {
            throw new ArgumentException("The destination must hold 16 bytes.", nameof(destination));
        }

        BinaryPrimitives.WriteUInt64BigEndian(destination, _high);
        BinaryPrimitives.WriteUInt64BigEndian(destination.Slice(8), _low);
    }

    public bool Equals(FtpAddressPort other) =>
        _family == other._family && _port == other._port && _high == other._high && _low == other._low;

    public override bool Equals(object? obj) => obj is FtpAddressPort other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(_family, _port, _high, _low);

    public static bool operator ==(FtpAddressPort left, FtpAddressPort right) => left.Equals(right);

    public static bool operator !=(FtpAddressPort left, FtpAddressPort right) => !left.Equals(right);

    /// <summary>"192.0.2.2:50000", "[2001:db8::2]:50000" or ":30000" (display only: it allocates).</summary>
    public override string ToString()
    {
        Span<byte> text = stackalloc byte[FtpParser.MaxIPv6TextLength];
        switch (_family)
        {
            case 4:
                int v4 = FtpParser.FormatIPv4(IPv4Value, text);
                return $"{Encoding.ASCII.GetString(text.Slice(0, v4))}:{_port}";
            case 6:
                Span<byte> bytes = stackalloc byte[16];
                CopyAddressTo(bytes);
                int v6 = FtpParser.FormatIPv6(bytes, text);
                return $"[{Encoding.ASCII.GetString(text.Slice(0, v6))}]:{_port}";
            default:
                return $":{_port}";
        }
    }
}
