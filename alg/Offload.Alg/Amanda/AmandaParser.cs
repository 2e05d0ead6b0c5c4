namespace Offload.Alg.Amanda;

/// <summary>One port an Amanda client announced: where its digits lie in the payload, and their value.</summary>
/// <param name="Offset">Index of the first digit in the payload.</param>
/// <param name="Length">How many digits (1 to 5).</param>
/// <param name="Port">The port they spell (1 to 65535).</param>
public readonly record struct AmandaPort(int Offset, int Length, ushort Port);

/// <summary>What <see cref="AmandaParser.Scan"/> found.</summary>
public enum AmandaScanStatus : byte
{
    /// <summary>No complete CONNECT line, or one that names no stream.</summary>
    NotFound,

    /// <summary>At least one port was read and nothing malformed was met.</summary>
    Found,

    /// <summary>A stream keyword was followed by something other than a port from 1 to 65535; the ports read before it are kept.</summary>
    Malformed,
}

/// <summary>
/// Reads the ports an Amanda client (amandad) announces in its UDP reply to the server: the line that follows
/// <c>CONNECT </c> names streams such as <c>DATA 50000 MESG 50001 INDEX 50002</c>, and the server then opens one TCP
/// connection to each. Works on spans only; nothing here allocates.
/// </summary>
/// <remarks>
/// <para>
/// What is read follows the kernel's helper: the first <c>CONNECT </c> anywhere in the datagram, and the text from
/// there to the next newline; in that text the first occurrence of each of <c>DATA </c>, <c>MESG </c>,
/// <c>INDEX </c> and <c>STATE </c>, each followed at once by a decimal port. The scan is linear in the payload and
/// never reads past it.
/// </para>
/// <para>
/// Stricter than the kernel: a number of more than five digits or above 65535 is malformed (the kernel reads the
/// first five digits and keeps the low 16 bits of their value, so "70000" would open port 4464). As in the kernel, a
/// malformed or missing number stops the scan, and the keywords are found as plain substrings.
/// </para>
/// </remarks>
public static class AmandaParser
{
    /// <summary>How many streams a CONNECT line can announce (one per keyword).</summary>
    public const int MaxPorts = 4;

    /// <summary>The longest text a port takes ("65535").</summary>
    public const int MaxPortDigits = 5;

    private static ReadOnlySpan<byte> Connect => "CONNECT "u8;

    /// <summary>
    /// Finds the ports the CONNECT line of <paramref name="payload"/> announces, in the order they appear in it.
    /// </summary>
    /// <param name="payload">The UDP payload of a reply from the client.</param>
    /// <param name="ports">Receives the ports found; needs room for <see cref="MaxPorts"/>.</param>
    /// <param name="count">How many were written to <paramref name="ports"/>.</param>
    public static AmandaScanStatus Scan(ReadOnlySpan<byte> payload, Span<AmandaPort> ports, out int count)
    {
        count = 0;
        int connect = payload.IndexOf(Connect);
        if (connect < 0)
        {
            return AmandaScanStatus.NotFound;
        }

        int start = connect + Connect.Length;
        int lineLength = payload.Slice(start).IndexOf((byte)'\n');
        if (lineLength < 0)
        {
            // The kernel wants the newline too: a line cut short is not read.
            return AmandaScanStatus.NotFound;
        }

        var line = payload.Slice(start, lineLength);
        bool malformed = false;
        for (int keyword = 0; keyword < MaxPorts && !malformed; keyword++)
        {
            var word = Keyword(keyword);
            int at = line.IndexOf(word);
            if (at < 0)
            {
                continue;
            }

            int digits = at + word.Length;
            if (!TryReadPort(line.Slice(digits), out ushort port, out int length))
            {
                malformed = true;
                break;
            }

            if (count < ports.Length)
            {
                Insert(ports, count, new AmandaPort(start + digits, length, port));
                count++;
            }
        }

        return malformed ? AmandaScanStatus.Malformed : count > 0 ? AmandaScanStatus.Found : AmandaScanStatus.NotFound;
    }

    /// <summary>Reads 1 to 5 decimal digits spelling 1 to 65535, ended by a non-digit or the end of the text.</summary>
    internal static bool TryReadPort(ReadOnlySpan<byte> text, out ushort port, out int length)
    {
        port = 0;
        length = 0;
        int value = 0;
        while (length < text.Length && (uint)(text[length] - '0') <= 9)
        {
            if (length == MaxPortDigits)
            {
                return false;
            }

            value = (value * 10) + (text[length] - '0');
            length++;
        }

        if (length == 0 || value == 0 || value > ushort.MaxValue)
        {
            return false;
        }

        port = (ushort)value;
        return true;
    }

    /// <summary>Writes <paramref name="port"/> in decimal; returns the length (at most <see cref="MaxPortDigits"/>).</summary>
    public static int FormatPort(ushort port, Span<byte> destination)
    {
        int digits = port >= 10000 ? 5 : port >= 1000 ? 4 : port >= 100 ? 3 : port >= 10 ? 2 : 1;
        if (destination.Length < digits)
        {
            return -1;
        }

        int value = port;
        for (int i = digits - 1; i >= 0; i--)
        {
            destination[i] = (byte)('0' + (value % 10));
            value /= 10;
        }

        return digits;
    }

    private static ReadOnlySpan<byte> Keyword(int index) => index switch
    {
        0 => "DATA "u8,
        1 => "MESG "u8,
        2 => "INDEX "u8,
        _ => "STATE "u8,
    };

    // Keeps the ports in payload order, so that rewrites can be asked for front to back.
    private static void Insert(Span<AmandaPort> ports, int count, AmandaPort port)
    {
        int i = count;
        while (i > 0 && ports[i - 1].Offset > port.Offset)
        {
            ports[i] = ports[i - 1];
            i--;
        }

        ports[i] = port;
    }
}
