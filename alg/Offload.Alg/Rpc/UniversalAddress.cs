using System.Buffers.Text;
using Offload.Alg.Sip;

namespace Offload.Alg.Rpc;

/// <summary>
/// The universal address of rpcbind (RFC 5665 section 5.2.3): an IPv4 address as "h1.h2.h3.h4.p1.p2", an IPv6
/// address in any of its text forms (compressed, with an IPv4 tail) followed by ".p1.p2", where p1 and p2 are the
/// port's high and low bytes in decimal.
/// </summary>
internal static class UniversalAddress
{
    /// <summary>The longest text <see cref="Format"/> writes: an IPv6 address and ".255.255".</summary>
    public const int MaxLength = 45 + 8;

    /// <summary>Reads a universal address; false when it is not one (a host name, a port byte above 255, anything else).</summary>
    public static bool TryParse(ReadOnlySpan<byte> text, out InetAddress address, out byte family, out ushort port)
    {
        address = default;
        family = 0;
        port = 0;
        if (text.Length > RpcParser.MaxUniversalAddress)
        {
            return false;
        }

        int low = text.LastIndexOf((byte)'.');
        if (low < 1)
        {
            return false;
        }

        int high = text[..low].LastIndexOf((byte)'.');
        if (high < 1
            || !TryReadPortByte(text[(high + 1)..low], out byte p1)
            || !TryReadPortByte(text[(low + 1)..], out byte p2))
        {
            return false;
        }

        var host = text[..high];
        if (host.Contains((byte)':'))
        {
            if (!SipAddressText.TryReadIPv6(host, out address))
            {
                return false;
            }

            family = 6;
        }
        else
        {
            if (!SipAddressText.TryReadIPv4(host, out address, out int used) || used != host.Length)
            {
                return false;
            }

            family = 4;
        }

        port = (ushort)((p1 << 8) | p2);
        return true;
    }

    /// <summary>Writes the universal address of an address and port; returns the length written (at most <see cref="MaxLength"/>).</summary>
    public static int Format(InetAddress address, byte family, ushort port, Span<byte> destination)
    {
        int written = SipAddressText.Format(address, family, 0, withPort: false, bracket: false, destination);
        destination[written++] = (byte)'.';
        Utf8Formatter.TryFormat((byte)(port >> 8), destination[written..], out int n);
        written += n;
        destination[written++] = (byte)'.';
        Utf8Formatter.TryFormat((byte)port, destination[written..], out n);
        return written + n;
    }

    /// <summary>One to three decimal digits, at most 255 (no sign, no space).</summary>
    private static bool TryReadPortByte(ReadOnlySpan<byte> digits, out byte value)
    {
        value = 0;
        if (digits.Length is < 1 or > 3)
        {
            return false;
        }

        int sum = 0;
        foreach (byte b in digits)
        {
            if (b is < (byte)'0' or > (byte)'9')
            {
                return false;
            }

            sum = (sum * 10) + (b - '0');
        }

        if (sum > 255)
        {
            return false;
        }

        value = (byte)sum;
        return true;
    }
}
