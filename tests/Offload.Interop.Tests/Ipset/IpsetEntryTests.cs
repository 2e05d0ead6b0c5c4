using System.Net;
using Offload.Interop.Ipset;
using Xunit;

namespace Offload.Interop.Tests.Ipset;

public sealed class IpsetEntryTests
{
    [Fact]
    public void An_entry_keeps_what_it_was_given_and_prints_as_the_tool_does()
    {
        var e = new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, Ip("192.0.2.1"), 5000, Ip("192.0.2.2"));
        Assert.Equal(IpsetFamily.IPv4, e.Family);
        Assert.Equal(IpsetEntry.Udp, e.Protocol);
        Assert.Equal(5000, e.Port);
        Assert.True(e.HasAddress2);
        Assert.Equal(4, e.AddressLength);
        Span<byte> b = stackalloc byte[4];
        e.Address2.CopyTo(b);
        Assert.Equal(Ip("192.0.2.2"), b.ToArray());
        Assert.Equal("192.0.2.1,udp:5000,192.0.2.2", e.ToString());

        var v6 = new IpsetEntry(IpsetFamily.IPv6, IpsetEntry.Tcp, Ip("2001:db8::1"), 21);
        Assert.False(v6.HasAddress2);
        Assert.Equal(16, v6.AddressLength);
        Assert.Equal("2001:db8::1,tcp:21", v6.ToString());
    }

    [Fact]
    public void Entries_from_bytes_and_from_held_addresses_are_equal()
    {
        IpsetAddress a = IpsetAddress.FromBytes(Ip("2001:db8::1"));
        IpsetAddress b = IpsetAddress.FromBytes(Ip("2001:db8::2"));
        var fromBytes = new IpsetEntry(IpsetFamily.IPv6, IpsetEntry.Udp, Ip("2001:db8::1"), 53, Ip("2001:db8::2"));
        var fromHeld = new IpsetEntry(IpsetFamily.IPv6, IpsetEntry.Udp, a, 53, b);
        Assert.Equal(fromBytes, fromHeld);
        Assert.True(fromBytes == fromHeld);
        Assert.Equal(fromBytes.GetHashCode(), fromHeld.GetHashCode());
        Assert.NotEqual(fromBytes, new IpsetEntry(IpsetFamily.IPv6, IpsetEntry.Udp, a, 53, a));
        Assert.NotEqual(fromBytes, new IpsetEntry(IpsetFamily.IPv6, IpsetEntry.Udp, a, 53));
        Assert.NotEqual(fromBytes, new IpsetEntry(IpsetFamily.IPv6, IpsetEntry.Tcp, a, 53, b));
        Assert.NotEqual(fromBytes, new IpsetEntry(IpsetFamily.IPv6, IpsetEntry.Udp, a, 54, b));
    }

    [Fact]
    public void Ipv4_and_ipv6_addresses_round_trip()
    {
        byte[] v4 = Ip("198.51.100.200");
        byte[] v6 = Ip("fe80::1:2:3:4");
        Span<byte> out16 = stackalloc byte[16];
        IpsetAddress.FromBytes(v6).CopyTo(out16);
        Assert.Equal(v6, out16.ToArray());
        Span<byte> out4 = stackalloc byte[4];
        IpsetAddress.FromBytes(v4).CopyTo(out4);
        Assert.Equal(v4, out4.ToArray());
        Assert.Equal("198.51.100.200", IpsetAddress.FromBytes(v4).ToString(IpsetFamily.IPv4));
        Assert.Equal("fe80::1:2:3:4", IpsetAddress.FromBytes(v6).ToString(IpsetFamily.IPv6));
    }

    [Fact]
    public void Bad_entries_are_refused_where_they_are_made()
    {
        byte[] v4 = Ip("192.0.2.1");
        byte[] v6 = Ip("2001:db8::1");
        Assert.Throws<ArgumentException>(() => new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, v6, 1));
        Assert.Throws<ArgumentException>(() => new IpsetEntry(IpsetFamily.IPv6, IpsetEntry.Udp, v4, 1));
        Assert.Throws<ArgumentException>(() => new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, v4, 1, v6));
        Assert.Throws<ArgumentException>(() => new IpsetEntry(IpsetFamily.IPv4, 0, v4, 1));

        // .NET's AddressFamily.InterNetworkV6 is 23, not Linux's 10: a family must be one of ours.
        Assert.Throws<ArgumentException>(() => new IpsetEntry(23, IpsetEntry.Udp, v6, 1));
        Assert.Throws<ArgumentException>(() => IpsetAddress.FromBytes(new byte[5]));
        Assert.Throws<ArgumentException>(() => new IpsetEntry(0, IpsetEntry.Udp, IpsetAddress.FromBytes(v4), 1));
    }

    private static byte[] Ip(string text) => IPAddress.Parse(text).GetAddressBytes();
}
