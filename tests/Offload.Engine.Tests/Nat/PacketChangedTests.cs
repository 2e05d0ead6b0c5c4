using Offload.Engine.Nat;
using Xunit;
using static Offload.Engine.Tests.Nat.RouterRig;
using static Offload.Engine.Tests.Support.TestPackets;

namespace Offload.Engine.Tests.Nat;

/// <summary>
/// Whether the engine says it changed a packet (<see cref="PacketContext.Changed"/>), which a live worker trusts to
/// answer with a plain verdict or with the new bytes: set by every translation (NAT both ways, an ICMP error's
/// quote), by a completed offloaded checksum and cut padding; clear for a packet that leaves as it came (a routed
/// flow without NAT, a null binding).
/// </summary>
public class PacketChangedTests
{
    private static readonly NatRule Masquerade44 = new() { Action = NatAction.Masquerade, OutInterface = Wan, Family = 4 };

    private static (Verdict Verdict, bool Changed, byte[] Output) Process(RouterRig rig, byte[] packet, int inInterface, int outInterface, bool partial = false, int padding = 0)
    {
        var buffer = WithRoom(packet, 256);
        var ctx = new PacketContext(buffer, packet.Length + padding, inInterface) { OutInterface = outInterface, ChecksumPartial = partial };
        var verdict = rig.Engine.Process(ref ctx);
        return (verdict, ctx.Changed, ctx.Packet.ToArray());
    }

    [Fact]
    public void A_masqueraded_packet_and_its_reply_are_changed()
    {
        var rig = new RouterRig([Masquerade44]);

        var sent = Process(rig, UdpPacket(Client, 5000, Server, 53, Ascii("q")), Lan, Wan);
        var back = Process(rig, UdpPacket(Server, 53, WanAddress, SourcePort(sent.Output), Ascii("a")), Wan, Lan);

        Assert.Equal(Verdict.Accept, sent.Verdict);
        Assert.True(sent.Changed);
        Assert.Equal(Verdict.Accept, back.Verdict);
        Assert.True(back.Changed);
    }

    [Fact]
    public void A_routed_packet_without_nat_is_unchanged_both_ways()
    {
        var rig = new RouterRig([Masquerade44]);
        var query = UdpPacket(Client6, 5000, Server6, 53, Ascii("q"));

        var sent = Process(rig, query, Lan, Wan);
        var back = Process(rig, UdpPacket(Server6, 53, Client6, 5000, Ascii("a")), Wan, Lan);

        Assert.Equal(Verdict.Accept, sent.Verdict);
        Assert.False(sent.Changed);
        Assert.Equal(query, sent.Output);
        Assert.Equal(Verdict.Accept, back.Verdict);
        Assert.False(back.Changed);
    }

    [Fact]
    public void An_icmp_error_quoting_a_masqueraded_flow_is_changed()
    {
        var rig = new RouterRig([Masquerade44]);
        var sent = Process(rig, UdpPacket(Client, 5000, Server, 53, Ascii("q")), Lan, Wan);

        var error = Process(rig, IcmpErrorPacket(Server, WanAddress, IcmpDestinationUnreachable, IcmpCodePortUnreachable, sent.Output), Wan, Lan);

        Assert.Equal(Verdict.Accept, error.Verdict);
        Assert.True(error.Changed);
    }

    [Fact]
    public void A_completed_partial_checksum_and_cut_padding_are_changes_of_an_untranslated_packet()
    {
        var rig = new RouterRig([Masquerade44]);

        var partial = Process(rig, UdpPacket(Client6, 5001, Server6, 53, Ascii("q")), Lan, Wan, partial: true);
        var padded = Process(rig, UdpPacket(Client6, 5002, Server6, 53, Ascii("q")), Lan, Wan, padding: 6);

        Assert.Equal(Verdict.Accept, partial.Verdict);
        Assert.True(partial.Changed);
        Assert.Equal(Verdict.Accept, padded.Verdict);
        Assert.True(padded.Changed);
    }
}
