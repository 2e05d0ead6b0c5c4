using Offload.Engine.Conntrack;
using Offload.Engine.Nat;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Nat;

/// <summary>
/// How a translated tuple is chosen (the kernel's get_unique_tuple and its per-protocol search): the original
/// port when it is free, another of the same class when not, a drop when a range is used up, and a null binding
/// that moves an untranslated flow off a tuple a translation already owns.
/// </summary>
public class UniqueTupleTests
{
    private static RouterRig Masquerading(ulong seed = 0x5eed) => new([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }], seed: seed);

    [Theory]
    [InlineData(40000)]
    [InlineData(1023)]
    [InlineData(700)]
    [InlineData(100)]
    [InlineData(1)]
    public void Original_source_port_is_kept_when_free(int port)
    {
        var rig = Masquerading();
        var p = rig.PassOut(TcpPacket(Client, (ushort)port, Server, 80));
        Assert.Equal(Ip(WanAddress), Source(p));
        Assert.Equal((ushort)port, SourcePort(p));
    }

    [Fact]
    public void Second_client_on_the_same_port_to_the_same_server_gets_another_port_and_both_get_their_replies()
    {
        var rig = Masquerading();
        var a = rig.PassOut(TcpPacket(Client, 40000, Server, 80, Syn, seq: 100));
        var b = rig.PassOut(TcpPacket(Client2, 40000, Server, 80, Syn, seq: 200));

        Assert.Equal((ushort)40000, SourcePort(a));
        Assert.Equal(Ip(WanAddress), Source(b));
        Assert.NotEqual((ushort)40000, SourcePort(b));
        Assert.InRange(SourcePort(b), (ushort)1024, (ushort)65535);
        Assert.Equal(2, rig.Engine.Connections.Count);

        var toB = rig.PassIn(TcpPacket(Server, 80, WanAddress, SourcePort(b), Syn | Ack, seq: 9000, ack: 201));
        Assert.Equal(Ip(Client2), Destination(toB));
        Assert.Equal((ushort)40000, DestinationPort(toB));

        var toA = rig.PassIn(TcpPacket(Server, 80, WanAddress, 40000, Syn | Ack, seq: 8000, ack: 101));
        Assert.Equal(Ip(Client), Destination(toA));
        Assert.Equal((ushort)40000, DestinationPort(toA));
    }

    [Fact]
    public void Same_client_port_to_another_server_is_not_a_clash()
    {
        var rig = Masquerading();
        rig.PassOut(TcpPacket(Client, 40000, Server, 80));
        var b = rig.PassOut(TcpPacket(Client2, 40000, Server2, 80));
        var c = rig.PassOut(TcpPacket(Client2, 40000, Server, 443));
        Assert.Equal((ushort)40000, SourcePort(b));
        Assert.Equal((ushort)40000, SourcePort(c));
    }

    [Theory]
    [InlineData(100, 1, 511)]
    [InlineData(1, 1, 511)]
    [InlineData(511, 1, 511)]
    [InlineData(512, 600, 1023)]
    [InlineData(700, 600, 1023)]
    [InlineData(1023, 600, 1023)]
    [InlineData(1024, 1024, 65535)]
    [InlineData(40000, 1024, 65535)]
    public void A_moved_port_stays_in_its_class(int port, int min, int max)
    {
        var rig = Masquerading();
        var ports = new HashSet<ushort>();
        var first = rig.PassOut(UdpPacket("192.168.1.9", (ushort)port, Server, 53, Ascii("q")));
        Assert.Equal((ushort)port, SourcePort(first)); // kept: it was free
        ports.Add((ushort)port);
        for (int host = 10; host < 40; host++)
        {
            var p = rig.PassOut(UdpPacket($"192.168.1.{host}", (ushort)port, Server, 53, Ascii("q")));
            Assert.InRange(SourcePort(p), (ushort)min, (ushort)max);
            Assert.True(ports.Add(SourcePort(p)), $"port {SourcePort(p)} handed out twice");
        }
    }

    [Fact]
    public void Exhausted_port_range_drops_and_counts_without_throwing()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, Range = Range(WanAddress, minPort: 20000, maxPort: 20001) }]);
        var a = rig.PassOut(TcpPacket("192.168.1.10", 40000, Server, 80));
        var b = rig.PassOut(TcpPacket("192.168.1.11", 40000, Server, 80));
        Assert.Equal(new HashSet<ushort> { 20000, 20001 }, new HashSet<ushort> { SourcePort(a), SourcePort(b) });

        var third = rig.Out(TcpPacket("192.168.1.12", 40000, Server, 80));

        Assert.Equal(Verdict.Drop, third.Verdict);
        Assert.Equal(1, rig[EngineCounter.DroppedNatExhausted]);
        Assert.Equal(1, rig[EngineCounter.PacketsDropped]);
        Assert.Equal(2, rig[EngineCounter.PacketsOut]);
        Assert.Equal(2, rig.Engine.Connections.Count);

        // A retransmission finds nothing half-made and is dropped the same way.
        Assert.Equal(Verdict.Drop, rig.Out(TcpPacket("192.168.1.12", 40000, Server, 80)).Verdict);
        Assert.Equal(2, rig[EngineCounter.DroppedNatExhausted]);

        // The range is per destination: another server still has both ports free.
        var other = rig.PassOut(TcpPacket("192.168.1.12", 40000, Server2, 80));
        Assert.InRange(SourcePort(other), (ushort)20000, (ushort)20001);

        // Freeing a mapping lets the next attempt through.
        rig.Engine.Destroy(FindBySource(rig, "192.168.1.10"));
        var retry = rig.PassOut(TcpPacket("192.168.1.12", 40000, Server, 80));
        Assert.Equal(SourcePort(a), SourcePort(retry));
    }

    [Fact]
    public void Exhausted_icmp_id_range_drops_and_counts()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, Range = Range(WanAddress, minPort: 7, maxPort: 8) }]);
        var a = rig.PassOut(IcmpEchoPacket(Client, Server, id: 0x1234));
        var b = rig.PassOut(IcmpEchoPacket(Client2, Server, id: 0x1234));
        Assert.Equal(new HashSet<ushort> { 7, 8 }, new HashSet<ushort> { IcmpId(a), IcmpId(b) });

        var c = rig.Out(IcmpEchoPacket("192.168.1.12", Server, id: 0x1234));
        Assert.Equal(Verdict.Drop, c.Verdict);
        Assert.Equal(1, rig[EngineCounter.DroppedNatExhausted]);
    }

    [Fact]
    public void Single_port_range_already_matching_is_taken_as_given_and_a_clash_is_caught_at_confirmation()
    {
        // As in the kernel: a port already inside a one-port range is not checked; the second connection's reply tuple then clashes.
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, Range = Range(WanAddress, minPort: 20000) }]);
        var first = rig.PassOut(TcpPacket(Client, 40000, Server, 80));
        Assert.Equal((ushort)20000, SourcePort(first));

        var second = rig.Out(TcpPacket(Client2, 20000, Server, 80));

        Assert.Equal(Verdict.Drop, second.Verdict);
        Assert.Equal(1, rig[EngineCounter.DroppedInsertClash]);
        Assert.Equal(1, rig.Engine.Connections.Count);

        // One that must be moved into the used-up range is refused before that.
        var third = rig.Out(TcpPacket("192.168.1.12", 40000, Server, 80));
        Assert.Equal(Verdict.Drop, third.Verdict);
        Assert.Equal(1, rig[EngineCounter.DroppedNatExhausted]);
    }

    [Fact]
    public void Null_binding_keeps_a_free_tuple_untouched()
    {
        var rig = new RouterRig();
        var syn = TcpPacket(Client, 40000, Server, 80);
        var hop = rig.Out(syn);
        Assert.Equal(syn, hop.Packet);
        var conn = hop.Connection!;
        Assert.True(conn!.Value.HasStatus(ConnStatus.SrcNatDone | ConnStatus.DstNatDone));
        Assert.False(conn!.Value.IsNatted);
        Assert.Equal(conn!.Value.Original, conn!.Value.Reply.Invert());
    }

    [Fact]
    public void Null_binding_moves_an_untranslated_flow_off_a_tuple_a_translation_owns()
    {
        const string Public = "203.0.113.50";
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, SourceNetwork = A("192.168.1.0"), SourcePrefixLength = 24, Range = Range(Public) }]);

        var natted = rig.PassOut(TcpPacket(Client, 40000, Server, 80, Syn, seq: 100));
        Assert.Equal(Ip(Public), Source(natted));
        Assert.Equal((ushort)40000, SourcePort(natted));

        // A host in the DMZ that really owns 203.0.113.50 uses the same port to the same server. No rule matches it,
        // but its tuple would answer to the same reply: the null binding moves its port.
        var hop = rig.Forward(TcpPacket(Public, 40000, Server, 80, Syn, seq: 300), Dmz, Wan);
        Assert.True(hop.Accepted, rig.DropSummary());
        AssertValid(hop.Packet);
        Assert.Equal(Ip(Public), Source(hop.Packet));
        Assert.NotEqual((ushort)40000, SourcePort(hop.Packet));
        Assert.InRange(SourcePort(hop.Packet), (ushort)1024, (ushort)65535);
        Assert.True(hop.Connection!.Value.HasStatus(ConnStatus.SrcNat));

        // Replies find their own flow.
        var toDmz = rig.Pass(TcpPacket(Server, 80, Public, SourcePort(hop.Packet), Syn | Ack, seq: 7000, ack: 301), Wan, Dmz);
        Assert.Equal(Ip(Public), Destination(toDmz));
        Assert.Equal((ushort)40000, DestinationPort(toDmz));

        var toLan = rig.PassIn(TcpPacket(Server, 80, Public, 40000, Syn | Ack, seq: 6000, ack: 101));
        Assert.Equal(Ip(Client), Destination(toLan));
    }

    [Fact]
    public void Icmp_echo_id_is_kept_when_free_and_moved_on_a_clash()
    {
        var rig = Masquerading();
        var a = rig.PassOut(IcmpEchoPacket(Client, Server, id: 0x4242, sequence: 1));
        var b = rig.PassOut(IcmpEchoPacket(Client2, Server, id: 0x4242, sequence: 1));
        Assert.Equal((ushort)0x4242, IcmpId(a));
        Assert.NotEqual((ushort)0x4242, IcmpId(b));

        var replyB = rig.PassIn(IcmpEchoPacket(Server, WanAddress, id: IcmpId(b), sequence: 1, reply: true));
        Assert.Equal(Ip(Client2), Destination(replyB));
        Assert.Equal((ushort)0x4242, IcmpId(replyB));

        var replyA = rig.PassIn(IcmpEchoPacket(Server, WanAddress, id: 0x4242, sequence: 1, reply: true));
        Assert.Equal(Ip(Client), Destination(replyA));
    }

    [Fact]
    public void Port_choice_is_deterministic_for_a_seed()
    {
        ushort Run(ulong seed)
        {
            var rig = Masquerading(seed);
            rig.PassOut(TcpPacket(Client, 40000, Server, 80));
            return SourcePort(rig.PassOut(TcpPacket(Client2, 40000, Server, 80)));
        }

        Assert.Equal(Run(42), Run(42));
    }

    [Fact]
    public void Same_client_port_keeps_its_mapping_towards_another_server()
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Snat, Range = Range(WanAddress, minPort: 20000, maxPort: 29999) }]);
        var first = rig.PassOut(UdpPacket(Client, 40000, Server, 3478, Ascii("binding")));
        var second = rig.PassOut(UdpPacket(Client, 40000, Server2, 3478, Ascii("binding")));
        Assert.Equal(SourcePort(first), SourcePort(second));
    }

    private static Connection FindBySource(RouterRig rig, string source) =>
        rig.Engine.Connections.Entries().Single(c => c.Original.Source == A(source));
}
