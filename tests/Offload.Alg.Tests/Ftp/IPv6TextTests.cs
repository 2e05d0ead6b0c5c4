using System.Net;
using System.Net.Sockets;
using Offload.Alg.Ftp;
using Xunit;
using static Offload.Alg.Tests.Ftp.FtpTestText;

namespace Offload.Alg.Tests.Ftp;

public class IPv6TextTests
{
    [Theory]
    [InlineData("::")]
    [InlineData("::1")]
    [InlineData("1::")]
    [InlineData("1::8")]
    [InlineData("2001:db8::1")]
    [InlineData("2001:DB8:0:0:8:800:200C:417A")]
    [InlineData("2001:0db8:0000:0000:0008:0800:200c:417a")]
    [InlineData("FF01::101")]
    [InlineData("1:2:3:4:5:6:7:8")]
    [InlineData("1:2:3:4:5:6:7::")]
    [InlineData("::2:3:4:5:6:7:8")]
    [InlineData("1:2:3::5:6:7:8")]
    [InlineData("0:0:0:0:0:0:13.1.68.3")]
    [InlineData("::13.1.68.3")]
    [InlineData("::FFFF:129.144.52.38")]
    [InlineData("1:2:3:4:5:6:1.2.3.4")]
    [InlineData("1::1.2.3.4")]
    [InlineData("fe80::5efe:10.0.0.1")]
    [InlineData("::255.255.255.255")]
    [InlineData("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")]
    [InlineData("0000:0000:0000:0000:0000:ffff:255.255.255.255")]
    public void Parses_RFC_4291_text_forms(string text)
    {
        var address = new byte[16];
        Assert.True(FtpParser.TryParseIPv6(Bytes(text), address));
        Assert.Equal(IPAddress.Parse(text).GetAddressBytes(), address);
    }

    [Theory]
    [InlineData("")]
    [InlineData(":")]
    [InlineData(":::")]
    [InlineData(":1::")]
    [InlineData("1:")]
    [InlineData("1::2:")]
    [InlineData("1::2::3")]
    [InlineData("::1::")]
    [InlineData("12345::")]
    [InlineData("1:2:3:4:5:6:7")]
    [InlineData("1:2:3:4:5:6:7:8:9")]
    [InlineData("1:2:3:4:5:6:7:8::")]
    [InlineData("::1:2:3:4:5:6:7:8")]
    [InlineData("1:2:3:4::5:6:7:8")]
    [InlineData("1:2:3:4:5:6:7:1.2.3.4")]
    [InlineData("1.2.3.4")]
    [InlineData("::256.1.1.1")]
    [InlineData("::1.2.3")]
    [InlineData("::1.2.3.4.5")]
    [InlineData("::1.2.3.4:5")]
    [InlineData("::1..3.4")]
    [InlineData("::01.2.3.4")]
    [InlineData("::1.2.3.00")]
    [InlineData("::1234.2.3.4")]
    [InlineData("::ab.2.3.4")]
    [InlineData("g::")]
    [InlineData("[::1]")]
    [InlineData("::1%eth0")]
    [InlineData("::1/64")]
    [InlineData(" ::1")]
    [InlineData("::1 ")]
    [InlineData("1:2:3:4:5:6:7:8:")]
    [InlineData("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555")]
    public void Refuses_what_is_not_one_address(string text)
    {
        Assert.False(FtpParser.TryParseIPv6(Bytes(text), new byte[16]));
    }

    [Theory]
    // RFC 5952 section 4: lowercase, no leading zeros, the longest zero run (the first of equals), never one group.
    [InlineData("2001:0db8:0000:0000:0000:0000:0002:0001", "2001:db8::2:1")]
    [InlineData("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1")]
    [InlineData("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1")]
    [InlineData("2001:0:0:1:0:0:0:1", "2001:0:0:1::1")]
    [InlineData("2001:DB8::AAAA:0:0", "2001:db8::aaaa:0:0")]
    [InlineData("0:0:0:0:0:0:0:0", "::")]
    [InlineData("0:0:0:0:0:0:0:1", "::1")]
    [InlineData("1:0:0:0:0:0:0:0", "1::")]
    [InlineData("0:1:0:1:0:1:0:1", "0:1:0:1:0:1:0:1")]
    // The kernel's %pI6c writes mapped and ISATAP addresses with a dotted tail, and nothing else.
    [InlineData("::ffff:192.0.2.1", "::ffff:192.0.2.1")]
    [InlineData("::ffff:0.0.0.0", "::ffff:0.0.0.0")]
    [InlineData("fe80::5efe:c000:201", "fe80::5efe:192.0.2.1")]
    [InlineData("fe80::200:5efe:c000:201", "fe80::200:5efe:192.0.2.1")]
    [InlineData("1:2:3:4:0:5efe:0:0", "1:2:3:4:0:5efe:0.0.0.0")]
    [InlineData("::192.0.2.1", "::c000:201")]
    [InlineData("::ffff:0:192.0.2.1", "::ffff:0:c000:201")]
    [InlineData("64:ff9b::192.0.2.1", "64:ff9b::c000:201")]
    [InlineData("fe80::100:5efe:1:1", "fe80::100:5efe:1:1")]
    public void Formats_in_canonical_form(string input, string expected)
    {
        Assert.Equal(expected, FormatIPv6(IPAddress.Parse(input).GetAddressBytes()));
    }

    [Theory]
    [InlineData("::", "0000:0000:0000:0000:0000:0000:0000:0000")]
    [InlineData("2001:DB8::1", "2001:0db8:0000:0000:0000:0000:0000:0001")]
    [InlineData("::ffff:192.0.2.1", "0000:0000:0000:0000:0000:ffff:c000:0201")]
    public void Formats_in_the_kernels_full_form(string input, string expected)
    {
        Assert.Equal(expected, FormatIPv6(IPAddress.Parse(input).GetAddressBytes(), IPv6TextForm.Full));
    }

    [Fact]
    public void Matches_IPAddress_ToString_on_random_addresses()
    {
        var random = new Random(5952);
        var address = new byte[16];
        var parsed = new byte[16];
        int compared = 0;
        for (int i = 0; i < 20000; i++)
        {
            random.NextBytes(address);
            int zeroChance = i % 4; // 0: no forced zeros; up to 3 in 4 groups forced to zero
            for (int g = 0; g < 8; g++)
            {
                if (random.Next(4) < zeroChance)
                {
                    address[2 * g] = 0;
                    address[2 * g + 1] = 0;
                }
            }

            string ours = FormatIPv6(address);
            string dotnet = new IPAddress(address).ToString();
            Assert.Equal(ours.ToLowerInvariant(), ours);

            // .NET also writes IPv4-compatible (::a.b.c.d) addresses with a dotted tail and ISATAP only
            // with :0:5efe:, where the kernel's %pI6c does not; elsewhere the texts must be the same.
            if (!ours.Contains('.') && !dotnet.Contains('.'))
            {
                Assert.Equal(dotnet, ours);
                compared++;
            }

            Assert.Equal(address, IPAddress.Parse(ours).GetAddressBytes());
            Assert.True(FtpParser.TryParseIPv6(Bytes(ours), parsed), ours);
            Assert.Equal(address, parsed);
            Assert.True(FtpParser.TryParseIPv6(Bytes(dotnet), parsed), dotnet);
            Assert.Equal(address, parsed);

            string full = FormatIPv6(address, IPv6TextForm.Full);
            Assert.Equal(39, full.Length);
            Assert.True(FtpParser.TryParseIPv6(Bytes(full), parsed), full);
            Assert.Equal(address, parsed);
        }

        Assert.True(compared > 15000, $"only {compared} addresses compared");
    }

    [Fact]
    public void Too_small_a_destination_gives_minus_one()
    {
        byte[] address = IPAddress.Parse("2001:db8:1::2").GetAddressBytes();
        int needed = "2001:db8:1::2".Length;
        for (int size = 0; size < needed; size++)
        {
            Assert.Equal(-1, FtpParser.FormatIPv6(address, new byte[size]));
        }

        Assert.Equal(needed, FtpParser.FormatIPv6(address, new byte[needed]));
        Assert.Throws<ArgumentException>(() => FtpParser.FormatIPv6(new byte[15], new byte[64]));
        Assert.Throws<ArgumentException>(() => FtpParser.TryParseIPv6(Bytes("::1"), new byte[15]));
    }

    [Fact]
    public void The_longest_texts_fit_the_advertised_maximum()
    {
        Assert.Equal(FtpParser.MaxIPv6TextLength, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".Length);
        byte[] isatap = IPAddress.Parse("ffff:ffff:ffff:ffff:200:5efe:255.255.255.255").GetAddressBytes();
        Assert.True(FormatIPv6(isatap).Length <= FtpParser.MaxIPv6TextLength);
        Assert.Equal(AddressFamily.InterNetworkV6, new IPAddress(isatap).AddressFamily);
    }
}
