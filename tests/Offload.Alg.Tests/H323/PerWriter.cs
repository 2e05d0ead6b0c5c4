using System.Net;

namespace Offload.Alg.Tests.H323;

/// <summary>
/// A small aligned-PER (X.691) encoder for building real H.225.0 and H.245 messages in tests, independent of the
/// decoder under test: bits, alignment, length determinants and open types, and the byte offsets where addresses went.
/// </summary>
internal sealed class PerWriter
{
    private readonly List<byte> _bytes = [];
    private int _bit; // bits used in the last byte (0: aligned)

    /// <summary>Where each address written with <see cref="Address"/> starts, in bytes from the start of this writer.</summary>
    public List<int> AddressOffsets { get; } = [];

    public int ByteCount => _bytes.Count;

    public PerWriter Bit(bool value) => Bits(value ? 1u : 0u, 1);

    public PerWriter Bits(uint value, int count)
    {
        for (int i = count - 1; i >= 0; i--)
        {
            if (_bit == 0)
            {
                _bytes.Add(0);
            }

            if (((value >> i) & 1) != 0)
            {
                _bytes[^1] |= (byte)(0x80 >> _bit);
            }

            _bit = (_bit + 1) & 7;
        }

        return this;
    }

    public PerWriter Align()
    {
        _bit = 0;
        return this;
    }

    public PerWriter Bytes(ReadOnlySpan<byte> bytes)
    {
        Align();
        foreach (byte b in bytes)
        {
            _bytes.Add(b);
        }

        return this;
    }

    public PerWriter Byte(int value) => Bytes([(byte)value]);

    public PerWriter Word(int value) => Bytes([(byte)(value >> 8), (byte)value]);

    /// <summary>A length determinant (below 16384).</summary>
    public PerWriter Length(int length) => length < 128 ? Byte(length) : Bytes([(byte)(0x80 | (length >> 8)), (byte)length]);

    /// <summary>An open type: the length of the contents (padded to whole bytes, at least one), then the contents.</summary>
    public PerWriter Open(PerWriter contents)
    {
        var bytes = contents.ToArray();
        if (bytes.Length == 0)
        {
            bytes = [0];
        }

        Length(bytes.Length);
        int start = _bytes.Count;
        Bytes(bytes);
        foreach (int offset in contents.AddressOffsets)
        {
            AddressOffsets.Add(start + offset);
        }

        return this;
    }

    /// <summary>An IPv4 or IPv6 address (aligned octets) and its port (aligned 16 bits), the address's offset recorded.</summary>
    public PerWriter Address(string address, ushort port)
    {
        Align();
        AddressOffsets.Add(_bytes.Count);
        Bytes(IPAddress.Parse(address).GetAddressBytes());
        return Word(port);
    }

    /// <summary>An extension bitmap: how many additions, a presence bit each; then the caller writes the present ones as open types.</summary>
    public PerWriter Extensions(params bool[] present)
    {
        Bits((uint)(present.Length - 1), 7);
        foreach (bool p in present)
        {
            Bit(p);
        }

        return Align();
    }

    public byte[] ToArray() => [.. _bytes];
}
