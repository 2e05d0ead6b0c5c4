using System.Buffers;
using System.Buffers.Binary;

namespace Offload.Alg.Ftp;

public static partial class FtpParser
{
    /// <summary>The longest IPv6 text <see cref="FormatIPv6(ReadOnlySpan{byte}, Span{byte})"/> writes or <see cref="TryParseIPv6"/> reads
    /// (six full groups then a dotted quad: <c>ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255</c>).</summary>
    public const int MaxIPv6TextLength = 45;

    /// <summary>The longest text <see cref="FormatReplacement"/> writes: <c>|2|</c>, an IPv6 address, <c>|65535|</c>.</summary>
    public const int MaxReplacementLength = 3 + MaxIPv6TextLength + 7;

    private static readonly SearchValues<byte> IPv6TextChars = SearchValues.Create("0123456789abcdefABCDEF:."u8);

    private static ReadOnlySpan<byte> HexDigits => "0123456789abcdef"u8;

    /// <summary>
    /// Writes the text a NAT rewrite puts in place of <see cref="FtpMatch.ReplaceOffset"/>/<see cref="FtpMatch.ReplaceLength"/>,
    /// in the kernel's formats: <c>a,b,c,d,p1,p2</c> for PORT and 227, <c>|1|a.b.c.d|port|</c> or
    /// <c>|2|ipv6-text|port|</c> for EPRT, <c>|||port|</c> for 229. EPRT is always written with '|',
    /// whatever delimiter the original line used, as the kernel does.
    /// </summary>
    /// <param name="kind">The kind of the line being rewritten.</param>
    /// <param name="value">The new endpoint. PORT and 227 need family 4, EPRT family 4 or 6; 229 uses the port only.</param>
    /// <param name="destination">Where to write; <see cref="MaxReplacementLength"/> bytes always suffice.</param>
    /// <param name="ipv6Form">How an EPRT IPv6 address is written (the kernel's nf_nat_ftp writes <see cref="IPv6TextForm.Full"/>).</param>
    /// <returns>The number of bytes written, or -1 if <paramref name="destination"/> is too small (its content is then undefined).</returns>
    /// <exception cref="ArgumentException">The family of <paramref name="value"/> does not fit <paramref name="kind"/>.</exception>
    public static int FormatReplacement(
        FtpCommandKind kind,
        in FtpAddressPort value,
        Span<byte> destination,
        IPv6TextForm ipv6Form = IPv6TextForm.Compressed)
    {
        var writer = new AsciiWriter(destination);
        switch (kind)
        {
            case FtpCommandKind.Port:
            case FtpCommandKind.Pasv:
                if (value.Family != 4)
                {
                    throw new ArgumentException("PORT and 227 carry an IPv4 address.", nameof(value));
                }

                uint address = value.IPv4Value;
                writer.Decimal(address >> 24);
                writer.Byte((byte)',');
                writer.Decimal((address >> 16) & 0xFF);
                writer.Byte((byte)',');
                writer.Decimal((address >> 8) & 0xFF);
                writer.Byte((byte)',');
                writer.Decimal(address & 0xFF);
                writer.Byte((byte)',');
                writer.Decimal((uint)value.Port >> 8);
                writer.Byte((byte)',');
                writer.Decimal((uint)value.Port & 0xFF);
                break;

            case FtpCommandKind.Eprt:
                if (value.Family == 4)
                {
                    writer.Text("|1|"u8);
                    writer.IPv4(value.IPv4Value);
                }
                else if (value.Family == 6)
                {
                    writer.Text("|2|"u8);
                    Span<byte> bytes = stackalloc byte[16];
                    value.CopyAddressTo(bytes);
                    writer.IPv6(bytes, ipv6Form);
                }
                else
                {
                    throw new ArgumentException("EPRT carries an IPv4 or IPv6 address.", nameof(value));
                }

                writer.Byte((byte)'|');
                writer.Decimal(value.Port);
                writer.Byte((byte)'|');
                break;

            case FtpCommandKind.Epsv:
                writer.Text("|||"u8);
                writer.Decimal(value.Port);
                writer.Byte((byte)'|');
                break;

            default:
                throw new ArgumentException("Unknown command kind.", nameof(kind));
        }

        return writer.Result;
    }

    /// <summary>
    /// Parses IPv6 text (RFC 4291 section 2.2): one to eight groups of 1-4 hex digits in either case,
    /// at most one <c>::</c> standing for one or more zero groups, and optionally a dotted-quad IPv4 address
    /// in place of the last two groups. The whole text must be the address: no brackets, zone or prefix length.
    /// </summary>
    /// <param name="text">The address text, ASCII.</param>
    /// <param name="address16">Receives the 16 address bytes in network order when the text is valid.</param>
    /// <returns>True if <paramref name="text"/> is exactly one IPv6 address.</returns>
    /// <exception cref="ArgumentException"><paramref name="address16"/> is shorter than 16 bytes.</exception>
    public static bool TryParseIPv6(ReadOnlySpan<byte> text, Span<byte> address16)
    {
        if (address16.Length < 16)
        {
            throw new ArgumentException("The destination must hold 16 bytes.", nameof(address16));
        }

        if (text.Length < 2 || text.Length > MaxIPv6TextLength)
        {
            return false;
        }

        Span<ushort> groups = stackalloc ushort[8];
        int count = 0;
        int gap = -1; // how many groups stood before the "::", when there is one
        int i = 0;

        if (text[0] == (byte)':')
        {
            if (text[1] != (byte)':')
            {
                return false;
            }

            gap = 0;
            i = 2;
        }

        while (i < text.Length)
        {
            int groupStart = i;
            int value = 0;
            while (i < text.Length && i - groupStart < 5 && HexValue(text[i]) is int digit && digit >= 0)
            {
                value = value << 4 | digit;
                i++;
            }

            int digits = i - groupStart;
            if (i < text.Length && text[i] == (byte)'.')
            {
                // The last 32 bits written as a dotted quad: parse them again from the group's start.
                if (count > 6 || !TryParseDottedQuad(text.Slice(groupStart), out uint v4))
                {
                    return false;
                }

                groups[count++] = (ushort)(v4 >> 16);
                groups[count++] = (ushort)v4;
                i = text.Length;
                break;
            }

            if (digits is 0 or > 4 || count == 8)
            {
                return false;
            }

            groups[count++] = (ushort)value;
            if (i == text.Length)
            {
                break;
            }

            if (text[i] != (byte)':')
            {
                return false;
            }

            i++;
            if (i < text.Length && text[i] == (byte)':')
            {
                if (gap >= 0)
                {
                    return false;
                }

                gap = count;
                i++;
            }
            else if (i == text.Length)
            {
                return false; // a single trailing colon
            }
        }

        if (gap < 0 ? count != 8 : count > 7)
        {
            return false;
        }

        // Spread the groups out: those after the "::" move to the end, zeros fill the gap.
        Span<byte> result = address16.Slice(0, 16);
        result.Clear();
        int tail = gap < 0 ? 0 : count - gap;
        int head = count - tail;
        for (int g = 0; g < head; g++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(result.Slice(2 * g), groups[g]);
        }

        for (int g = 0; g < tail; g++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(result.Slice(2 * (8 - tail + g)), groups[head + g]);
        }

        return true;
    }

    /// <summary>
    /// Writes an IPv6 address in RFC 5952 canonical text, as the kernel's <c>%pI6c</c> does: lowercase hex
    /// without leading zeros, the longest run of at least two zero groups (the first on a tie) as <c>::</c>,
    /// and an IPv4-mapped (<c>::ffff:0:0/96</c>) or ISATAP (<c>…:0:5efe:…</c>, <c>…:200:5efe:…</c>) address with its
    /// last 32 bits in dotted decimal.
    /// </summary>
    /// <param name="address16">16 address bytes in network order.</param>
    /// <param name="destination">Where to write; <see cref="MaxIPv6TextLength"/> bytes always suffice.</param>
    /// <returns>The number of bytes written, or -1 if <paramref name="destination"/> is too small.</returns>
    /// <exception cref="ArgumentException"><paramref name="address16"/> is shorter than 16 bytes.</exception>
    public static int FormatIPv6(ReadOnlySpan<byte> address16, Span<byte> destination) =>
        FormatIPv6(address16, destination, IPv6TextForm.Compressed);

    /// <summary>Writes an IPv6 address in the given <paramref name="form"/>; see <see cref="IPv6TextForm"/>.</summary>
    /// <returns>The number of bytes written, or -1 if <paramref name="destination"/> is too small.</returns>
    /// <exception cref="ArgumentException"><paramref name="address16"/> is shorter than 16 bytes.</exception>
    public static int FormatIPv6(ReadOnlySpan<byte> address16, Span<byte> destination, IPv6TextForm form)
    {
        var writer = new AsciiWriter(destination);
        writer.IPv6(address16, form);
        return writer.Result;
    }

    /// <summary>Writes an IPv4 address (host-order value) as a dotted quad; returns the length or -1 if it does not fit.</summary>
    internal static int FormatIPv4(uint address, Span<byte> destination)
    {
        var writer = new AsciiWriter(destination);
        writer.IPv4(address);
        return writer.Result;
    }

    private static int HexValue(byte b)
    {
        if ((uint)(b - '0') <= 9)
        {
            return b - '0';
        }

        int lower = b | 0x20;
        return (uint)(lower - 'a') <= 5 ? lower - 'a' + 10 : -1;
    }

    // Exactly "d.d.d.d", each 0-255 in 1-3 digits without a leading zero, filling the whole span.
    private static bool TryParseDottedQuad(ReadOnlySpan<byte> text, out uint address)
    {
        address = 0;
        int i = 0;
        for (int n = 0; n < 4; n++)
        {
            int value = 0;
            int start = i;
            while (i < text.Length && IsDigit(text[i]) && i - start < 3)
            {
                value = value * 10 + (text[i] - '0');
                i++;
            }

            // No leading zeros, as in RFC 3986's dec-octet and inet_pton: "01" could be read as octal.
            if (i == start || value > 255 || (text[start] == (byte)'0' && i - start > 1))
            {
                return false;
            }

            address = address << 8 | (uint)value;
            if (n < 3)
            {
                if (i == text.Length || text[i] != (byte)'.')
                {
                    return false;
                }

                i++;
            }
        }

        return i == text.Length;
    }

    // Appends ASCII into a span and remembers, instead of throwing, that it ran out of room.
    private ref struct AsciiWriter
    {
        private readonly Span<byte> _destination;
        private int _position;
        private bool _overflow;

        public AsciiWriter(Span<byte> destination)
        {
            _destination = destination;
            _position = 0;
            _overflow = false;
        }

        public readonly int Result => _overflow ? -1 : _position;

        public void Byte(byte value)
        {
            if (_position < _destination.Length)
            {
                _destination[_position++] = value;
            }
            else
            {
                _overflow = true;
            }
        }

        public void Text(scoped ReadOnlySpan<byte> text)
        {
            if (text.TryCopyTo(_destination.Slice(_position)))
            {
                _position += text.Length;
            }
            else
            {
                _overflow = true;
            }
        }

        public void Decimal(uint value)
        {
            Span<byte> digits = stackalloc byte[10];
            int start = digits.Length;
            do
            {
                digits[--start] = (byte)('0' + value % 10);
                value /= 10;
            }
            while (value != 0);

            Text(digits.Slice(start));
        }

        public void IPv4(uint address)
        {
            Decimal(address >> 24);
            Byte((byte)'.');
            Decimal((address >> 16) & 0xFF);
            Byte((byte)'.');
            Decimal((address >> 8) & 0xFF);
            Byte((byte)'.');
            Decimal(address & 0xFF);
        }

        public void IPv6(scoped ReadOnlySpan<byte> address16, IPv6TextForm form)
        {
            if (address16.Length < 16)
            {
                throw new ArgumentException("The address must be 16 bytes.", nameof(address16));
            }

            if (form == IPv6TextForm.Full)
            {
                for (int g = 0; g < 8; g++)
                {
                    if (g > 0)
                    {
                        Byte((byte)':');
                    }

                    Hex(BinaryPrimitives.ReadUInt16BigEndian(address16.Slice(2 * g)), fixedWidth: true);
                }

                return;
            }

            // Mapped and ISATAP addresses end in an IPv4 address, which reads better in dotted form
            // (RFC 5952 section 5); the kernel's %pI6c picks out exactly these two.
            ushort group4 = BinaryPrimitives.ReadUInt16BigEndian(address16.Slice(8));
            ushort group5 = BinaryPrimitives.ReadUInt16BigEndian(address16.Slice(10));
            bool mapped = BinaryPrimitives.ReadUInt64BigEndian(address16) == 0 && group4 == 0 && group5 == 0xFFFF;
            bool isatap = (group4 | 0x0200) == 0x0200 && group5 == 0x5EFE;
            bool dotted = mapped || isatap;
            int hexGroups = dotted ? 6 : 8;

            // The longest run of zero groups, the first one on a tie; a single zero group stays as "0".
            int runStart = -1;
            int runLength = 1;
            for (int g = 0; g < hexGroups;)
            {
                if (address16[2 * g] != 0 || address16[2 * g + 1] != 0)
                {
                    g++;
                    continue;
                }

                int start = g;
                while (g < hexGroups && address16[2 * g] == 0 && address16[2 * g + 1] == 0)
                {
                    g++;
                }

                if (g - start > runLength)
                {
                    runStart = start;
                    runLength = g - start;
                }
            }

            bool needColon = false;
            for (int g = 0; g < hexGroups; g++)
            {
                if (g == runStart)
                {
                    Text("::"u8);
                    g += runLength - 1;
                    needColon = false;
                    continue;
                }

                if (needColon)
                {
                    Byte((byte)':');
                }

                Hex(BinaryPrimitives.ReadUInt16BigEndian(address16.Slice(2 * g)), fixedWidth: false);
                needColon = true;
            }

            if (dotted)
            {
                if (needColon)
                {
                    Byte((byte)':');
                }

                IPv4(BinaryPrimitives.ReadUInt32BigEndian(address16.Slice(12)));
            }
        }

        private void Hex(ushort value, bool fixedWidth)
        {
            bool started = fixedWidth;
            for (int shift = 12; shift >= 0; shift -= 4)
            {
                int nibble = (value >> shift) & 0xF;
                if (nibble != 0 || started || shift == 0)
                {
                    Byte(HexDigits[nibble]);
                    started = true;
                }
            }
        }
    }
}
