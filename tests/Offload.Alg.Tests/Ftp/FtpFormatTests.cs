using Offload.Alg.Ftp;
using Xunit;
using static Offload.Alg.Tests.Ftp.FtpTestText;

namespace Offload.Alg.Tests.Ftp;

public class FtpFormatTests
{
    [Fact]
    public void Writes_the_kernel_formats()
    {
        Assert.Equal("192,0,2,2,195,80", Format(FtpCommandKind.Port, V4("192.0.2.2", 50000)));
        Assert.Equal("198,51,100,2,117,48", Format(FtpCommandKind.Pasv, V4("198.51.100.2", 30000)));
        Assert.Equal("0,0,0,0,0,0", Format(FtpCommandKind.Port, V4("0.0.0.0", 0)));
        Assert.Equal("255,255,255,255,255,255", Format(FtpCommandKind.Pasv, V4("255.255.255.255", 65535)));
        Assert.Equal("|1|192.0.2.2|50000|", Format(FtpCommandKind.Eprt, V4("192.0.2.2", 50000)));
        Assert.Equal("|2|2001:db8:1::2|50000|", Format(FtpCommandKind.Eprt, V6("2001:db8:1::2", 50000)));
        Assert.Equal(
            "|2|2001:0db8:0001:0000:0000:0000:0000:0002|50000|",
            Format(FtpCommandKind.Eprt, V6("2001:db8:1::2", 50000), IPv6TextForm.Full));
        Assert.Equal("|||30000|", Format(FtpCommandKind.Epsv, FtpAddressPort.FromPort(30000)));
        // EPSV writes the port alone, whatever address the value carries.
        Assert.Equal("|||1|", Format(FtpCommandKind.Epsv, V6("2001:db8::1", 1)));
    }

    public static TheoryData<FtpCommandKind, string, ushort, IPv6TextForm> Values => new()
    {
        { FtpCommandKind.Port, "192.0.2.2", 50000, IPv6TextForm.Compressed },
        { FtpCommandKind.Pasv, "255.255.255.255", 65535, IPv6TextForm.Compressed },
        { FtpCommandKind.Eprt, "192.0.2.2", 50000, IPv6TextForm.Compressed },
        { FtpCommandKind.Eprt, "ffff:ffff:ffff:ffff:200:5efe:255.255.255.255", 65535, IPv6TextForm.Compressed },
        { FtpCommandKind.Eprt, "2001:db8:1::2", 65535, IPv6TextForm.Full },
        { FtpCommandKind.Epsv, "0.0.0.0", 65535, IPv6TextForm.Compressed },
    };

    [Theory]
    [MemberData(nameof(Values))]
    public void A_destination_too_small_by_any_amount_gives_minus_one(FtpCommandKind kind, string address, ushort port, IPv6TextForm form)
    {
        FtpAddressPort value = address.Contains(':') ? V6(address, port) : V4(address, port);
        int needed = Format(kind, value, form).Length;
        Assert.True(needed <= FtpParser.MaxReplacementLength);
        for (int size = 0; size < needed; size++)
        {
            Assert.Equal(-1, FtpParser.FormatReplacement(kind, value, new byte[size], form));
        }

        Assert.Equal(needed, FtpParser.FormatReplacement(kind, value, new byte[needed], form));
    }

    [Fact]
    public void A_family_that_does_not_fit_the_kind_is_refused()
    {
        var buffer = new byte[FtpParser.MaxReplacementLength];
        Assert.Throws<ArgumentException>(() => FtpParser.FormatReplacement(FtpCommandKind.Port, V6("::1", 1), buffer));
        Assert.Throws<ArgumentException>(() => FtpParser.FormatReplacement(FtpCommandKind.Pasv, FtpAddressPort.FromPort(1), buffer));
        Assert.Throws<ArgumentException>(() => FtpParser.FormatReplacement(FtpCommandKind.Eprt, FtpAddressPort.FromPort(1), buffer));
        Assert.Throws<ArgumentException>(() => FtpParser.FormatReplacement((FtpCommandKind)9, V4("1.2.3.4", 1), buffer));
    }

    [Fact]
    public void Format_then_scan_gives_the_value_back()
    {
        var random = new Random(959);
        var address = new byte[16];
        for (int i = 0; i < 2000; i++)
        {
            random.NextBytes(address);
            if (i % 2 == 0)
            {
                // Zero groups, so that compression and the dotted forms get exercised.
                for (int g = 0; g < 8; g++)
                {
                    if (random.Next(3) == 0)
                    {
                        address[2 * g] = 0;
                        address[2 * g + 1] = 0;
                    }
                }
            }

            ushort port = (ushort)random.Next(1, 65536);
            FtpAddressPort v4 = FtpAddressPort.FromIPv4(address.AsSpan(0, 4), port);
            FtpAddressPort v6 = FtpAddressPort.FromIPv6(address, port);

            RoundTrip(FtpCommandKind.Port, v4, "PORT ", "\r\n", false);
            RoundTrip(FtpCommandKind.Pasv, v4, "227 Entering Passive Mode (", ").\r\n", true);
            RoundTrip(FtpCommandKind.Eprt, v4, "EPRT ", "\r\n", false);
            RoundTrip(FtpCommandKind.Eprt, v6, "EPRT ", "\r\n", false);
            RoundTrip(FtpCommandKind.Eprt, v6, "EPRT ", "\r\n", false, IPv6TextForm.Full);
            RoundTrip(FtpCommandKind.Epsv, FtpAddressPort.FromPort(port), "229 Entering Extended Passive Mode (", ")\r\n", true);
        }
    }

    private static void RoundTrip(FtpCommandKind kind, FtpAddressPort value, string before, string after, bool isReply,
        IPv6TextForm form = IPv6TextForm.Compressed)
    {
        string text = Format(kind, value, form);
        string line = before + text + after;
        Assert.Equal(FtpScanStatus.Found, Scan(line, isReply, out FtpMatch match));
        Assert.Equal(kind, match.Kind);
        Assert.Equal(value, match.Value);
        Assert.Equal(before.Length, match.ReplaceOffset);
        Assert.Equal(text.Length, match.ReplaceLength);
        Assert.Equal(line.Length, match.LineLength);
    }

    [Fact]
    public void A_rewrite_in_place_yields_a_line_that_scans_to_the_new_value()
    {
        string line = "227 Entering Passive Mode (10,0,0,2,117,48).\r\n";
        Assert.Equal(FtpScanStatus.Found, Scan(line, true, out FtpMatch match));
        string rewritten = line[..match.ReplaceOffset]
            + Format(FtpCommandKind.Pasv, V4("198.51.100.200", 40000))
            + line[(match.ReplaceOffset + match.ReplaceLength)..];
        Assert.Equal("227 Entering Passive Mode (198,51,100,200,156,64).\r\n", rewritten);
        Assert.Equal(FtpScanStatus.Found, Scan(rewritten, true, out FtpMatch again));
        Assert.Equal(V4("198.51.100.200", 40000), again.Value);
    }

    [Fact]
    public void FtpAddressPort_equality_and_accessors()
    {
        FtpAddressPort a = FtpAddressPort.FromIPv4(0xC0000202, 50000);
        Assert.Equal(V4("192.0.2.2", 50000), a);
        Assert.True(a == V4("192.0.2.2", 50000));
        Assert.True(a != V4("192.0.2.2", 50001));
        Assert.NotEqual(FtpAddressPort.FromPort(1), FtpAddressPort.FromIPv4(0, 1));
        Assert.NotEqual(V6("::", 1), FtpAddressPort.FromIPv4(0, 1));
        Assert.Equal(0xC000020200000000UL, a.AddressHigh);
        Assert.Equal(0UL, a.AddressLow);
        Assert.Equal(V6("2001:db8::1", 7), FtpAddressPort.FromIPv6(0x20010DB800000000UL, 1UL, 7));
        Assert.Throws<ArgumentException>(() => a.CopyAddressTo(new byte[15]));
    }

    [Fact]
    public void Scanning_and_formatting_allocate_nothing()
    {
        byte[][] lines = [.. new[]
        {
            "PORT 192,0,2,2,195,80\r\n",
            "EPRT |2|2001:db8:1::2|50000|\r\n",
            "227 Entering Passive Mode (198,51,100,2,117,48).\r\n",
            "229 Entering Extended Passive Mode (|||30000|)\r\n",
            "EPRT |2|2001:db8:1::2|5000",
            "PORT 999,0,2,2,195,80\r\n",
        }.Select(Bytes)];
        var buffer = new byte[FtpParser.MaxReplacementLength];
        var address = new byte[16];
        // Warm up past tiering (type initialisers, and the JIT's first calls of each tier, may allocate on this thread):
        // one warm-up call was once not enough in a full parallel test run.
        int sum = 0;
        for (int i = 0; i < 200; i++)
        {
            sum += Exercise(lines, buffer, address);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            sum += Exercise(lines, buffer, address);
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.NotEqual(0, sum);
    }

    private static int Exercise(byte[][] lines, byte[] buffer, byte[] address)
    {
        int sum = 0;
        foreach (byte[] line in lines)
        {
            for (int direction = 0; direction < 2; direction++)
            {
                if (FtpParser.Scan(line, direction == 1, out FtpMatch match) == FtpScanStatus.Found)
                {
                    sum += FtpParser.FormatReplacement(match.Kind, match.Value, buffer);
                    sum += FtpParser.FormatReplacement(match.Kind, match.Value, buffer, IPv6TextForm.Full);
                    match.Value.CopyAddressTo(address);
                    sum += FtpParser.FormatIPv6(address, buffer);
                    sum += FtpParser.TryParseIPv6(buffer.AsSpan(0, 13), address) ? 1 : 0;
                }
            }

            sum += FtpParser.NextLineStart(line, 0);
        }

        return sum;
    }
}
