using System.Net;
using Offload.Engine;
using Offload.Engine.Packets;
using Offload.Engine.Routing;
using Offload.Sdk.Testing;
using Xunit;

namespace Offload.Rules.Tests;

/// <summary>
/// The mark each accepted packet leaves with says what <c>-m conntrack --ctstate/--ctdir</c> would for a flow the kernel
/// tracked: NEW for the first packet, ESTABLISHED once answered, RELATED for an ICMP error about it, the reply
/// direction, and whether the connection's source or destination is translated; the rest of the mark is untouched.
/// </summary>
public sealed class StateMarkerTests
{
    private const uint Offloaded = 0x10000, New = 0x20000, Established = 0x40000, Related = 0x80000, Reply = 0x100000, Dnat = 0x200000, Snat = 0x400000;

    private readonly ConntrackEngine _engine;
    private readonly StateMarker _marker;
    private readonly int _lan, _wan;

    public StateMarkerTests()
    {
        var config = ConfigLoader.Parse("""
            interfaces: [{name: lan0}, {name: wan0}]
            nat:
              - {type: masquerade, out: wan0}
              - {type: dnat, protocol: tcp, in: wan0, dport: 8080, to: 192.0.2.10, ports: 80}
            steering: {from: [lan0], to: [wan0]}
            """);
        var interfaces = new StaticNetworkInterfaces();
        _lan = interfaces.Add("lan0", (InetAddress.From(IPAddress.Parse("192.0.2.1")), 4, 24));
        _wan = interfaces.Add("wan0", (InetAddress.From(IPAddress.Parse("198.51.100.1")), 4, 24));
        _engine = new ConntrackEngine(EngineBuilder.Build(config, interfaces, _ => null, deterministicSeed: 3), new ManualClock());
        _marker = new StateMarker(config.Steering!);
    }

    private (uint Mark, byte[] Packet) Through(byte[] packet, int inInterface, int outInterface, uint mark = 0)
    {
        var buffer = TestPackets.WithRoom(packet, 64);
        var ctx = new PacketContext(buffer, packet.Length, inInterface) { OutInterface = outInterface };
        Assert.Equal(Verdict.Accept, _engine.Process(ref ctx));
        return (_marker.For(ref ctx, mark), ctx.Packet.ToArray());
    }

    [Fact]
    public void A_masqueraded_connection_is_new_then_established_both_ways_with_its_source_translated()
    {
        var (syn, translated) = Through(TestPackets.TcpPacket("192.0.2.2", 40000, "198.51.100.2", 80), _lan, _wan);
        Assert.Equal(Offloaded | New | Snat, syn);

        ushort port = TestPackets.SourcePort(translated);
        var (synAck, _) = Through(TestPackets.TcpPacket("198.51.100.2", 80, "198.51.100.1", port, TestPackets.Syn | TestPackets.Ack, seq: 5000, ack: 1001), _wan, 0);
        Assert.Equal(Offloaded | Established | Reply | Snat, synAck);

        var (ack, _) = Through(TestPackets.TcpPacket("192.0.2.2", 40000, "198.51.100.2", 80, TestPackets.Ack, seq: 1001, ack: 5001), _lan, _wan);
        Assert.Equal(Offloaded | Established | Snat, ack);
    }

    [Fact]
    public void A_port_forward_is_marked_as_destination_translated_before_routing()
    {
        var (syn, _) = Through(TestPackets.TcpPacket("198.51.100.2", 50000, "198.51.100.1", 8080), _wan, 0);
        Assert.Equal(Offloaded | New | Dnat, syn);
    }

    [Fact]
    public void An_icmp_error_about_a_tracked_flow_is_related()
    {
        var (_, translated) = Through(TestPackets.UdpPacket("192.0.2.2", 5353, "198.51.100.2", 53, TestPackets.Ascii("q")), _lan, _wan);
        var error = TestPackets.IcmpErrorPacket("198.51.100.2", "198.51.100.1", 3, 3, translated);
        var (mark, _) = Through(error, _wan, 0);
        Assert.Equal(Offloaded | Related | Reply | Snat, mark);
    }

    [Fact]
    public void The_bits_outside_the_state_mark_are_kept_and_the_ones_inside_replaced()
    {
        var (mark, _) = Through(TestPackets.TcpPacket("192.0.2.3", 40000, "198.51.100.2", 80), _lan, _wan, mark: 0xa5ff_00c3);
        Assert.Equal(0xa500_00c3u | Offloaded | New | Snat, mark);
    }
}
