using System.Buffers.Binary;
using System.Net;
using FsCheck;
using FsCheck.Fluent;
using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Offload.Sdk.Testing;
using Offload.Engine.Tests.Packets;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.IcmpTracking;

/// <summary>
/// ICMP and ICMPv6 errors about the flows a router carries, as the kernel handles them (nf_conntrack_inet_error, then
/// nf_nat_icmp_reply_translation): port and host unreachable, TTL exceeded, fragmentation needed and packet too big
/// with their MTU, parameter problem with its pointer; about masqueraded flows, port forwards and routed IPv6 flows;
/// sent by the far end or by a router on the way, from beyond the router or from the LAN. Each reaches the host that
/// sent the quoted packet, RELATED to its flow (RELATED_REPLY when it travels in the reply direction), with the quote
/// restored to what that host sent, the outer header made to look like the answer to it, type, code and second word
/// untouched, and correct checksums outside and inside; a quote cut short keeps only the incremental update of its
/// transport checksum, as in the kernel.
/// </summary>
public class IcmpErrorPropertyTests
{
    private const string LanRouter = "192.168.1.254";
    private const string LanRouter6 = "fd00:1::fe";
    private const string InternalServer6 = "fd00:1::20";
    private const string Remote6 = "2001:db8:5::99";

    public enum Flow
    {
        Tcp,
        Udp,
        Echo,
    }

    /// <summary>One error case: which flow, translated or routed, who started it, and who reports which packet.</summary>
    internal sealed record Case(byte Family, bool Natted, bool PortForward, bool FromBeyond, bool FromTheEndHost, Flow Flow, int Error, int QuoteChoice, int PayloadLength, ushort Port)
    {
        /// <summary>The error reports a packet of the connection's original direction (then it travels in the reply direction).</summary>
        public bool QuotesInitiator => PortForward ? !FromBeyond : FromBeyond;

        public override string ToString() =>
            $"v{Family} {(Natted ? "natted" : "routed")} {(PortForward ? "port-forward" : "client")} {Flow}, error {Error} from {(FromBeyond ? "beyond" : "the LAN")} ({(FromTheEndHost ? "end host" : "router")}), quote {QuoteChoice}, payload {PayloadLength}";
    }

    // Type, code and second word of each error kind, per family: port and host unreachable, TTL exceeded,
    // fragmentation needed / packet too big with an MTU, parameter problem with a pointer.
    private static readonly (byte Type, byte Code, uint Word)[] V4Errors = [(3, 3, 0), (3, 1, 0), (11, 0, 0), (3, 4, 1400), (12, 0, 9u << 24)];
    private static readonly (byte Type, byte Code, uint Word)[] V6Errors = [(1, 4, 0), (1, 3, 0), (3, 0, 0), (2, 0, 1280), (4, 0, 7)];

    private static readonly NatRule[] NatRules =
    [
        new NatRule { Action = NatAction.Masquerade, OutInterface = Wan, Range = Ports(61000, 65535) },
        new NatRule { Action = NatAction.Dnat, Family = 4, InInterface = Wan, DestinationPortMin = 8080, DestinationPortMax = 8080, Range = Range(InternalServer, minPort: 80) },
        new NatRule { Action = NatAction.Dnat, Family = 6, InInterface = Wan, DestinationPortMin = 8080, DestinationPortMax = 8080, Range = Range(InternalServer6, minPort: 80) },
    ];

    private static Gen<Case> Cases =>
        from family in Gen.Elements((byte)4, (byte)6)
        from natted in Gen.Elements(true, false)
        from portForward in Gen.Elements(true, false)
        from fromBeyond in Gen.Elements(true, false)
        from endHost in Gen.Elements(true, false)
        from flow in Gen.Elements(Flow.Tcp, Flow.Udp, Flow.Echo)
        from error in Gen.Choose(0, 4)
        from quote in Gen.Choose(0, 2)
        from payload in Gen.Frequency((2, Gen.Choose(0, 40)), (1, Gen.Choose(40, 1400)))
        from port in Gen.Choose(1024, 60000)
        select new Case(family, natted, portForward, fromBeyond, endHost, portForward && flow == Flow.Echo ? Flow.Udp : flow, error, quote, payload, (ushort)port);

    [Fact]
    public void Every_error_about_a_carried_flow_reaches_its_sender_translated_with_correct_checksums()
    {
        Check.One(Deterministic.Runs(1500, 0x1c4e), Prop.ForAll(Cases.ToArbitrary(), c => Run(c)));
    }

    [Theory]
    [InlineData(4, true, false, true, Flow.Udp, 0)] // port unreachable from the server, about a masqueraded flow
    [InlineData(4, true, false, true, Flow.Tcp, 3)] // fragmentation needed from a far router, about a masqueraded flow
    [InlineData(4, true, false, false, Flow.Echo, 2)] // TTL exceeded from the client's side, about an echo reply
    [InlineData(4, true, true, false, Flow.Tcp, 1)] // host unreachable from the LAN, about a port-forwarded flow
    [InlineData(4, true, true, true, Flow.Udp, 4)] // parameter problem from beyond, about a port-forwarded server's reply
    [InlineData(6, false, false, true, Flow.Tcp, 3)] // packet too big from beyond, about a routed IPv6 flow
    [InlineData(6, false, true, false, Flow.Udp, 0)] // port unreachable from a LAN host, about a routed inbound IPv6 flow
    [InlineData(6, true, false, true, Flow.Echo, 2)] // time exceeded, about a masqueraded IPv6 echo
    public void Each_kind_of_error_in_each_direction(int family, bool natted, bool portForward, bool fromBeyond, Flow flow, int error)
    {
        foreach (int quote in new[] { 0, 1, 2 })
        {
            foreach (bool endHost in new[] { true, false })
            {
                Run(new Case((byte)family, natted, portForward, fromBeyond, endHost, flow, error, quote, 300, 4242));
            }
        }
    }

    /// <summary>Sets up the flow, has the error sent about one of its packets, and checks what the sender of that packet receives.</summary>
    internal static void Run(Case c)
    {
        var rig = new RouterRig(c.Natted ? NatRules : []);
        bool v6 = c.Family == 6;
        int initiatorSide = c.PortForward ? Wan : Lan;
        int responderSide = c.PortForward ? Lan : Wan;
        string initiator = c.PortForward ? (v6 ? Remote6 : Remote) : (v6 ? Client6 : Client);
        string target = c.PortForward
            ? (c.Natted ? (v6 ? WanAddress6 : WanAddress) : (v6 ? InternalServer6 : InternalServer))
            : (v6 ? Server6 : Server);
        ushort targetPort = c.PortForward ? (ushort)(c.Natted ? 8080 : 80) : (ushort)53;
        var payload = new byte[c.PayloadLength];
        new System.Random(c.Port).NextBytes(payload);

        // The opening, and the answer, as the responder sees the connection.
        var first = Forward(rig, Opening(c.Flow, initiator, c.Port, target, targetPort), initiatorSide, responderSide, c);
        string responder = Destination(first).ToString();
        string initiatorAsSeen = Source(first).ToString();
        ushort seenPort = c.Flow == Flow.Echo ? IcmpId(first) : SourcePort(first);
        ushort responderPort = c.Flow == Flow.Echo ? (ushort)0 : DestinationPort(first);
        Forward(rig, Answer(c.Flow, responder, responderPort, initiatorAsSeen, seenPort, [], handshake: true), responderSide, initiatorSide, c);
        if (c.Flow == Flow.Tcp)
        {
            Forward(rig, TcpPacket(initiator, c.Port, target, targetPort, Ack, seq: 1001, ack: 5001), initiatorSide, responderSide, c);
        }

        // The packet the error reports, as its sender sent it and as it left the router.
        byte[] sent = c.QuotesInitiator
            ? Data(c.Flow, initiator, c.Port, target, targetPort, payload, fromInitiator: true)
            : Data(c.Flow, responder, responderPort, initiatorAsSeen, seenPort, payload, fromInitiator: false);
        int senderSide = c.QuotesInitiator ? initiatorSide : responderSide;
        int reporterSide = c.QuotesInitiator ? responderSide : initiatorSide;
        var left = Forward(rig, sent, senderSide, reporterSide, c);

        // The report: from the host the packet was for, or from a router on the way on that side.
        string reporter = c.FromTheEndHost
            ? Destination(left).ToString()
            : reporterSide == Wan ? (v6 ? FarRouter6 : FarRouter) : (v6 ? LanRouter6 : LanRouter);
        var (type, code, rest) = (v6 ? V6Errors : V4Errors)[c.Error];
        int headers = (v6 ? 40 : 20) + 8;
        int whole = Math.Min(left.Length, (v6 ? IPv6ErrorLimit : IPv4ErrorLimit) - headers);
        int shortest = (v6 ? 40 : 20) + 8;
        int quoteLength = c.QuoteChoice switch
        {
            0 => shortest,
            1 => shortest + ((whole - shortest) / 2),
            _ => whole,
        };
        var error = IcmpErrorPacket(reporter, Source(left).ToString(), type, code, left, quoteLength, rest);

        var hop = rig.Forward(error, reporterSide, senderSide);

        Assert.True(hop.Accepted, $"{c}: dropped ({rig.DropSummary()})");
        Assert.Equal(c.QuotesInitiator ? CtInfo.RelatedReply : CtInfo.Related, hop.CtInfo);
        var p = hop.Packet;
        AssertValid(p);
        Assert.Equal(error.Length, p.Length);
        Assert.Equal(type, IcmpType(p));
        Assert.Equal(code, IcmpCode(p));
        Assert.Equal(rest, IcmpRest(p));

        // Addressed to the sender of the quoted packet; from the reporter, unless the connection's translation
        // on the way out makes it come from the address the sender sent to (the kernel rewrites the outer header
        // to look like the answer to the quoted packet).
        Assert.Equal(Source(sent), Destination(p));
        var expectedSource = c.Natted && !c.FromBeyond ? Destination(sent) : IPAddress.Parse(reporter);
        Assert.Equal(expectedSource, Source(p));

        var quoted = Quoted(p);
        Assert.Equal(quoteLength, quoted.Length);
        AssertQuotedValid(quoted);
        AssertSameExceptChecksums(sent.AsSpan(0, quoteLength), quoted, c);
    }

    /// <summary>
    /// The quote is what the sender sent: every byte but the checksums, which must be equal as one's-complement numbers
    /// (an incremental update may give 0x0000 for 0xFFFF) wherever the quote holds them.
    /// </summary>
    private static void AssertSameExceptChecksums(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, Case c)
    {
        Assert.Equal(expected.Length, actual.Length);
        int l4 = L4Offset(expected.ToArray());
        int transportField = Protocol(expected.ToArray()) switch
        {
            ProtoTcp => l4 + 16,
            ProtoUdp => l4 + 6,
            _ => l4 + 2,
        };
        int ipField = Family(expected) == 4 ? 10 : -1;
        for (int i = 0; i < expected.Length; i++)
        {
            if (i == ipField || i == transportField)
            {
                if (i + 1 < expected.Length)
                {
                    ushort e = BinaryPrimitives.ReadUInt16BigEndian(expected.Slice(i));
                    ushort a = BinaryPrimitives.ReadUInt16BigEndian(actual.Slice(i));
                    Assert.True(e == a || (e is 0 or 0xFFFF && a is 0 or 0xFFFF), $"{c}: checksum at {i} of the quote: 0x{a:x4}, sent 0x{e:x4}");
                }

                i++;
                continue;
            }

            Assert.True(expected[i] == actual[i], $"{c}: byte {i} of the quote is 0x{actual[i]:x2}, sent 0x{expected[i]:x2}");
        }
    }

    private static byte[] Forward(RouterRig rig, byte[] packet, int from, int to, Case c)
    {
        var hop = rig.Forward(packet, from, to);
        Assert.True(hop.Accepted, $"{c}: setting up the flow, a packet was dropped ({rig.DropSummary()})");
        return hop.Packet;
    }

    private static byte[] Opening(Flow flow, string source, ushort port, string destination, ushort destinationPort) => flow switch
    {
        Flow.Tcp => TcpPacket(source, port, destination, destinationPort, Syn, seq: 1000),
        Flow.Udp => UdpPacket(source, port, destination, destinationPort, Ascii("hello")),
        _ => IcmpEchoPacket(source, destination, id: port, sequence: 1, payload: Ascii("hello")),
    };

    private static byte[] Answer(Flow flow, string source, ushort port, string destination, ushort destinationPort, byte[] payload, bool handshake) => flow switch
    {
        Flow.Tcp => TcpPacket(source, port, destination, destinationPort, handshake ? (byte)(Syn | Ack) : (byte)(Psh | Ack), seq: 5000, ack: 1001, payload: payload),
        Flow.Udp => UdpPacket(source, port, destination, destinationPort, payload),
        _ => IcmpEchoPacket(source, destination, id: destinationPort, sequence: 1, reply: true, payload: payload),
    };

    private static byte[] Data(Flow flow, string source, ushort port, string destination, ushort destinationPort, byte[] payload, bool fromInitiator) => flow switch
    {
        Flow.Tcp => fromInitiator
            ? TcpPacket(source, port, destination, destinationPort, Psh | Ack, seq: 1001, ack: 5001, payload: payload)
            : TcpPacket(source, port, destination, destinationPort, Psh | Ack, seq: 5001, ack: 1001, payload: payload),
        Flow.Udp => UdpPacket(source, port, destination, destinationPort, payload),
        _ => fromInitiator
            ? IcmpEchoPacket(source, destination, id: port, sequence: 2, payload: payload)
            : IcmpEchoPacket(source, destination, id: destinationPort, sequence: 2, reply: true, payload: payload),
    };
}
