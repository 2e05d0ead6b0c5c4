using System.Globalization;

namespace Offload.Alg.Irc;

/// <summary>
/// Finds the DCC offers in what an IRC client sends (<c>PRIVMSG target :\x01DCC SEND file address port size\x01</c>)
/// and formats their translated endpoint, as the kernel's IRC conntrack and NAT helpers do. Works on spans only;
/// nothing here allocates.
/// </summary>
/// <remarks>
/// <para>
/// As in today's kernel, an offer counts only where a CTCP message starts: the line begins (after blanks) with
/// <c>PRIVMSG</c> in any case, and the first <c>" :"</c> after it, the start of the message text, is followed
/// by <c>\x01DCC </c>. A "DCC" further inside a message (a quote, a file name) is text, never an offer. The
/// kinds read are the kernel's: SEND, CHAT, MOVE, TSEND, SCHAT (RESUME and ACCEPT carry no address). The address
/// is IPv4 as one decimal number, as DCC has it.
/// </para>
/// <para>
/// Where this differs from the kernel, it is stricter or confined to one line: the address has 1 to 10 digits and
/// must fit 32 bits, the port 1 to 5 digits and at most 65535 (the kernel's strtoul wraps both silently); the port
/// must be followed by a blank or the closing \x01, and the CTCP message must be closed by \x01 on its line; a
/// file name in double quotes may contain blanks (the kernel stops at the first blank); every search stops at the
/// end of the line; a line longer than <see cref="MaxLineLength"/> is not read.
/// </para>
/// </remarks>
public static class IrcParser
{
    /// <summary>The longest line read, terminator included: RFC 2812's 512 bytes, with room for the IRCv3 tags some clients add.</summary>
    public const int MaxLineLength = 1024;

    /// <summary>How much of one segment is looked at (the kernel's limit, 4095 bytes, rounded to a page).</summary>
    public const int MaxScanLength = 4096;

    /// <summary>The longest replacement text: "4294967295 65535".</summary>
    public const int MaxReplacementLength = 16;

    private static ReadOnlySpan<byte> Privmsg => "PRIVMSG "u8;

    private static ReadOnlySpan<byte> CtcpDcc => "\u0001DCC "u8;

    /// <summary>
    /// Scans one line that starts at <c>data[0]</c>; the caller guarantees that it is the start of a line.
    /// </summary>
    /// <param name="data">The line and whatever follows it; only the first line is looked at.</param>
    /// <param name="offer">On Found, the offer; on Malformed, its kind and (when seen) the line's length.</param>
    public static IrcScanStatus Scan(ReadOnlySpan<byte> data, out DccOffer offer)
    {
        offer = default;
        int newline = data.IndexOf((byte)'\n');
        var line = newline >= 0 ? data.Slice(0, newline) : data;
        if (line.Length >= MaxLineLength)
        {
            // No IRC client sends such a line; a DCC offer inside it is not read (but counted if it is one).
            line = line.Slice(0, MaxLineLength);
            return Prefix(line, out _, out var overlongKind) == IrcScanStatus.NotFound
                ? IrcScanStatus.NotFound
                : Malformed(overlongKind, newline >= 0 ? newline + 1 : 0, out offer);
        }

        var prefix = Prefix(line, out int pos, out var kind);
        if (prefix != IrcScanStatus.Found)
        {
            // NotFound, or Partial: the line's beginning could still become an offer.
            return newline < 0 && prefix == IrcScanStatus.Partial ? IrcScanStatus.Partial : IrcScanStatus.NotFound;
        }

        if (newline < 0)
        {
            // The offer's end is not in the data yet: never parse half an offer.
            return IrcScanStatus.Partial;
        }

        int lineLength = newline + 1;

        // The argument (file name or "chat"): a quoted name may hold blanks, otherwise it ends at the first blank.
        pos = SkipArgument(line, pos);
        if (pos < 0)
        {
            return Malformed(kind, lineLength, out offer);
        }

        int addressStart = pos;
        if (!ReadNumber(line, ref pos, 10, out ulong address) || address > uint.MaxValue)
        {
            return Malformed(kind, lineLength, out offer);
        }

        int blanks = pos;
        while (pos < line.Length && line[pos] == (byte)' ')
        {
            pos++;
        }

        if (pos == blanks || !ReadNumber(line, ref pos, 5, out ulong port) || port > ushort.MaxValue)
        {
            return Malformed(kind, lineLength, out offer);
        }

        int addressEnd = pos;

        // After the port: a blank (a size follows) or the end of the CTCP message, which must be closed on this line.
        if (pos >= line.Length || (line[pos] != (byte)' ' && line[pos] != 1) || line.Slice(pos).IndexOf((byte)1) < 0)
        {
            return Malformed(kind, lineLength, out offer);
        }

        offer = new DccOffer(kind, (uint)address, (ushort)port, addressStart, addressEnd - addressStart, lineLength);
        return IrcScanStatus.Found;
    }

    /// <summary>The start of the next line after the one starting at <paramref name="lineStart"/>, or -1 when that line does not end in <paramref name="data"/>.</summary>
    public static int NextLineStart(ReadOnlySpan<byte> data, int lineStart)
    {
        if ((uint)lineStart >= (uint)data.Length)
        {
            return -1;
        }

        int newline = data.Slice(lineStart).IndexOf((byte)'\n');
        return newline < 0 ? -1 : lineStart + newline + 1;
    }

    /// <summary>Writes <c>address port</c> in the offer's form (decimal numbers); returns the length written, or -1 when it does not fit.</summary>
    public static int FormatReplacement(uint address, ushort port, Span<byte> destination)
    {
        int written = 0;
        if (!address.TryFormat(destination, out int n, default, CultureInfo.InvariantCulture))
        {
            return -1;
        }

        written += n;
        if (written >= destination.Length)
        {
            return -1;
        }

        destination[written++] = (byte)' ';
        if (!port.TryFormat(destination.Slice(written), out n, default, CultureInfo.InvariantCulture))
        {
            return -1;
        }

        return written + n;
    }

    /// <summary>
    /// Checks the line's beginning: blanks, "PRIVMSG ", the target, " :", "\x01DCC ", a known kind and its blank.
    /// Found leaves <paramref name="pos"/> after the kind's blank; Partial means the line ended while it still matched.
    /// </summary>
    private static IrcScanStatus Prefix(ReadOnlySpan<byte> line, out int pos, out DccKind kind)
    {
        kind = DccKind.None;
        pos = 0;
        while (pos < line.Length && (line[pos] == (byte)' ' || line[pos] == (byte)'\r'))
        {
            pos++;
        }

        var rest = line.Slice(pos);
        if (!StartsWithIgnoreCase(rest, Privmsg))
        {
            return IsIgnoreCasePrefixOf(rest, Privmsg) ? IrcScanStatus.Partial : IrcScanStatus.NotFound;
        }

        pos += Privmsg.Length;

        // The message text starts at the first " :" (a target never holds a blank).
        int text = line.Slice(pos).IndexOf(" :"u8);
        if (text < 0)
        {
            return IrcScanStatus.Partial;
        }

        pos += text + 2;
        rest = line.Slice(pos);
        if (!rest.StartsWith(CtcpDcc))
        {
            return CtcpDcc.StartsWith(rest) ? IrcScanStatus.Partial : IrcScanStatus.NotFound;
        }

        pos += CtcpDcc.Length;
        rest = line.Slice(pos);
        kind = KindOf(rest, out int kindLength);
        if (kind == DccKind.None)
        {
            // RESUME, ACCEPT and the rest name no address; or the kind is cut off by the end of the data.
            return rest.Length < 6 ? IrcScanStatus.Partial : IrcScanStatus.NotFound;
        }

        pos += kindLength;
        return IrcScanStatus.Found;
    }

    private static DccKind KindOf(ReadOnlySpan<byte> rest, out int length)
    {
        (DccKind Kind, int Length) found = rest switch
        {
            _ when rest.StartsWith("SEND "u8) => (DccKind.Send, 5),
            _ when rest.StartsWith("CHAT "u8) => (DccKind.Chat, 5),
            _ when rest.StartsWith("MOVE "u8) => (DccKind.Move, 5),
            _ when rest.StartsWith("TSEND "u8) => (DccKind.TSend, 6),
            _ when rest.StartsWith("SCHAT "u8) => (DccKind.SChat, 6),
            _ => (DccKind.None, 0),
        };
        length = found.Length;
        return found.Kind;
    }

    /// <summary>Skips the argument and the blanks after it; returns where the address starts, or -1.</summary>
    private static int SkipArgument(ReadOnlySpan<byte> line, int pos)
    {
        if (pos >= line.Length || line[pos] == (byte)' ' || line[pos] == 1)
        {
            return -1;
        }

        if (line[pos] == (byte)'"')
        {
            int close = line.Slice(pos + 1).IndexOf((byte)'"');
            if (close < 0)
            {
                return -1;
            }

            pos += close + 2;
        }
        else
        {
            while (pos < line.Length && line[pos] != (byte)' ' && line[pos] != 1)
            {
                pos++;
            }
        }

        int afterArgument = pos;
        while (pos < line.Length && line[pos] == (byte)' ')
        {
            pos++;
        }

        return pos == afterArgument ? -1 : pos;
    }

    /// <summary>Reads 1 to <paramref name="maxDigits"/> decimal digits; false when there are none or too many.</summary>
    private static bool ReadNumber(ReadOnlySpan<byte> line, ref int pos, int maxDigits, out ulong value)
    {
        value = 0;
        int start = pos;
        while (pos < line.Length && (uint)(line[pos] - '0') <= 9)
        {
            if (pos - start == maxDigits)
            {
                return false;
            }

            value = (value * 10) + (uint)(line[pos] - '0');
            pos++;
        }

        return pos > start;
    }

    // "PRIVMSG" in any case: clearing bit 5 upper-cases an ASCII letter; the blank must match as it is.
    private static bool StartsWithIgnoreCase(ReadOnlySpan<byte> data, ReadOnlySpan<byte> upper) =>
        data.Length >= upper.Length && PrefixMatch(data.Slice(0, upper.Length), upper);

    private static bool IsIgnoreCasePrefixOf(ReadOnlySpan<byte> data, ReadOnlySpan<byte> upper) =>
        data.Length < upper.Length && PrefixMatch(data, upper);

    private static bool PrefixMatch(ReadOnlySpan<byte> data, ReadOnlySpan<byte> upper)
    {
        for (int i = 0; i < data.Length; i++)
        {
            if (data[i] != upper[i] && (upper[i] == (byte)' ' || (data[i] & 0xDF) != upper[i]))
            {
                return false;
            }
        }

        return true;
    }

    private static IrcScanStatus Malformed(DccKind kind, int lineLength, out DccOffer offer)
    {
        offer = new DccOffer(kind, 0, 0, 0, 0, lineLength);
        return IrcScanStatus.Malformed;
    }
}
