namespace Offload.Alg.Snmp;

/// <summary>One BER element: its tag and where its contents lie in the buffer the reader was made over.</summary>
/// <param name="Tag">The identifier octet (class, constructed bit and tag number of at most 30).</param>
/// <param name="Offset">Where the contents start.</param>
/// <param name="Length">How many bytes the contents hold.</param>
internal readonly record struct BerElement(byte Tag, int Offset, int Length)
{
    /// <summary>Where the element's contents end (the next element starts there).</summary>
    public int End => Offset + Length;
}

/// <summary>
/// A reader of BER elements (X.690) over a window of a buffer: each element's header is checked against what remains
/// of the window before anything is read or skipped, so that no length, however hostile, reads out of bounds, and
/// every call advances by at least two bytes or fails, so that a walk ends in time linear in the window.
/// </summary>
/// <remarks>
/// What SNMP (RFC 3417) allows and nothing more: one-byte identifiers (tag numbers up to 30) and definite lengths in
/// the short or long form of at most four bytes. The indefinite form and high tag numbers are refused.
/// Offsets are those of the whole buffer, so that an element found in a nested window can be rewritten in place.
/// </remarks>
internal ref struct BerReader
{
    private readonly ReadOnlySpan<byte> _buffer;
    private readonly int _end;
    private int _position;

    /// <summary>A reader over the whole of <paramref name="buffer"/>.</summary>
    public BerReader(ReadOnlySpan<byte> buffer)
        : this(buffer, 0, buffer.Length)
    {
    }

    private BerReader(ReadOnlySpan<byte> buffer, int start, int end)
    {
        _buffer = buffer;
        _position = start;
        _end = end;
    }

    /// <summary>True when the window is used up.</summary>
    public readonly bool AtEnd => _position >= _end;

    /// <summary>A reader over the contents of <paramref name="element"/> (which this reader returned).</summary>
    public readonly BerReader Enter(in BerElement element) => new(_buffer, element.Offset, element.End);

    /// <summary>The contents of <paramref name="element"/>.</summary>
    public readonly ReadOnlySpan<byte> Contents(in BerElement element) => _buffer.Slice(element.Offset, element.Length);

    /// <summary>
    /// Reads the next element's header and moves past its contents. False, without moving, when the window is used up
    /// or the header is refused (see the remarks) or announces more contents than the window holds.
    /// </summary>
    public bool TryRead(out BerElement element)
    {
        element = default;
        int at = _position;
        if (_end - at < 2)
        {
            return false;
        }

        byte tag = _buffer[at++];
        if ((tag & 0x1f) == 0x1f)
        {
            return false; // a tag number above 30 (more identifier octets): not in SNMP
        }

        int first = _buffer[at++];
        int length;
        if (first < 0x80)
        {
            length = first;
        }
        else
        {
            int count = first & 0x7f;
            if (count == 0 || count > 4 || _end - at < count)
            {
                return false; // the indefinite form, a length beyond 32 bits, or one cut off
            }

            long value = 0;
            for (int i = 0; i < count; i++)
            {
                value = (value << 8) | _buffer[at++];
            }

            if (value > _end - at)
            {
                return false;
            }

            length = (int)value;
        }

        if (length > _end - at)
        {
            return false;
        }

        element = new BerElement(tag, at, length);
        _position = at + length;
        return true;
    }

    /// <summary>Reads the next element and checks its tag: false when it is missing, refused or of another tag.</summary>
    public bool TryRead(byte tag, out BerElement element) => TryRead(out element) && element.Tag == tag;

    /// <summary>
    /// Reads an INTEGER of at most four contents bytes as a signed value (two's complement, as BER writes it).
    /// False when the next element is no such INTEGER.
    /// </summary>
    public bool TryReadInt32(out int value)
    {
        value = 0;
        if (!TryRead(BerTags.Integer, out var element) || element.Length is < 1 or > 4)
        {
            return false;
        }

        var contents = Contents(element);
        int result = (sbyte)contents[0];
        for (int i = 1; i < contents.Length; i++)
        {
            result = (result << 8) | contents[i];
        }

        value = result;
        return true;
    }
}

/// <summary>The BER identifiers SNMP messages use (RFC 3416, RFC 3417).</summary>
internal static class BerTags
{
    public const byte Integer = 0x02;
    public const byte OctetString = 0x04;
    public const byte ObjectIdentifier = 0x06;
    public const byte Sequence = 0x30;

    /// <summary>IpAddress, [APPLICATION 0] IMPLICIT OCTET STRING (SIZE (4)); also SNMPv1's NetworkAddress.</summary>
    public const byte IpAddress = 0x40;

    /// <summary>TimeTicks, [APPLICATION 3] IMPLICIT INTEGER.</summary>
    public const byte TimeTicks = 0x43;

    /// <summary>The PDUs, [0] to [8] IMPLICIT SEQUENCE (context-specific, constructed).</summary>
    public const byte GetRequest = 0xa0;

    /// <inheritdoc cref="GetRequest"/>
    public const byte Report = 0xa8;

    /// <summary>SNMPv1's Trap-PDU, [4]: enterprise, agent-addr, generic and specific trap, time-stamp, variable bindings.</summary>
    public const byte TrapV1 = 0xa4;
}
