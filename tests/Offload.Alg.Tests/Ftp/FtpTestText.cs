using System.Text;
using Offload.Alg.Ftp;

namespace Offload.Alg.Tests.Ftp;

internal static class FtpTestText
{
    public static byte[] Bytes(string text) => Encoding.Latin1.GetBytes(text);

    public static string Text(ReadOnlySpan<byte> bytes) => Encoding.Latin1.GetString(bytes);

    public static FtpScanStatus Scan(string line, bool isReply, out FtpMatch match) =>
        FtpParser.Scan(Bytes(line), isReply, out match);

    public static string Replaced(string line, in FtpMatch match) =>
        line.Substring(match.ReplaceOffset, match.ReplaceLength);

    public static string Format(FtpCommandKind kind, FtpAddressPort value, IPv6TextForm form = IPv6TextForm.Compressed)
    {
        Span<byte> buffer = stackalloc byte[FtpParser.MaxReplacementLength];
        int written = FtpParser.FormatReplacement(kind, value, buffer, form);
        if (written < 0)
        {
            throw new InvalidOperationException("MaxReplacementLength was not enough.");
        }

        return Text(buffer.Slice(0, written));
    }

    public static string FormatIPv6(byte[] address, IPv6TextForm form = IPv6TextForm.Compressed)
    {
        Span<byte> buffer = stackalloc byte[FtpParser.MaxIPv6TextLength];
        int written = FtpParser.FormatIPv6(address, buffer, form);
        if (written < 0)
        {
            throw new InvalidOperationException("MaxIPv6TextLength was not enough.");
        }

        return Text(buffer.Slice(0, written));
    }

    public static FtpAddressPort V4(string address, ushort port) =>
        FtpAddressPort.FromIPv4(System.Net.IPAddress.Parse(address).GetAddressBytes(), port);

    public static FtpAddressPort V6(string address, ushort port) =>
        FtpAddressPort.FromIPv6(System.Net.IPAddress.Parse(address).GetAddressBytes(), port);
}
