using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.Irc;
using Offload.Engine;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Irc;

/// <summary>The IRC helper driven through the real engine: a client behind a masquerading router offers DCC to a peer.</summary>
public class IrcHelperTests
{
    private const ushort IrcPort = 6667;
    private const ushort ClientPort = 40000;

    // 192.168.1.10 and 192.168.1.11, the clients, and 203.0.113.1, the router's WAN address, as DCC writes them.
    private const string ClientNumber = "3232235786";
    private const string Client2Number = "3232235787";
    private const string WanNumber = "3405803777";

    private static RouterRig Rig(bool masquerade = true, bool loose = false) => new(
        masquerade ? [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }] : null,
        [new HelperBinding(new IrcHelper(loose), 6, IrcPort)]);

    /// <summary>An established IRC connection from a client; the next segment's sequence numbers.</summary>
    private sealed class Session(RouterRig rig, string client, string translatedClient, ushort natPort)
    {
        public uint ClientSeq { get; set; } = 1001;

        public uint ServerSeq { get; set; } = 5001;

        public Hop Send(string text, string? from = null) => Send(Ascii(text), from);

        public Hop Send(byte[] payload, string? from = null)
        {
            var hop = rig.Out(TcpPacket(from ?? client, ClientPort, Server, IrcPort, Ack | Psh, seq: ClientSeq, ack: ServerSeq, payload: payload));
            ClientSeq += (uint)payload.Length;
            return hop;
        }

        /// <summary>The server acknowledges everything it received (in its own, adjusted, numbering).</summary>
        public Hop Acknowledge(uint ack) => rig.In(TcpPacket(Server, IrcPort, translatedClient, natPort, Ack, seq: ServerSeq, ack: ack));

        public string TranslatedClient => translatedClient;

        public ushort NatPort => natPort;
    }

    private static Session Connect(RouterRig rig, string client = Client)
    {
        var syn = rig.Out(TcpPacket(client, ClientPort, Server, IrcPort, Syn, seq: 1000));
        Assert.True(syn.Accepted, rig.DropSummary());
        ushort natPort = SourcePort(syn.Packet);
        string translated = Source(syn.Packet).ToString();
        Assert.True(rig.In(TcpPacket(Server, IrcPort, translated, natPort, Syn | Ack, seq: 5000, ack: 1001)).Accepted, rig.DropSummary());
        Assert.True(rig.Out(TcpPacket(client, ClientPort, Server, IrcPort, Ack, seq: 1001, ack: 5001)).Accepted, rig.DropSummary());
        return new Session(rig, client, translated, natPort);
    }

    private static string Offer(string number, int port, string kind = "SEND", string argument = "file.bin 1024") =>
        kind is "CHAT" or "SCHAT"
            ? $"PRIVMSG bob :\u0001DCC {kind} chat {number} {port}\u0001\r\n"
            : $"PRIVMSG bob :\u0001DCC {kind} {argument.Split(' ')[0]} {number} {port} {argument.Split(' ')[1]}\u0001\r\n";

    [Theory]
    [InlineData("SEND")]
    [InlineData("CHAT")]
    [InlineData("TSEND")]
    [InlineData("SCHAT")]
    public void A_natted_offer_is_rewritten_to_the_translated_endpoint_and_the_peer_gets_through(string kind)
    {
        var rig = Rig();
        var session = Connect(rig);
        var hop = session.Send(Offer(ClientNumber, 5000, kind));

        Assert.True(hop.Accepted, rig.DropSummary());
        AssertValid(hop.Packet);
        Assert.Equal(Offer(WanNumber, 5000, kind), PayloadText(hop.Packet));
        var expectation = Assert.Single(rig.Engine.Expectations.Entries());
        Assert.Equal(A(WanAddress), expectation.Tuple.Destination);
        Assert.Equal((ushort)5000, expectation.Tuple.DestinationPort);
        Assert.Equal(IpProtocolTcp, expectation.Tuple.Protocol);

        // The peer connects from anywhere; it reaches the client at the port it announced.
        var peer = rig.In(TcpPacket(Remote, 33333, WanAddress, 5000, Syn, seq: 9000));
        Assert.True(peer.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, peer.CtInfo);
        Assert.Equal(Ip(Client), Destination(peer.Packet));
        Assert.Equal((ushort)5000, DestinationPort(peer.Packet));
        AssertValid(peer.Packet);
    }

    private const byte IpProtocolTcp = 6;

    [Fact]
    public void An_offer_of_the_already_translated_address_is_accepted_too()
    {
        var rig = Rig();
        var session = Connect(rig);
        var hop = session.Send(Offer(WanNumber, 5000));
        Assert.Equal(Offer(WanNumber, 5000), PayloadText(hop.Packet));
        Assert.Single(rig.Engine.Expectations.Entries());
    }

    [Fact]
    public void Without_nat_the_offer_is_expected_as_announced_and_left_alone()
    {
        var rig = Rig(masquerade: false);
        var session = Connect(rig);
        var hop = session.Send(Offer(ClientNumber, 5000));
        Assert.Equal(Offer(ClientNumber, 5000), PayloadText(hop.Packet));
        var expectation = Assert.Single(rig.Engine.Expectations.Entries());
        Assert.Equal(A(Client), expectation.Tuple.Destination);
        Assert.Equal(0, rig[EngineCounter.PayloadRewrites]);
        Assert.Equal(CtInfo.Related, rig.In(TcpPacket(Remote, 1, Client, 5000, Syn)).CtInfo);
    }

    [Fact]
    public void A_foreign_address_is_refused_untouched_and_counted_unless_loose()
    {
        const string foreign = "16909060"; // 1.2.3.4
        var rig = Rig();
        var hop = Connect(rig).Send(Offer(foreign, 5000));
        Assert.True(hop.Accepted);
        Assert.Equal(Offer(foreign, 5000), PayloadText(hop.Packet));
        Assert.Empty(rig.Engine.Expectations.Entries());
        Assert.Equal(1, rig[EngineCounter.HelperForeignAddressRefused]);

        var looseRig = Rig(loose: true);
        var looseHop = Connect(looseRig).Send(Offer(foreign, 5000));
        Assert.Equal(Offer(WanNumber, 5000), PayloadText(looseHop.Packet));
        Assert.Single(looseRig.Engine.Expectations.Entries());
        Assert.Equal(0, looseRig[EngineCounter.HelperForeignAddressRefused]);
    }

    [Fact]
    public void Port_zero_and_malformed_offers_are_counted_and_expect_nothing()
    {
        var rig = Rig();
        var session = Connect(rig);
        Assert.True(session.Send(Offer(ClientNumber, 0)).Accepted);
        Assert.True(session.Send("PRIVMSG bob :\u0001DCC SEND f 4294967296 5000 1\u0001\r\n").Accepted);
        Assert.True(session.Send("PRIVMSG bob :\u0001DCC CHAT chat 3232235786 99999\u0001\r\n").Accepted);
        Assert.Empty(rig.Engine.Expectations.Entries());
        Assert.Equal(3, rig[EngineCounter.HelperMalformedCommand]);
    }

    [Fact]
    public void An_offer_inside_a_message_or_from_the_server_is_not_read()
    {
        var rig = Rig();
        var session = Connect(rig);
        session.Send($"PRIVMSG bob :look: \u0001DCC SEND f {ClientNumber} 5000 1\u0001\r\n");

        // The server relays offers to the client: the helper reads only what the client sends, as the kernel.
        var fromServer = rig.In(TcpPacket(Server, IrcPort, session.TranslatedClient, session.NatPort, Ack | Psh, seq: 5001, ack: session.ClientSeq,
            payload: Ascii($":alice!a@h PRIVMSG me :\u0001DCC SEND f {ClientNumber} 5001 1\u0001\r\n")));
        Assert.True(fromServer.Accepted, rig.DropSummary());
        Assert.Empty(rig.Engine.Expectations.Entries());
    }

    [Fact]
    public void A_segment_that_starts_inside_a_line_has_its_first_line_skipped()
    {
        var rig = Rig();
        var session = Connect(rig);
        session.Send("PRIVMSG #c :a long message that goes on ");
        var hop = session.Send(Offer(ClientNumber, 5000)); // the tail of the message above, not an offer
        Assert.Equal(Offer(ClientNumber, 5000), PayloadText(hop.Packet));
        Assert.Empty(rig.Engine.Expectations.Entries());

        // The next segment starts a line again.
        var next = session.Send(Offer(ClientNumber, 5001));
        Assert.Equal(Offer(WanNumber, 5001), PayloadText(next.Packet));
    }

    [Fact]
    public void An_offer_split_over_two_segments_is_counted_partial_and_not_read()
    {
        var rig = Rig();
        var session = Connect(rig);
        string offer = Offer(ClientNumber, 5000);
        session.Send(offer[..20]);
        session.Send(offer[20..]);
        Assert.Empty(rig.Engine.Expectations.Entries());
        Assert.Equal(1, rig[EngineCounter.HelperPartialCommand]);
    }

    [Fact]
    public void Several_offers_in_one_segment_are_all_rewritten()
    {
        var rig = Rig();
        var session = Connect(rig);
        var hop = session.Send("PING x\r\n" + Offer(ClientNumber, 5000) + Offer(ClientNumber, 5001, "CHAT"));
        Assert.Equal("PING x\r\n" + Offer(WanNumber, 5000) + Offer(WanNumber, 5001, "CHAT"), PayloadText(hop.Packet));
        Assert.Equal(2, rig.Engine.Expectations.Count);
    }

    [Fact]
    public void Offers_past_the_scan_limit_are_not_read()
    {
        var rig = Rig();
        var session = Connect(rig);
        string filler = "PRIVMSG #c :" + new string('x', 500) + "\r\n";
        var text = string.Concat(Enumerable.Repeat(filler, (IrcParser.MaxScanLength / filler.Length) + 1)) + Offer(ClientNumber, 5000);
        var hop = session.Send(text);
        Assert.True(hop.Accepted);
        Assert.Empty(rig.Engine.Expectations.Entries());
        Assert.Equal(text, PayloadText(hop.Packet));
    }

    [Fact]
    public void A_port_moved_by_the_engine_is_announced_and_sequence_numbers_follow_the_longer_text()
    {
        var rig = Rig();

        // Another client already has the port 9999 of the router's address expected.
        var other = Connect(rig, Client2);
        Assert.Equal(Offer(WanNumber, 9999), PayloadText(other.Send(Offer(Client2Number, 9999)).Packet));

        var session = Connect(rig);
        string offer = Offer(ClientNumber, 9999);
        var hop = session.Send(offer);
        string rewritten = Offer(WanNumber, 10000);
        Assert.Equal(rewritten, PayloadText(hop.Packet)); // one byte longer
        AssertValid(hop.Packet);
        Assert.Equal(2, rig.Engine.Expectations.Count);

        // The peer connects to the moved port and reaches the client at the port it announced.
        var peer = rig.In(TcpPacket(Remote, 33333, WanAddress, 10000, Syn, seq: 9000));
        Assert.Equal(CtInfo.Related, peer.CtInfo);
        Assert.Equal(Ip(Client), Destination(peer.Packet));
        Assert.Equal((ushort)9999, DestinationPort(peer.Packet));

        // The next segment is numbered one further on the wire; the server's acknowledgement comes back adjusted.
        var next = session.Send("PING :x\r\n");
        Assert.Equal(1001u + (uint)offer.Length + 1, Seq(next.Packet));
        Assert.Equal("PING :x\r\n", PayloadText(next.Packet));
        var ack = session.Acknowledge(1001u + (uint)rewritten.Length + 9);
        Assert.True(ack.Accepted, rig.DropSummary());
        Assert.Equal(session.ClientSeq, AckNumber(ack.Packet));
        AssertValid(ack.Packet);
    }

    [Fact]
    public void Random_payloads_never_throw_and_leave_valid_packets()
    {
        var rig = Rig();
        var session = Connect(rig);
        var prefixes = Gen.Elements("", "PRIVMSG bob :\u0001DCC SEND ", "PRIVMSG bob :\u0001DCC CHAT chat ", $"PRIVMSG bob :\u0001DCC SEND f {ClientNumber} ");
        var tails = Gen.ArrayOf(Gen.Frequency(
            (1, Gen.Choose(0, 255).Select(b => (byte)b)),
            (3, Gen.Elements("0123456789 \u0001\r\n\"".Select(c => (byte)c).ToArray()))));
        var payloads = from prefix in prefixes from tail in tails select Ascii(prefix).Concat(tail).Append((byte)'\n').ToArray();

        Check.One(Config.QuickThrowOnFailure.WithMaxTest(500), Prop.ForAll(payloads.ToArbitrary(), payload =>
        {
            var hop = session.Send(payload);
            if (!hop.Accepted)
            {
                return false;
            }

            AssertValid(hop.Packet);
            var sent = Payload(hop.Packet);

            // Only the address and port may change: the text around them stays as it was.
            int common = 0;
            while (common < Math.Min(sent.Length, payload.Length) && sent[common] == payload[common])
            {
                common++;
            }

            int tail = 0;
            while (tail < Math.Min(sent.Length, payload.Length) - common && sent[^(tail + 1)] == payload[^(tail + 1)])
            {
                tail++;
            }

            bool onlyDigitsChanged = sent.AsSpan(common, sent.Length - common - tail).IndexOfAnyExcept("0123456789 "u8) < 0;
            return onlyDigitsChanged && BinaryPrimitives.ReadUInt16BigEndian(hop.Packet.AsSpan(2)) == hop.Packet.Length;
        }));
    }
}
