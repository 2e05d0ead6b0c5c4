using System.Text;

namespace Offload.Alg.Sip;

/// <summary>The headers the helper reads or rewrites; every other one is <see cref="Other"/>.</summary>
internal enum SipHeaderKind : byte
{
    Other,
    Via,
    Contact,
    From,
    To,
    ContentLength,
    CSeq,
    Expires,
    ContentType,
}

/// <summary>One logical header: its kind and where its value lies (folded continuation lines included, line end excluded).</summary>
internal readonly record struct SipHeader(SipHeaderKind Kind, int ValueStart, int ValueEnd);

/// <summary>
/// Walks a SIP message's headers, one logical header at a time: names compared without case, compact forms
/// (RFC 3261 section 7.3.3: v, m, f, t, l, c, i), continuation lines that start with a space or tab folded into the
/// header above (section 7.3.1). Stops at the empty line; every byte is looked at once.
/// </summary>
internal ref struct SipHeaderReader
{
    private readonly ReadOnlySpan<byte> _payload;
    private int _position;

    public SipHeaderReader(ReadOnlySpan<byte> payload, int start)
    {
        _payload = payload;
        _position = start;
    }

    /// <summary>True once the empty line that ends the headers was read.</summary>
    public bool Ended { get; private set; }

    /// <summary>Where the reader stands: after the headers, the start of the empty line.</summary>
    public readonly int Position => _position;

    /// <summary>Where the body starts, after the empty line (valid once <see cref="Ended"/>).</summary>
    public int BodyStart { get; private set; }

    /// <summary>The next header; false at the empty line or at the end of the payload (then <see cref="Ended"/> says which).</summary>
    public bool Next(out SipHeader header)
    {
        header = default;
        while (_position < _payload.Length)
        {
            int lineEnd = LineEnd(_position);
            if (lineEnd < 0)
            {
                return false; // the headers go on past the payload
            }

            var line = SipParser.TrimCr(_payload[_position..lineEnd]);
            if (line.IsEmpty)
            {
                Ended = true;
                BodyStart = lineEnd + 1;
                return false;
            }

            // Continuation lines belong to this header.
            int logicalEnd = lineEnd;
            while (logicalEnd + 1 < _payload.Length && (_payload[logicalEnd + 1] == (byte)' ' || _payload[logicalEnd + 1] == (byte)'\t'))
            {
                int next = LineEnd(logicalEnd + 1);
                if (next < 0)
                {
                    return false;
                }

                logicalEnd = next;
            }

            int start = _position;
            _position = logicalEnd + 1;
            int valueEnd = logicalEnd > start && _payload[logicalEnd - 1] == (byte)'\r' ? logicalEnd - 1 : logicalEnd;
            var text = _payload[start..valueEnd];
            int colon = text.IndexOf((byte)':');
            if (colon <= 0)
            {
                continue; // not a header: skipped, as the kernel's search skips it
            }

            int valueStart = colon + 1;
            while (valueStart < text.Length && (text[valueStart] == (byte)' ' || text[valueStart] == (byte)'\t'))
            {
                valueStart++;
            }

            header = new SipHeader(Classify(text[..colon].TrimEnd(" \t"u8)), start + valueStart, valueEnd);
            return true;
        }

        return false;
    }

    private readonly int LineEnd(int from)
    {
        int index = _payload[from..].IndexOf((byte)'\n');
        return index < 0 ? -1 : from + index;
    }

    /// <summary>The kind of header a name (long or compact form, any case) names.</summary>
    public static SipHeaderKind Classify(ReadOnlySpan<byte> name)
    {
        if (name.Length == 1)
        {
            return (name[0] | 0x20) switch
            {
                'v' => SipHeaderKind.Via,
                'm' => SipHeaderKind.Contact,
                'f' => SipHeaderKind.From,
                't' => SipHeaderKind.To,
                'l' => SipHeaderKind.ContentLength,
                'c' => SipHeaderKind.ContentType,
                _ => SipHeaderKind.Other,
            };
        }

        return name switch
        {
            _ when Ascii.EqualsIgnoreCase(name, "Via"u8) => SipHeaderKind.Via,
            _ when Ascii.EqualsIgnoreCase(name, "Contact"u8) => SipHeaderKind.Contact,
            _ when Ascii.EqualsIgnoreCase(name, "From"u8) => SipHeaderKind.From,
            _ when Ascii.EqualsIgnoreCase(name, "To"u8) => SipHeaderKind.To,
            _ when Ascii.EqualsIgnoreCase(name, "Content-Length"u8) => SipHeaderKind.ContentLength,
            _ when Ascii.EqualsIgnoreCase(name, "CSeq"u8) => SipHeaderKind.CSeq,
            _ when Ascii.EqualsIgnoreCase(name, "Expires"u8) => SipHeaderKind.Expires,
            _ when Ascii.EqualsIgnoreCase(name, "Content-Type"u8) => SipHeaderKind.ContentType,
            _ => SipHeaderKind.Other,
        };
    }
}
