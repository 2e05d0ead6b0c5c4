using System.Runtime.CompilerServices;

namespace Offload.Alg.Ftp;

/// <summary>
/// Finds and rewrites the FTP control-channel lines that announce a data connection, the way the
/// kernel's FTP conntrack and NAT helpers do: PORT and EPRT from the client, 227 and 229 from the server.
/// Works on spans only; nothing here allocates.
/// </summary>
/// <remarks>
/// <para>
/// What is accepted follows the kernel's helper. After the command word, PORT and EPRT skip to the first
/// space and 229 to the first '(' (anything may stand before them); a 227 reply is read from its first
/// digit, so the parentheses are optional (RFC 1123, 4.1.2.6). Each PORT/227/EPRT-IPv4 number is 0-255,
/// an EPRT or 229 port is 1-65535, the EPRT and 229 delimiter is any printable non-digit character
/// (33-126) repeated throughout the argument, the EPRT protocol is 1 (dotted quad) or 2 (IPv6 text).
/// </para>
/// <para>
/// Where this differs from the kernel, it is stricter or confined to one line: every number must have at
/// least one digit (the kernel reads "1,,3,4,5,6" with a zero); the search for the space, '(' or first
/// digit stops at the end of the line (the kernel runs on into the next lines of the segment); PORT
/// ends at CR or LF (the kernel wants CR); and no line is Found before its terminator is in the data.
/// </para>
/// </remarks>
public static partial class FtpParser
{
    // Codes the argument parsers return instead of a position.
    private const int Bad = -1;      // definitely not a valid argument
    private const int NeedMore = -2; // valid so far, but the line's text ended before the argument did

    /// <summary>
    /// Scans one line that starts at <c>data[0]</c>. The caller guarantees that <c>data[0]</c> is the first
    /// byte of the stream or follows a '\n', as the kernel only looks at data just after a newline.
    /// </summary>
    /// <param name="data">The line and whatever follows it; only the first line is looked at.</param>
    /// <param name="isReply">
    /// False for the client-to-server direction (PORT, EPRT), true for server-to-client (227, 229).
    /// </param>
    /// <param name="match">On Found, the whole result; on Partial and Malformed, the kind (and for a complete Malformed line, its length).</param>
    public static FtpScanStatus Scan(ReadOnlySpan<byte> data, bool isReply, out FtpMatch match)
    {
        match = default;
        if (data.IsEmpty)
        {
            return FtpScanStatus.NotFound;
        }

        FtpScanStatus prefix = MatchCommand(data, isReply, out FtpCommandKind kind);
        if (prefix == FtpScanStatus.NotFound)
        {
            return FtpScanStatus.NotFound;
        }

        if (prefix == FtpScanStatus.Partial)
        {
            return Partial(kind, out match);
        }

        // The argument is only looked for within this line's text, which ends at the first CR or LF.
        int lineEnd = data.IndexOfAny((byte)'\r', (byte)'\n');
        bool complete = lineEnd >= 0;
        ReadOnlySpan<byte> line = complete ? data.Slice(0, lineEnd) : data;
        int lineLength = complete ? TerminatedLength(data, lineEnd) : 0;

        int offset;
        int end;
        FtpAddressPort value;
        switch (kind)
        {
            case FtpCommandKind.Port:
                end = ParsePort(line, complete, out offset, out value);
                break;
            case FtpCommandKind.Eprt:
                end = ParseEprt(line, out offset, out value);
                break;
            case FtpCommandKind.Pasv:
                end = ParsePasv(line, complete, out offset, out value);
                break;
            default:
                end = ParseEpsv(line, out offset, out value);
                break;
        }

        if (end == Bad || (end == NeedMore && complete))
        {
            match = new FtpMatch(kind, default, 0, 0, lineLength);
            return FtpScanStatus.Malformed;
        }

        // A parsed argument still waits for its line's end: the text after it may yet turn out to
        // extend the last number, and the caller needs the whole line before it rewrites any of it.
        if (end == NeedMore || !complete)
        {
            return Partial(kind, out match);
        }

        match = new FtpMatch(kind, value, offset, end - offset, lineLength);
        return FtpScanStatus.Found;
    }

    /// <summary>The index just after the next '\n' at or after <paramref name="from"/>, or -1 if there is none.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="from"/> is negative or beyond the data.</exception>
    public static int NextLineStart(ReadOnlySpan<byte> data, int from)
    {
        if ((uint)from > (uint)data.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(from));
        }

        int index = data.Slice(from).IndexOf((byte)'\n');
        return index < 0 ? -1 : from + index + 1;
    }

    // Which command or reply the line starts with, tried in the kernel's order for the direction.
    // Partial when the data ends inside the word itself ("PO", "22"): the first candidate is reported.
    private static FtpScanStatus MatchCommand(ReadOnlySpan<byte> data, bool isReply, out FtpCommandKind kind)
    {
        kind = isReply ? FtpCommandKind.Pasv : FtpCommandKind.Port;
        FtpScanStatus status = PrefixMatch(data, isReply ? "227 "u8 : "port"u8);
        if (status != FtpScanStatus.NotFound)
        {
            return status;
        }

        kind = isReply ? FtpCommandKind.Epsv : FtpCommandKind.Eprt;
        return PrefixMatch(data, isReply ? "229 "u8 : "eprt"u8);
    }

    private static FtpScanStatus Partial(FtpCommandKind kind, out FtpMatch match)
    {
        match = new FtpMatch(kind, default, 0, 0, 0);
        return FtpScanStatus.Partial;
    }

    // Found when the data starts with the whole pattern and goes on past it; Partial when all the data
    // there is matches the start of the pattern (the kernel also calls data equal to the pattern partial).
    // The pattern is given in lowercase; letters compare without case, as FTP commands do.
    private static FtpScanStatus PrefixMatch(ReadOnlySpan<byte> data, ReadOnlySpan<byte> lowerPattern)
    {
        int count = Math.Min(data.Length, lowerPattern.Length);
        for (int i = 0; i < count; i++)
        {
            byte p = lowerPattern[i];
            byte b = data[i];
            bool same = p is >= (byte)'a' and <= (byte)'z' ? (byte)(b | 0x20) == p : b == p;
            if (!same)
            {
                return FtpScanStatus.NotFound;
            }
        }

        return data.Length > lowerPattern.Length ? FtpScanStatus.Found : FtpScanStatus.Partial;
    }

    private static int TerminatedLength(ReadOnlySpan<byte> data, int lineEnd) =>
        data[lineEnd] == (byte)'\r' && lineEnd + 1 < data.Length && data[lineEnd + 1] == (byte)'\n'
            ? lineEnd + 2
            : lineEnd + 1;

    // PORT h1,h2,h3,h4,p1,p2 — the numbers must run to the end of the line.
    private static int ParsePort(ReadOnlySpan<byte> line, bool complete, out int offset, out FtpAddressPort value)
    {
        value = default;
        offset = IndexAfter(line, 4, (byte)' ');
        if (offset < 0)
        {
            return NeedMore;
        }

        int end = ParseHostPort(line, offset, out value);
        if (end < 0)
        {
            return end;
        }

        if (end == line.Length)
        {
            // More digits could follow unless the terminator is already there.
            return complete ? end : NeedMore;
        }

        // The kernel wants the terminator right after the last number: "PORT 1,2,3,4,5,6 \r\n" is refused.
        return Bad;
    }

    // 227 <text> h1,h2,h3,h4,p1,p2 <text> — read from the first digit; whatever follows the numbers is free.
    private static int ParsePasv(ReadOnlySpan<byte> line, bool complete, out int offset, out FtpAddressPort value)
    {
        value = default;
        offset = -1;
        for (int i = 4; i < line.Length; i++)
        {
            if (IsDigit(line[i]))
            {
                offset = i;
                break;
            }
        }

        if (offset < 0)
        {
            return NeedMore;
        }

        int end = ParseHostPort(line, offset, out value);
        if (end == line.Length && !complete)
        {
            return NeedMore;
        }

        return end;
    }

    // EPRT |1|a.b.c.d|port| or EPRT |2|ipv6-text|port| with any delimiter in 33-126 but digits.
    private static int ParseEprt(ReadOnlySpan<byte> line, out int offset, out FtpAddressPort value)
    {
        value = default;
        offset = IndexAfter(line, 4, (byte)' ');
        if (offset < 0)
        {
            return NeedMore;
        }

        int p = offset;
        if (p >= line.Length)
        {
            return NeedMore;
        }

        byte delimiter = line[p];
        if (!IsDelimiter(delimiter))
        {
            return Bad;
        }

        if (p + 1 >= line.Length)
        {
            return NeedMore;
        }

        byte protocol = line[p + 1];
        if (protocol is not ((byte)'1' or (byte)'2'))
        {
            return Bad;
        }

        if (p + 2 >= line.Length)
        {
            return NeedMore;
        }

        if (line[p + 2] != delimiter)
        {
            return Bad;
        }

        int addressStart = p + 3;
        int portStart;
        if (protocol == (byte)'1')
        {
            Span<byte> octets = stackalloc byte[4];
            int addressEnd = ParseNumbers(line, addressStart, octets, (byte)'.');
            if (addressEnd < 0)
            {
                return addressEnd;
            }

            if (addressEnd == line.Length)
            {
                return NeedMore;
            }

            if (line[addressEnd] != delimiter)
            {
                return Bad;
            }

            value = FtpAddressPort.FromIPv4(octets, 0);
            portStart = addressEnd + 1;
        }
        else
        {
            int length = line.Slice(addressStart).IndexOf(delimiter);
            if (length < 0)
            {
                // Say Partial only while what has come so far could still begin an address.
                ReadOnlySpan<byte> sofar = line.Slice(addressStart);
                return sofar.Length <= MaxIPv6TextLength && !sofar.ContainsAnyExcept(IPv6TextChars) ? NeedMore : Bad;
            }

            Span<byte> address = stackalloc byte[16];
            if (!TryParseIPv6(line.Slice(addressStart, length), address))
            {
                return Bad;
            }

            value = FtpAddressPort.FromIPv6(address, 0);
            portStart = addressStart + length + 1;
        }

        int end = ParseDelimitedPort(line, portStart, delimiter, out ushort port);
        if (end < 0)
        {
            return end;
        }

        value = value.Family == 4
            ? FtpAddressPort.FromIPv4(value.IPv4Value, port)
            : FtpAddressPort.FromIPv6(value.AddressHigh, value.AddressLow, port);
        return end;
    }

    // 229 <text> (|||port|) — three equal delimiters, then the port and the delimiter again.
    private static int ParseEpsv(ReadOnlySpan<byte> line, out int offset, out FtpAddressPort value)
    {
        value = default;
        offset = IndexAfter(line, 4, (byte)'(');
        if (offset < 0)
        {
            return NeedMore;
        }

        int p = offset;
        if (p >= line.Length)
        {
            return NeedMore;
        }

        byte delimiter = line[p];
        if (!IsDelimiter(delimiter))
        {
            return Bad;
        }

        for (int i = p + 1; i < p + 3; i++)
        {
            if (i >= line.Length)
            {
                return NeedMore;
            }

            if (line[i] != delimiter)
            {
                return Bad;
            }
        }

        int end = ParseDelimitedPort(line, p + 3, delimiter, out ushort port);
        if (end >= 0)
        {
            value = FtpAddressPort.FromPort(port);
        }

        return end;
    }

    // Six comma-separated numbers 0-255: four address bytes then the port's high and low bytes.
    private static int ParseHostPort(ReadOnlySpan<byte> line, int start, out FtpAddressPort value)
    {
        value = default;
        Span<byte> numbers = stackalloc byte[6];
        int end = ParseNumbers(line, start, numbers, (byte)',');
        if (end >= 0)
        {
            value = FtpAddressPort.FromIPv4(numbers, (ushort)(numbers[4] << 8 | numbers[5]));
        }

        return end;
    }

    // Reads numbers.Length decimal numbers of 0-255, each of at least one digit, separated by `separator`.
    // Returns the index of the first byte after the last digit (the end of the line if the digits run to it),
    // Bad if a byte or a value is wrong (a separator after the last number is wrong too: one number too many),
    // NeedMore if the line ends before the last number has begun.
    private static int ParseNumbers(ReadOnlySpan<byte> line, int start, Span<byte> numbers, byte separator)
    {
        int i = start;
        for (int n = 0; n < numbers.Length; n++)
        {
            int value = 0;
            int digits = 0;
            while (i < line.Length && IsDigit(line[i]))
            {
                value = value * 10 + (line[i] - '0');
                if (value > 255)
                {
                    return Bad;
                }

                digits++;
                i++;
            }

            numbers[n] = (byte)value;
            bool last = n == numbers.Length - 1;
            if (i == line.Length)
            {
                return last && digits > 0 ? i : NeedMore;
            }

            if (digits == 0)
            {
                return Bad;
            }

            if (line[i] == separator)
            {
                if (last)
                {
                    return Bad;
                }

                i++;
            }
            else if (!last)
            {
                return Bad;
            }
        }

        return i;
    }

    // A port of 1-65535 closed by the delimiter; returns the index after the delimiter. Like the kernel,
    // port 0 (or no digits at all) is refused.
    private static int ParseDelimitedPort(ReadOnlySpan<byte> line, int start, byte delimiter, out ushort port)
    {
        port = 0;
        int value = 0;
        for (int i = start; i < line.Length; i++)
        {
            byte b = line[i];
            if (b == delimiter)
            {
                if (value == 0)
                {
                    return Bad;
                }

                port = (ushort)value;
                return i + 1;
            }

            if (!IsDigit(b))
            {
                return Bad;
            }

            value = value * 10 + (b - '0');
            if (value > ushort.MaxValue)
            {
                return Bad;
            }
        }

        return NeedMore;
    }

    // The index just after the first `what` at or after `from`, or -1.
    private static int IndexAfter(ReadOnlySpan<byte> line, int from, byte what)
    {
        if (from > line.Length)
        {
            return -1;
        }

        int index = line.Slice(from).IndexOf(what);
        return index < 0 ? -1 : from + index + 1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsDigit(byte b) => (uint)(b - '0') <= 9;

    // RFC 2428 allows any printable ASCII character as delimiter; like the kernel we also refuse digits,
    // which would make the numbers ambiguous.
    private static bool IsDelimiter(byte b) => b is >= 33 and <= 126 && !IsDigit(b);
}
