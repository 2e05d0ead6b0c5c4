namespace Offload.Alg.H323;

/// <summary>
/// A cursor over ASN.1 aligned PER bits (X.691) between two bit positions of one buffer. Every read checks the
/// bound first and returns false instead of reading past it; nothing advances on a failed read. Positions are bits
/// from the start of the buffer, so that a captured field's byte offset is the payload offset a rewrite needs.
/// </summary>
internal ref struct PerBitReader
{
    private readonly ReadOnlySpan<byte> _buffer;
    private readonly int _endBit;
    private int _bit;

    /// <summary>A reader over <paramref name="buffer"/>[<paramref name="start"/>..<paramref name="end"/>) (bytes).</summary>
    public PerBitReader(ReadOnlySpan<byte> buffer, int start, int end)
    {
        _buffer = buffer;
        _bit = start * 8;
        _endBit = end * 8;
    }

    /// <summary>The current position, in bits from the start of the buffer.</summary>
    public readonly int BitPosition => _bit;

    /// <summary>The current byte (the position rounded down).</summary>
    public readonly int BytePosition => _bit >> 3;

    /// <summary>Bits left before the bound.</summary>
    public readonly int BitsLeft => _endBit - _bit;

    /// <summary>A reader of <paramref name="length"/> bytes from <paramref name="startByte"/> (an open type's contents), bounded by them.</summary>
    public readonly PerBitReader Slice(int startByte, int length) => new(_buffer, startByte, startByte + length);

    /// <summary>Moves to the next byte boundary (PER's octet alignment), unless already there.</summary>
    public bool Align()
    {
        int aligned = (_bit + 7) & ~7;
        if (aligned > _endBit)
        {
            return false;
        }

        _bit = aligned;
        return true;
    }

    /// <summary>Skips <paramref name="bits"/> bits.</summary>
    public bool SkipBits(long bits)
    {
        if (bits < 0 || bits > _endBit - _bit)
        {
            return false;
        }

        _bit += (int)bits;
        return true;
    }

    /// <summary>Skips <paramref name="bytes"/> whole bytes (from the current bit position).</summary>
    public bool SkipBytes(long bytes) => SkipBits(bytes * 8);

    /// <summary>Reads <paramref name="count"/> bits (0 to 32), most significant first.</summary>
    public bool ReadBits(int count, out uint value)
    {
        value = 0;
        if (count < 0 || count > 32 || count > _endBit - _bit)
        {
            return false;
        }

        for (int i = 0; i < count; i++)
        {
            int bit = _bit + i;
            value = (value << 1) | (uint)((_buffer[bit >> 3] >> (7 - (bit & 7))) & 1);
        }

        _bit += count;
        return true;
    }

    /// <summary>Reads one bit.</summary>
    public bool ReadBit(out bool value)
    {
        bool ok = ReadBits(1, out uint bit);
        value = bit != 0;
        return ok;
    }

    /// <summary>Aligns, then reads <paramref name="count"/> whole bytes (1 to 4) as a big-endian number.</summary>
    public bool ReadAlignedBytes(int count, out uint value)
    {
        value = 0;
        int saved = _bit;
        if (!Align() || !ReadBits(count * 8, out value))
        {
            _bit = saved;
            return false;
        }

        return true;
    }

    /// <summary>
    /// Aligns, then reads a length determinant (X.691 10.9: one byte below 128, two bytes below 16384). A fragmented
    /// length (11xxxxxx, 16K items and more) is refused: no message of these protocols needs one.
    /// </summary>
    public bool ReadLength(out int length)
    {
        length = 0;
        int saved = _bit;
        if (!ReadAlignedBytes(1, out uint first))
        {
            return false;
        }

        if ((first & 0x80) == 0)
        {
            length = (int)first;
            return true;
        }

        if ((first & 0x40) != 0 || !ReadBits(8, out uint second))
        {
            _bit = saved;
            return false;
        }

        length = (int)(((first & 0x3f) << 8) | second);
        return true;
    }
}
