using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.IcmpTracking;

/// <summary>
/// Ping through the router, as the kernel's ICMP and ICMPv6 trackers and NAT do it: an echo request starts a
/// connection keyed by its identifier, MASQUERADE with a port range (a live daemon's nat-ports, which the engine
/// builder gives every masquerade rule) maps the identifier into that range (the kernel's port range applies to ICMP
/// ids), a second host with the same identifier gets another one, and the echo reply comes back to the sender with
/// its own identifier and a correct checksum; routed IPv6 echo passes unchanged.
/// </summary>
public class IcmpEchoNatTests
{
    private const ushort Low = 61000;
    private const ushort High = 65535;

    private static RouterRig Masquerading() => new([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan, Range = Ports(Low, High) }]);

    [Theory]
    [InlineData(Client, Client2, Server, WanAddress)]
    [InlineData(Client6, Client6b, Server6, WanAddress6)]
    public void Echo_through_masquerade_gets_an_identifier_in_the_nat_range_and_the_reply_comes_back_translated(string client, string client2, string server, string outside)
    {
        var rig = Masquerading();

        var ping = rig.Live(IcmpEchoPacket(client, server, id: 0x0bad, sequence: 1, payload: Ascii("abcdefgh")), Lan, Wan);
        var ping2 = rig.Live(IcmpEchoPacket(client2, server, id: 0x0bad, sequence: 1, payload: Ascii("abcdefgh")), Lan, Wan);

        Assert.True(ping.Accepted && ping2.Accepted, rig.DropSummary());
        AssertValid(ping.Packet);
        AssertValid(ping2.Packet);
        Assert.Equal(Ip(outside), Source(ping.Packet));
        Assert.Equal(Ip(outside), Source(ping2.Packet));
        ushort id = IcmpId(ping.Packet);
        ushort id2 = IcmpId(ping2.Packet);
        Assert.InRange(id, Low, High);
        Assert.InRange(id2, Low, High);
        Assert.NotEqual(id, id2);
        Assert.True(ping.SourceNatted);
        Assert.Equal(CtInfo.New, ping.CtInfo);

        var pong = rig.Live(IcmpEchoPacket(server, outside, id: id, sequence: 1, reply: true, payload: Ascii("abcdefgh")), Wan, Lan);
        var pong2 = rig.Live(IcmpEchoPacket(server, outside, id: id2, sequence: 1, reply: true, payload: Ascii("abcdefgh")), Wan, Lan);

        Assert.True(pong.Accepted && pong2.Accepted, rig.DropSummary());
        AssertValid(pong.Packet);
        AssertValid(pong2.Packet);
        Assert.Equal(CtInfo.EstablishedReply, pong.CtInfo);
        Assert.Equal(Ip(client), Destination(pong.Packet));
        Assert.Equal(Ip(client2), Destination(pong2.Packet));
        Assert.Equal((ushort)0x0bad, IcmpId(pong.Packet));
        Assert.Equal((ushort)0x0bad, IcmpId(pong2.Packet));
        Assert.Equal("abcdefgh", PayloadText(pong.Packet));
    }

    [Fact]
    public void An_identifier_already_inside_the_range_and_free_is_kept()
    {
        var rig = Masquerading();

        var ping = rig.Live(IcmpEchoPacket(Client, Server, id: 62000), Lan, Wan);

        Assert.Equal((ushort)62000, IcmpId(ping.Packet));
    }

    [Fact]
    public void Many_pings_with_identifiers_outside_the_range_all_land_inside_it()
    {
        var rig = Masquerading();
        var seen = new HashSet<ushort>();
        for (ushort id = 1; id <= 300; id++)
        {
            var ping = rig.Live(IcmpEchoPacket(Client, Server, id: id), Lan, Wan);
            Assert.True(ping.Accepted, rig.DropSummary());
            ushort mapped = IcmpId(ping.Packet);
            Assert.InRange(mapped, Low, High);
            Assert.True(seen.Add(mapped), $"identifier {mapped} handed out twice");
        }
    }

    [Fact]
    public void A_reply_with_an_identifier_nobody_was_given_is_dropped()
    {
        var rig = Masquerading();
        rig.Live(IcmpEchoPacket(Client, Server, id: 7), Lan, Wan);

        var stray = rig.Live(IcmpEchoPacket(Server, WanAddress, id: 7, reply: true), Wan, Lan);

        Assert.Equal(Verdict.Drop, stray.Verdict);
        Assert.Equal(1, rig[EngineCounter.DroppedCannotStart]);
    }

    [Fact]
    public void Routed_ipv6_echo_passes_unchanged_both_ways()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan, Family = 4, Range = Ports(Low, High) }]);
        var request = IcmpEchoPacket(Client6, Server6, id: 0x0bad, payload: Ascii("ping"));
        var reply = IcmpEchoPacket(Server6, Client6, id: 0x0bad, reply: true, payload: Ascii("ping"));

        var ping = rig.Live(request, Lan, Wan);
        var pong = rig.Live(reply, Wan, Lan);

        Assert.Equal(request, ping.Packet);
        Assert.Equal(reply, pong.Packet);
        Assert.False(ping.SourceNatted);
        Assert.Equal(CtInfo.EstablishedReply, pong.CtInfo);
    }
}
