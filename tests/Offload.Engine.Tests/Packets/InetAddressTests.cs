using System.Net;
using FsCheck;
using FsCheck.Fluent;
using Offload.Engine.Packets;
using Xunit;

namespace Offload.Engine.Tests.Packets;

public class InetAddressTests
{
    private static InetAddress V4(string s) => InetAddress.From(IPAddress.Parse(s));

    private static InetAddress V6(string s) => InetAddress.From(IPAddress.Parse(s));

    [Theory]
    [InlineData("0.0.0.0")]
    [InlineData("10.1.2.3")]
    [InlineData("255.255.255.255")]
    [InlineData("192.0.2.128")]
    public void Ipv4_round_trips_through_bytes_values_and_text(string text)
    {
        var address = V4(text);
        Assert.Equal(text, address.ToString(4));
        Assert.Equal(text, address.ToIPAddress(4).ToString());
        Assert.Equal(0UL, address.Low);
        Assert.Equal(0u, (uint)address.High); // the last 12 bytes are zero, as in nf_inet_addr

        Span<byte> bytes = stackalloc byte[4];
        address.Write(4, bytes);
        Assert.Equal(IPAddress.Parse(text).GetAddressBytes(), bytes.ToArray());
        Assert.Equal(address, InetAddress.FromIPv4(bytes));
        Assert.Equal(address, InetAddress.Read(4, bytes));
        Assert.Equal(address, InetAddress.FromIPv4(address.IPv4Value));
        Assert.Equal(Wire.V4Value(text), address.IPv4Value);
    }

    [Theory]
    [InlineData("::")]
    [InlineData("::1")]
    [InlineData("2001:db8::7")]
    [InlineData("fe80::1:2:3:4")]
    [InlineData("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")]
    [InlineData("::ffff:192.0.2.1")]
    public void Ipv6_round_trips_through_bytes_and_text(string text)
    {
        var address = V6(text);
        Assert.Equal(IPAddress.Parse(text).ToString(), address.ToString(6));
        Span<byte> bytes = stackalloc byte[16];
        address.Write(6, bytes);
        Assert.Equal(IPAddress.Parse(text).GetAddressBytes(), bytes.ToArray());
        Assert.Equal(address, InetAddress.FromIPv6(bytes));
        Assert.Equal(address, InetAddress.Read(6, bytes));
    }

    [Fact]
    public void Write_touches_only_the_family_length()
    {
        var buffer = new byte[20];
        buffer.AsSpan().Fill(0xCC);
        V4("1.2.3.4").Write(4, buffer);
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, buffer[..4]);
        Assert.All(buffer[4..], b => Assert.Equal(0xCC, b));
        Assert.Equal(4, InetAddress.Length(4));
        Assert.Equal(16, InetAddress.Length(6));
    }

    [Fact]
    public void Ipv4_prefixes_at_the_edges()
    {
        var a = V4("10.20.30.40");
        Assert.True(a.IsInPrefix(4, V4("192.168.0.0"), 0));
        Assert.True(a.IsInPrefix(4, V4("10.0.0.0"), 8));
        Assert.False(a.IsInPrefix(4, V4("11.0.0.0"), 8));
        Assert.True(a.IsInPrefix(4, V4("10.20.30.40"), 32));
        Assert.False(a.IsInPrefix(4, V4("10.20.30.41"), 32));
        Assert.True(a.IsInPrefix(4, V4("10.20.30.41"), 31));
        Assert.False(a.IsInPrefix(4, V4("10.20.30.42"), 31));

        // Longer prefixes than 32 mean /32 for IPv4.
        Assert.True(a.IsInPrefix(4, V4("10.20.30.40"), 64));
        Assert.True(a.IsInPrefix(4, V4("10.20.30.40"), 128));
        Assert.False(a.IsInPrefix(4, V4("10.20.30.41"), 128));
        Assert.True(a.IsInPrefix(4, V4("0.0.0.0"), -1));
    }

    [Fact]
    public void Ipv6_prefixes_at_the_edges()
    {
        var a = V6("2001:db8:1:2:8000::1");
        Assert.True(a.IsInPrefix(6, V6("::"), 0));
        Assert.True(a.IsInPrefix(6, V6("2001:db8::"), 32));
        Assert.False(a.IsInPrefix(6, V6("2001:db9::"), 32));
        Assert.True(a.IsInPrefix(6, V6("2001:db8:1:2::"), 64));
        Assert.False(a.IsInPrefix(6, V6("2001:db8:1:3::"), 64));
        Assert.True(a.IsInPrefix(6, V6("2001:db8:1:2:8000::"), 65));
        Assert.False(a.IsInPrefix(6, V6("2001:db8:1:2::"), 65));
        Assert.True(a.IsInPrefix(6, V6("2001:db8:1:2::"), 64)); // bit 65 may differ at /64
        Assert.True(a.IsInPrefix(6, V6("2001:db8:1:2:8000::1"), 128));
        Assert.False(a.IsInPrefix(6, V6("2001:db8:1:2:8000::0"), 128));
        Assert.True(a.IsInPrefix(6, V6("2001:db8:1:2:8000::0"), 127));
        Assert.False(a.IsInPrefix(6, V6("2001:db8:1:2:8000::2"), 127));
        // The high half must match for every prefix past 64.
        Assert.False(a.IsInPrefix(6, V6("2001:db8:1:3:8000::1"), 100));
    }

    [Fact]
    public void Prefix_match_agrees_with_a_bitwise_reference()
    {
        var gen =
            from a in Gen.ArrayOf(Gen.Choose(0, 255).Select(i => (byte)i), 16)
            from flips in Gen.Choose(0, 127)
            from prefix in Gen.Choose(0, 128)
            select (a, flips, prefix);
        Check.One(Deterministic.Runs(3000, 64), Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var b = (byte[])t.a.Clone();
            b[t.flips / 8] ^= (byte)(0x80 >> (t.flips % 8));
            var x = InetAddress.FromIPv6(t.a);
            var y = InetAddress.FromIPv6(b);
            // The two differ in bit `flips` only: inside a prefix longer than that bit's index they differ.
            Assert.Equal(t.prefix <= t.flips, x.IsInPrefix(6, y, t.prefix));

            var x4 = InetAddress.FromIPv4(t.a);
            var y4 = InetAddress.FromIPv4(b);
            bool differsInV4 = t.flips < 32;
            Assert.Equal(!differsInV4 || t.prefix <= t.flips, x4.IsInPrefix(4, y4, t.prefix));
        }));
    }

    [Fact]
    public void Add_and_distance()
    {
        Assert.Equal(V4("10.0.1.4"), V4("10.0.0.250").Add(4, 10));
        Assert.Equal(V4("0.0.0.1"), V4("255.255.255.255").Add(4, 2)); // IPv4 wraps within 32 bits
        Assert.Equal(V6("2001:db8:0:1::"), V6("2001:db8::ffff:ffff:ffff:ffff").Add(6, 1)); // carry into the high half
        Assert.Equal(V6("::5"), V6("::5").Add(6, 0));

        Assert.Equal(0UL, V4("10.0.0.1").DistanceTo(4, V4("10.0.0.1")));
        Assert.Equal(2UL, V6("::ffff:ffff:ffff:ffff").DistanceTo(6, V6("0:0:0:1::1")));
        Assert.Equal(ulong.MaxValue, V6("::").DistanceTo(6, V6("0:0:0:1::")));
        Assert.Equal(ulong.MaxValue, V6("::").DistanceTo(6, V6("1::")));
        Assert.Equal(ulong.MaxValue, V6("::5").DistanceTo(6, V6("0:0:0:1::5")));
    }

    [Fact]
    public void Ipv4_distance_counts_addresses()
    {
        Assert.Equal(255UL, V4("10.0.0.1").DistanceTo(4, V4("10.0.1.0")));
        Assert.Equal(10UL, V4("203.0.113.10").DistanceTo(4, V4("203.0.113.20")));
        Assert.Equal(uint.MaxValue, V4("0.0.0.0").DistanceTo(4, V4("255.255.255.255")));
    }

    [Fact]
    public void Add_then_distance_round_trips()
    {
        var gen =
            from hi in Gen.Choose(0, int.MaxValue)
            from lo in Gen.Choose(int.MinValue, int.MaxValue)
            from off in Gen.Choose(0, int.MaxValue)
            from big in Gen.Elements(0UL, 1UL << 40, ulong.MaxValue / 2)
            select (High: (ulong)hi << 20, Low: (ulong)(uint)lo * 0x9E3779B1UL, Offset: (ulong)off + big);
        Check.One(Deterministic.Runs(2000, 128), Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var start = new InetAddress(t.High, t.Low);
            var end = start.Add(6, t.Offset);
            Assert.Equal(t.Offset, start.DistanceTo(6, end));
            Assert.True(InetAddress.Compare(start, end) <= 0);
            Assert.Equal(t.Offset == 0, start == end);
        }));
    }

    [Fact]
    public void Compare_orders_like_the_numbers_in_network_order()
    {
        string[] ordered = ["::", "::1", "::ffff:ffff:ffff:ffff", "0:0:0:1::", "1::", "2001:db8::", "8000::", "ffff::"];
        for (int i = 0; i < ordered.Length; i++)
        {
            for (int j = 0; j < ordered.Length; j++)
            {
                Assert.Equal(Math.Sign(i.CompareTo(j)), Math.Sign(InetAddress.Compare(V6(ordered[i]), V6(ordered[j]))));
            }
        }

        Assert.True(InetAddress.Compare(V4("9.255.255.255"), V4("10.0.0.0")) < 0);
        Assert.True(InetAddress.Compare(V4("128.0.0.0"), V4("127.255.255.255")) > 0); // unsigned, not signed
    }

    [Fact]
    public void Equality_and_hash()
    {
        Assert.True(V4("1.2.3.4") == InetAddress.FromIPv4(0x01020304));
        Assert.True(V4("1.2.3.4") != V4("1.2.3.5"));
        Assert.True(V4("1.2.3.4").Equals((object)V4("1.2.3.4")));
        Assert.False(V4("1.2.3.4").Equals("1.2.3.4"));
        Assert.Equal(V6("2001:db8::1").GetHashCode(), V6("2001:db8::1").GetHashCode());
        Assert.Equal(default, InetAddress.None);
        Assert.Equal("1.2.3.4", V4("1.2.3.4").ToString());
        Assert.Equal("2001:db8::1", V6("2001:db8::1").ToString());
    }
}
