using System.Buffers.Text;
using System.Net;

namespace Offload.Alg.Sip;

/// <summary>An address and port as written in a SIP URI, a Via sent-by or an SDP line: where it lies and what it says.</summary>
internal readonly record struct SipEndpoint(InetAddress Address, ushort Port, bool HasPort, int Start, int Length);

/// <summary>
/// Reads and writes the host[:port] forms SIP and SDP use: dotted IPv4, bracketed IPv6 in URIs and Via, bare IPv6
/// in SDP. Host names are not addresses and are left alone, as the kernel leaves them.
/// </summary>
internal static class SipAddressText
{
    /// <summary>The default SIP port, assumed where a URI names none (as the kernel's parser assumes it).</summary>
    public const ushort DefaultPort = 5060;

    /// <summary>Longest text <see cref="Format"/> writes: a bracketed IPv6 address and a port.</summary>
    public const int MaxLength = 2 + 45 + 6;

    /// <summary>Reads host[:port] at the start of <paramref name="text"/>; the port is <see cref="DefaultPort"/> when absent.</summary>
    public static bool TryReadHostPort(ReadOnlySpan<byte> text, byte family, int offset, out SipEndpoint endpoint)
    {
        endpoint = default;
        int used;
        InetAddress address;
        if (family == 6)
        {
            if (text.IsEmpty || text[0] != (byte)'[')
            {
                return false;
            }

            int close = text.IndexOf((byte)']');
            if (close < 3 || !TryReadIPv6(text[1..close], out address))
            {
                return false;
            }

            used = close + 1;
        }
        else if (!TryReadIPv4(text, out address, out used))
        {
            return false;
        }

        ushort port = DefaultPort;
        bool hasPort = false;
        if (used < text.Length && text[used] == (byte)':')
        {
            if (!Utf8Parser.TryParse(text[(used + 1)..], out ushort parsed, out int digits) || digits == 0 || digits > 5 || parsed == 0)
            {
                return false;
            }

            port = parsed;
            hasPort = true;
            used += 1 + digits;
        }

        endpoint = new SipEndpoint(address, port, hasPort, offset, used);
        return true;
    }

    /// <summary>Reads a bare address (SDP's c= and o=): dotted IPv4, or IPv6 without brackets.</summary>
    public static bool TryReadBare(ReadOnlySpan<byte> text, byte family, out InetAddress address, out int used)
    {
        if (family == 4)
        {
            return TryReadIPv4(text, out address, out used);
        }

        used = 0;
        while (used < text.Length && (IsHex(text[used]) || text[used] == (byte)':' || text[used] == (byte)'.'))
        {
            used++;
        }

        return TryReadIPv6(text[..used], out address);
    }

    /// <summary>Dotted-quad IPv4; the byte after it must not continue a host name.</summary>
    public static bool TryReadIPv4(ReadOnlySpan<byte> text, out InetAddress address, out int used)
    {
        address = default;
        used = 0;
        uint value = 0;
        for (int part = 0; part < 4; part++)
        {
            if (part > 0)
            {
                if (used >= text.Length || text[used] != (byte)'.')
                {
                    return false;
                }

                used++;
            }

            int digits = 0;
            uint octet = 0;
            while (used < text.Length && digits < 3 && text[used] >= (byte)'0' && text[used] <= (byte)'9')
            {
                octet = octet * 10 + (uint)(text[used] - '0');
                used++;
                digits++;
            }

            if (digits == 0 || octet > 255)
            {
                return false;
            }

            value = (value << 8) | octet;
        }

        if (used < text.Length && (IsHostChar(text[used]) || text[used] == (byte)'.'))
        {
            return false; // "10.0.0.1.example.com" is a name
        }

        address = InetAddress.FromIPv4(value);
        return true;
    }

    /// <summary>An IPv6 address in any of its text forms (compressed, with an IPv4 tail), without brackets or zone.</summary>
    public static bool TryReadIPv6(ReadOnlySpan<byte> text, out InetAddress address)
    {
        address = default;
        if (text.Length is < 2 or > 45)
        {
            return false;
        }

        Span<char> chars = stackalloc char[45];
        for (int i = 0; i < text.Length; i++)
        {
            if (!IsHex(text[i]) && text[i] != (byte)':' && text[i] != (byte)'.')
            {
                return false;
            }

            chars[i] = (char)text[i];
        }

        // IPv6 text is rare on this path (IPv6 SIP); the parse allocates its IPAddress there only.
        if (!IPAddress.TryParse(chars[..text.Length], out var ip) || ip.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
        {
            return false;
        }

        address = InetAddress.From(ip);
        return true;
    }

    /// <summary>Writes an address (bracketed for IPv6 when <paramref name="bracket"/>) and, when <paramref name="withPort"/>, ":port".</summary>
    public static int Format(InetAddress address, byte family, ushort port, bool withPort, bool bracket, Span<byte> destination)
    {
        int written = 0;
        if (family == 4)
        {
            uint value = address.IPv4Value;
            for (int i = 3; i >= 0; i--)
            {
                Utf8Formatter.TryFormat((byte)(value >> (8 * i)), destination[written..], out int n);
                written += n;
                if (i > 0)
                {
                    destination[written++] = (byte)'.';
                }
            }
        }
        else
        {
            if (bracket)
            {
                destination[written++] = (byte)'[';
            }

            address.ToIPAddress(6).TryFormat(destination[written..], out int n);
            written += n;
            if (bracket)
            {
                destination[written++] = (byte)']';
            }
        }

        if (withPort)
        {
            destination[written++] = (byte)':';
            Utf8Formatter.TryFormat(port, destination[written..], out int n);
            written += n;
        }

        return written;
    }

    private static bool IsHex(byte b) => (b >= '0' && b <= '9') || ((b | 0x20) >= 'a' && (b | 0x20) <= 'f');

    private static bool IsHostChar(byte b) => (b >= '0' && b <= '9') || ((b | 0x20) >= 'a' && (b | 0x20) <= 'z') || b == '-';
}
