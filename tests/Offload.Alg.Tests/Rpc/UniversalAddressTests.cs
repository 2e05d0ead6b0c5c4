using System.Text;
using Offload.Alg.Rpc;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;

namespace Offload.Alg.Tests.Rpc;

/// <summary>RFC 5665's universal addresses, as rpcbind writes them for IPv4 and IPv6, read and written back.</summary>
public class UniversalAddressTests
{
    [Theory]
    [InlineData("192.0.2.80.8.1", "192.0.2.80", 4, 2049)]
    [InlineData("10.0.0.1.0.111", "10.0.0.1", 4, 111)]
    [InlineData("255.255.255.255.255.255", "255.255.255.255", 4, 65535)]
    [InlineData("2001:db8:5::80.8.1", "2001:db8:5::80", 6, 2049)]
    [InlineData("::1.0.111", "::1", 6, 111)]
    [InlineData("::.0.111", "::", 6, 111)]
    [InlineData("fe80::1:2:3:4.3.232", "fe80::1:2:3:4", 6, 1000)]
    [InlineData("::ffff:192.0.2.1.4.0", "::ffff:192.0.2.1", 6, 1024)]
    [InlineData("2001:0db8:0000:0000:0000:0000:0000:0001.0.1", "2001:db8::1", 6, 1)]
    public void Ipv4_and_ipv6_forms_are_read(string text, string address, byte family, ushort port)
    {
        Assert.True(UniversalAddress.TryParse(Encoding.ASCII.GetBytes(text), out var parsed, out byte parsedFamily, out ushort parsedPort));
        Assert.Equal(A(address), parsed);
        Assert.Equal(family, parsedFamily);
        Assert.Equal(port, parsedPort);
    }

    [Theory]
    [InlineData("")]
    [InlineData("192.0.2.80")]
    [InlineData("192.0.2.80.8")]
    [InlineData("192.0.2.80.256.1")]
    [InlineData("192.0.2.80.8.1000")]
    [InlineData("192.0.2.80.8.")]
    [InlineData("192.0.2.80..1")]
    [InlineData("192.0.2.8.1")]
    [InlineData("192.0.2.300.8.1")]
    [InlineData("server.example.8.1")]
    [InlineData("192.0.2.80.+8.1")]
    [InlineData("fe80::1%eth0.8.1")]
    [InlineData("[2001:db8::1].8.1")]
    [InlineData("2001:db8::g.8.1")]
    [InlineData("1:2:3:4:5:6:7:8:9.8.1")]
    [InlineData(".8.1")]
    public void What_is_no_universal_address_is_refused(string text) =>
        Assert.False(UniversalAddress.TryParse(Encoding.ASCII.GetBytes(text), out _, out _, out _));

    [Theory]
    [InlineData("203.0.113.1", 4, 61000, "203.0.113.1.238.72")]
    [InlineData("2001:db8:ff::1", 6, 2049, "2001:db8:ff::1.8.1")]
    [InlineData("::ffff:1.2.3.4", 6, 1, "::ffff:1.2.3.4.0.1")]
    public void Written_as_rpcbind_writes_it_and_read_back(string address, byte family, ushort port, string expected)
    {
        Span<byte> text = stackalloc byte[UniversalAddress.MaxLength];
        int length = UniversalAddress.Format(A(address), family, port, text);
        Assert.Equal(expected, Encoding.ASCII.GetString(text[..length]));
        Assert.True(UniversalAddress.TryParse(text[..length], out var back, out byte backFamily, out ushort backPort));
        Assert.Equal((A(address), family, port), (back, backFamily, backPort));
    }

    [Fact]
    public void The_longest_ipv6_form_fits()
    {
        Span<byte> text = stackalloc byte[UniversalAddress.MaxLength];
        int length = UniversalAddress.Format(A("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"), 6, 65535, text);
        Assert.True(length <= UniversalAddress.MaxLength);
        Assert.True(length <= RpcParser.MaxUniversalAddress);
    }
}
