using System.Net;
using Offload.Engine.Conntrack;
using Offload.Engine.Packets;
using Offload.Engine.Tests.Packets;
using Xunit;

namespace Offload.Engine.Tests.Conntrack;

public class ConnTupleTests
{
    private static InetAddress A(string s) => InetAddress.From(IPAddress.Parse(s));

    [Fact]
    public void Tcp_and_udp_tuples_invert_by_swapping_both_ends()
    {
        var t = new ConnTuple(4, IpProtocol.Udp, A("10.0.0.1"), 5000, A("10.0.0.2"), 53);
        Assert.True(t.TryInvert(out var r));
        Assert.Equal(new ConnTuple(4, IpProtocol.Udp, A("10.0.0.2"), 53, A("10.0.0.1"), 5000), r);
        Assert.Equal(t, r.Invert());
        Assert.Equal(r, t.Invert());

        var t6 = new ConnTuple(6, IpProtocol.Tcp, A("2001:db8::1"), 1, A("2001:db8::2"), 2);
        Assert.Equal(t6, t6.Invert().Invert());
        Assert.NotEqual(t6, t6.Invert());
    }

    [Theory]
    [InlineData(IpProtocol.Icmp, 8, 0)]
    [InlineData(IpProtocol.Icmp, 0, 8)]
    [InlineData(IpProtocol.Icmp, 13, 14)]
    [InlineData(IpProtocol.Icmp, 14, 13)]
    [InlineData(IpProtocol.Icmp, 15, 16)]
    [InlineData(IpProtocol.Icmp, 17, 18)]
    [InlineData(IpProtocol.Icmp, 18, 17)]
    [InlineData(IpProtocol.IcmpV6, 128, 129)]
    [InlineData(IpProtocol.IcmpV6, 129, 128)]
    [InlineData(IpProtocol.IcmpV6, 139, 140)]
    [InlineData(IpProtocol.IcmpV6, 140, 139)]
    public void Icmp_queries_invert_to_their_reply_type_keeping_id_and_code(byte protocol, byte type, byte replyType)
    {
        byte family = protocol == IpProtocol.Icmp ? (byte)4 : (byte)6;
        var src = family == 4 ? A("10.0.0.1") : A("fd00::1");
        var dst = family == 4 ? A("10.0.0.2") : A("fd00::2");
        var t = new ConnTuple(family, protocol, src, 0x4242, dst, (ushort)((type << 8) | 3));
        Assert.True(t.IsIcmp);
        Assert.Equal(type, t.IcmpType);
        Assert.True(t.TryInvert(out var r));
        Assert.Equal(dst, r.Source);
        Assert.Equal(src, r.Destination);
        Assert.Equal(0x4242, r.SourcePort); // the identifier stays where it is
        Assert.Equal(replyType, r.IcmpType);
        Assert.Equal(3, r.DestinationPort & 0xFF);
        Assert.Equal(t, r.Invert());
    }

    [Theory]
    [InlineData(IpProtocol.Icmp, 3)]
    [InlineData(IpProtocol.Icmp, 11)]
    [InlineData(IpProtocol.Icmp, 5)]
    [InlineData(IpProtocol.Icmp, 9)] // router advertisement: no pair
    [InlineData(IpProtocol.Icmp, 128)] // an ICMPv6 type number means nothing in ICMPv4
    [InlineData(IpProtocol.IcmpV6, 1)]
    [InlineData(IpProtocol.IcmpV6, 2)]
    [InlineData(IpProtocol.IcmpV6, 135)] // neighbour solicitation
    [InlineData(IpProtocol.IcmpV6, 8)] // an ICMPv4 type number means nothing in ICMPv6
    public void Icmp_types_without_an_answer_have_no_inverse(byte protocol, byte type)
    {
        var t = new ConnTuple(protocol == 1 ? (byte)4 : (byte)6, protocol, A("10.0.0.1"), 7, A("10.0.0.2"), (ushort)(type << 8));
        Assert.False(t.TryInvert(out _));
        Assert.Equal(-1, Icmp.ReplyType(protocol, type));
        Assert.False(Icmp.IsQuery(protocol, type));

        // Invert still swaps the ends but keeps the type.
        var r = t.Invert();
        Assert.Equal(t.Destination, r.Source);
        Assert.Equal(type, r.IcmpType);
        Assert.Equal(7, r.SourcePort);
    }

    [Fact]
    public void Query_and_error_classification_matches_the_kernel()
    {
        byte[] v4Queries = [8, 13, 15, 17];
        byte[] v4Errors = [3, 4, 5, 11, 12];
        byte[] v6Queries = [128, 139];
        byte[] v6Errors = [1, 2, 3, 4];
        for (int type = 0; type < 256; type++)
        {
            Assert.Equal(v4Queries.Contains((byte)type), Icmp.IsQuery(IpProtocol.Icmp, (byte)type));
            Assert.Equal(v4Errors.Contains((byte)type), Icmp.IsError(IpProtocol.Icmp, (byte)type));
            Assert.Equal(v6Queries.Contains((byte)type), Icmp.IsQuery(IpProtocol.IcmpV6, (byte)type));
            Assert.Equal(v6Errors.Contains((byte)type), Icmp.IsError(IpProtocol.IcmpV6, (byte)type));

            // The reply map is an involution wherever it is defined.
            foreach (byte protocol in new[] { IpProtocol.Icmp, IpProtocol.IcmpV6 })
            {
                int reply = Icmp.ReplyType(protocol, (byte)type);
                if (reply >= 0)
                {
                    Assert.Equal(type, Icmp.ReplyType(protocol, (byte)reply));
                }
            }
        }
    }

    [Fact]
    public void Equality_covers_every_field()
    {
        var t = new ConnTuple(4, 6, A("1.1.1.1"), 1, A("2.2.2.2"), 2);
        Assert.Equal(t, t);
        Assert.True(t == new ConnTuple(4, 6, A("1.1.1.1"), 1, A("2.2.2.2"), 2));
        Assert.Equal(t.GetHashCode(), new ConnTuple(4, 6, A("1.1.1.1"), 1, A("2.2.2.2"), 2).GetHashCode());
        Assert.NotEqual(t, t with { Family = 6 });
        Assert.NotEqual(t, t with { Protocol = 17 });
        Assert.NotEqual(t, t with { SourcePort = 9 });
        Assert.NotEqual(t, t with { DestinationPort = 9 });
        Assert.NotEqual(t, t with { Source = A("1.1.1.2") });
        Assert.NotEqual(t, t with { Destination = A("2.2.2.3") });
        Assert.True(t != t with { SourcePort = 9 });
        Assert.NotEqual(t.Hash(1), t.Hash(2)); // the key changes the hash
        Assert.NotEqual(t.Hash(1), t.Invert().Hash(1));
    }

    [Fact]
    public void Formats_like_conntrack_listings()
    {
        Assert.Equal("src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2", new ConnTuple(4, 6, A("1.1.1.1"), 1, A("2.2.2.2"), 2).ToString());
        Assert.Equal("src=fd00::1 dst=fd00::2 type=128 code=0 id=77", new ConnTuple(6, 58, A("fd00::1"), 77, A("fd00::2"), 128 << 8).ToString());
        Assert.Equal("src=1.1.1.1 dst=2.2.2.2", new ConnTuple(4, 47, A("1.1.1.1"), 0, A("2.2.2.2"), 0).ToString());
    }

    [Fact]
    public void TryRead_takes_addresses_and_ports_from_packets()
    {
        var tcp = Wire.V4("192.168.1.2", "8.8.8.8", 6, Wire.Tcp(33000, 443, 1, 0, Wire.Syn), [1, 1, 1, 1]);
        Assert.True(ConnTuples.TryRead(tcp, PacketParser.Parse(tcp), out var t));
        Assert.Equal(new ConnTuple(4, 6, A("192.168.1.2"), 33000, A("8.8.8.8"), 443), t);

        var udp6 = Wire.V6("fd00::2", "2001:db8::53", 17, Wire.Udp(40000, 53), [Ext.HopByHop()]);
        Assert.True(ConnTuples.TryRead(udp6, PacketParser.Parse(udp6), out t));
        Assert.Equal(new ConnTuple(6, 17, A("fd00::2"), 40000, A("2001:db8::53"), 53), t);

        var echo = Wire.V4("10.0.0.1", "10.0.0.2", 1, Wire.IcmpQuery(8, 0xBEEF, 3, code: 0));
        Assert.True(ConnTuples.TryRead(echo, PacketParser.Parse(echo), out t));
        Assert.Equal(0xBEEF, t.SourcePort);
        Assert.Equal(8 << 8, t.DestinationPort);

        var echo6 = Wire.V6("fd00::1", "fd00::2", 58, Wire.IcmpQuery(129, 0x0102, 9, code: 5));
        Assert.True(ConnTuples.TryRead(echo6, PacketParser.Parse(echo6), out t));
        Assert.Equal(0x0102, t.SourcePort);
        Assert.Equal((129 << 8) | 5, t.DestinationPort);

        // SCTP and UDP-Lite use the port positions too; other protocols have none.
        var sctp = Wire.V4("10.0.0.1", "10.0.0.2", IpProtocol.Sctp, [0x0B, 0xB8, 0x13, 0x88, 0, 0, 0, 0, 0, 0, 0, 0]);
        Assert.True(ConnTuples.TryRead(sctp, PacketParser.Parse(sctp), out t));
        Assert.Equal(3000, t.SourcePort);
        Assert.Equal(5000, t.DestinationPort);

        var esp = Wire.V4("10.0.0.1", "10.0.0.2", IpProtocol.Esp, [1, 2, 3, 4, 5, 6, 7, 8]);
        Assert.True(ConnTuples.TryRead(esp, PacketParser.Parse(esp), out t));
        Assert.Equal(0, t.SourcePort);
        Assert.Equal(0, t.DestinationPort);
    }

    [Fact]
    public void TryRead_refuses_later_fragments_and_broken_packets()
    {
        var later = Wire.V4("10.0.0.1", "10.0.0.2", 17, new byte[16], fragmentOffsetUnits: 2, fixTransport: false);
        Assert.False(ConnTuples.TryRead(later, PacketParser.Parse(later), out var t));
        Assert.Equal(default, t);

        var broken = Wire.V4("10.0.0.1", "10.0.0.2", 6, new byte[10], fixTransport: false);
        Assert.False(ConnTuples.TryRead(broken, PacketParser.Parse(broken), out _));
    }

    [Fact]
    public void CtInfo_helpers_follow_the_kernel_numbering()
    {
        Assert.Equal(0, (int)CtInfo.Established);
        Assert.Equal(1, (int)CtInfo.Related);
        Assert.Equal(2, (int)CtInfo.New);
        Assert.Equal(3, (int)CtInfo.EstablishedReply);
        Assert.Equal(4, (int)CtInfo.RelatedReply);
        Assert.Equal(CtInfo.EstablishedReply, CtInfo.Established.InDirection(ConnDirection.Reply));
        Assert.Equal(CtInfo.RelatedReply, CtInfo.Related.InDirection(ConnDirection.Reply));
        Assert.Equal(CtInfo.New, CtInfo.New.InDirection(ConnDirection.Reply));
        Assert.Equal(CtInfo.Related, CtInfo.Related.InDirection(ConnDirection.Original));
        Assert.Equal(ConnDirection.Reply, CtInfo.RelatedReply.Direction());
        Assert.Equal(ConnDirection.Original, CtInfo.New.Direction());
        Assert.Equal(ConnDirection.Reply, ConnDirection.Original.Opposite());
        Assert.Equal("ESTABLISHED_REPLY", CtInfo.EstablishedReply.ToKernelName());

        // Status bits carry the kernel's bit numbers (they appear over ctnetlink).
        Assert.Equal(1u << 2, (uint)ConnStatus.Assured);
        Assert.Equal(1u << 3, (uint)ConnStatus.Confirmed);
        Assert.Equal(1u << 7, (uint)ConnStatus.SrcNatDone);
        Assert.Equal(1u << 9, (uint)ConnStatus.Dying);
        Assert.Equal(1u << 13, (uint)ConnStatus.Helper);
    }
}
