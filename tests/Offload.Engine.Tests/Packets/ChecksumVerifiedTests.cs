using Offload.Engine.Nat;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Packets;

/// <summary>
/// A live queue tells whether the kernel has verified a packet's transport checksum (NFQA_SKB_INFO without
/// CSUM_NOTVERIFIED: the device or the stack checked it, CHECKSUM_UNNECESSARY). The kernel's conntrack does not sum
/// such a packet again, and neither does the engine when <see cref="PacketContext.ChecksumVerified"/> says so; without
/// it (a replay, the tests' default) a bad checksum is dropped and counted as before. The IPv4 header is checked always.
/// </summary>
public sealed class ChecksumVerifiedTests
{
    private static RouterRig Masquerading() => new([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }]);

    private static byte[] WithBadTransportChecksum(bool udp, string client, string server)
    {
        var packet = udp ? UdpPacket(client, 40000, server, 53, Ascii("query")) : TcpPacket(client, 40000, server, 80, Syn);
        packet[L4Offset(packet) + (udp ? 6 : 16)] ^= 0x5A;
        return packet;
    }

    private static (Verdict Verdict, byte[] Packet) Process(RouterRig rig, byte[] packet, bool verified)
    {
        var buffer = WithRoom(packet, 256);
        var ctx = new PacketContext(buffer, packet.Length, Lan) { OutInterface = Wan, ChecksumVerified = verified };
        var verdict = rig.Engine.Process(ref ctx);
        return (verdict, ctx.Packet.ToArray());
    }

    [Theory]
    [InlineData(false, Client, Server)]
    [InlineData(true, Client, Server)]
    [InlineData(false, Client6, Server6)]
    [InlineData(true, Client6, Server6)]
    public void A_bad_transport_checksum_is_dropped_and_counted_unless_the_queue_verified_it(bool udp, string client, string server)
    {
        var rig = Masquerading();
        var packet = WithBadTransportChecksum(udp, client, server);

        Assert.Equal(Verdict.Drop, Process(rig, packet, verified: false).Verdict);
        Assert.Equal(1, rig[EngineCounter.MalformedBadChecksum]);
        Assert.Equal(0, rig.Engine.Connections.Count);

        var (verdict, output) = Process(rig, packet, verified: true);
        Assert.Equal(Verdict.Accept, verdict);
        Assert.Equal(1, rig[EngineCounter.MalformedBadChecksum]);
        Assert.Equal(1, rig.Engine.Connections.Count);
        if (client == Client)
        {
            Assert.Equal(Ip(WanAddress), Source(output));
        }
    }

    [Fact]
    public void A_verified_packet_is_translated_by_updating_its_checksum_not_by_summing_it_again()
    {
        // As the kernel's NAT (RFC 1624): a good checksum leaves good, and a bad one the queue vouched for is neither
        // caught nor recomputed on the way.
        var rig = Masquerading();
        var (verdict, good) = Process(rig, TcpPacket(Client, 40000, Server, 80, Syn), verified: true);
        Assert.Equal(Verdict.Accept, verdict);
        AssertValid(good);

        (verdict, var bad) = Process(rig, WithBadTransportChecksum(udp: false, Client, Server2), verified: true);
        Assert.Equal(Verdict.Accept, verdict);
        Assert.Equal(Ip(WanAddress), Source(bad));
        Assert.False(TransportChecksumIsValid(bad));
    }

    [Fact]
    public void The_ipv4_header_checksum_is_checked_even_when_the_queue_verified_the_transport_checksum()
    {
        var rig = Masquerading();
        var packet = TcpPacket(Client, 40000, Server, 80, Syn);
        packet[8] = 1; // TTL changed without fixing the header checksum

        Assert.Equal(Verdict.Drop, Process(rig, packet, verified: true).Verdict);
        Assert.Equal(1, rig[EngineCounter.MalformedBadChecksum]);
    }
}
