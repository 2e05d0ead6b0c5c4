using System.Buffers.Binary;

namespace Offload.Alg.Rpc;

/// <summary>
/// Reads XDR (RFC 4506) items from the front of one RPC message: 4-byte big-endian words and length-prefixed opaque
/// data padded to a multiple of 4. Every read checks what is left before it advances, and every length is held to a
/// bound given by the caller, so a hostile length can neither read past the message nor make a read loop.
/// </summary>
internal ref struct XdrReader(ReadOnlySpan<byte> data)
{
    private readonly ReadOnlySpan<byte> _data = data;

    /// <summary>Where the next item starts, from the start of the message.</summary>
    public int Position { get; private set; }

    /// <summary>Bytes not read yet.</summary>
    public readonly int Remaining => _data.Length - Position;

    /// <summary>True when every byte was read: an RPC message of the kinds read here has nothing after its arguments.</summary>
    public readonly bool AtEnd => Position == _data.Length;

    /// <summary>Reads one unsigned word; false (nothing read) when fewer than 4 bytes are left.</summary>
    public bool TryReadUInt32(out uint value)
    {
        if (Remaining < 4)
        {
            value = 0;
            return false;
        }

        value = BinaryPrimitives.ReadUInt32BigEndian(_data.Slice(Position, 4));
        Position += 4;
        return true;
    }

    /// <summary>
    /// Reads variable-length opaque data or a string (its length word, its bytes, the padding): false when the length
    /// is above <paramref name="maxLength"/> or the data runs past the message. <paramref name="start"/> is where
    /// its bytes start (after the length word).
    /// </summary>
    public bool TryReadOpaque(int maxLength, out int start, out int length)
    {
        start = 0;
        length = 0;
        if (!TryReadUInt32(out uint declared) || declared > (uint)maxLength)
        {
            return false;
        }

        // maxLength is small (a few hundred), so the padded length cannot overflow.
        int padded = ((int)declared + 3) & ~3;
        if (Remaining < padded)
        {
            return false;
        }

        start = Position;
        length = (int)declared;
        Position += padded;
        return true;
    }

    /// <summary>The bytes of an item read before, by where it starts and its length.</summary>
    public readonly ReadOnlySpan<byte> Slice(int start, int length) => _data.Slice(start, length);
}
