using Offload.Engine.Conntrack;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

// Not "...Tests.SeqAdj": a namespace of that name would hide the engine's SeqAdj class from every test namespace.
namespace Offload.Engine.Tests.SequenceAdjustment;

/// <summary>
/// Payload rewrites that change a TCP segment's length, and the sequence adjustment that follows (the kernel's
/// nf_nat_mangle_tcp_packet and nf_conntrack_seqadj): the segment's own lengths and checksum, later segments'
/// sequence numbers shifted, the peer's acknowledgements and SACK blocks shifted back, retransmissions rewritten
/// identically.
/// </summary>
public class SeqAdjTests
{
    private const uint C = 1000;
    private const uint S = 5000;
    private const ushort ClientPort = 40000;
    private const ushort ServicePort = 2121;

    // MSS 1460, SACK permitted, NOP, NOP.
    private static readonly byte[] SynOptions = [2, 4, 5, 0xb4, 4, 2, 1, 1];

    private const string Token = "ADDR";
    private const string Longer = "ADDRESS-LONGER"; // +10

    private static RouterRig Established(TokenRewriteHelper helper, IEnumerable<NatRule>? rules = null, string client = Client, string server = Server)
    {
        var rig = new RouterRig(rules, [new HelperBinding(helper, 6, ServicePort)]);
        var syn = rig.PassOut(TcpPacket(client, ClientPort, server, ServicePort, Syn, seq: C, options: SynOptions));
        rig.PassIn(TcpPacket(server, ServicePort, Source(syn).ToString(), SourcePort(syn), Syn | Ack, seq: S, ack: C + 1, options: SynOptions));
        rig.PassOut(TcpPacket(client, ClientPort, server, ServicePort, Ack, seq: C + 1, ack: S + 1));
        return rig;
    }

    private static byte[] ClientSends(RouterRig rig, uint seq, string text, uint ack = S + 1) =>
        rig.PassOut(TcpPacket(Client, ClientPort, Server, ServicePort, Ack | Psh, seq: seq, ack: ack, payload: Ascii(text)));

    private static byte[] ServerAcks(RouterRig rig, uint ack, byte[]? options = null, uint seq = S + 1) =>
        rig.PassIn(TcpPacket(Server, ServicePort, Client, ClientPort, Ack, seq: seq, ack: ack, options: options));

    private static Connection Conn(RouterRig rig) => rig.Engine.Connections.Entries().Single(c => c.Original.DestinationPort == ServicePort);

    [Fact]
    public void Lengthening_rewrite_fixes_lengths_and_checksum_and_shifts_what_follows()
    {
        var helper = new TokenRewriteHelper(Token, Longer);
        var rig = Established(helper);
        const string Command = "PORT ADDR\r\n"; // 11 bytes, 21 once rewritten

        var first = ClientSends(rig, C + 1, Command);

        Assert.Equal("PORT ADDRESS-LONGER\r\n", PayloadText(first)); // AssertValid ran: IP length, checksums
        Assert.Equal(20 + 20 + 21, first.Length);
        Assert.Equal(C + 1, Seq(first)); // the rewritten segment itself keeps its place
        Assert.Equal(S + 1, AckNumber(first));
        Assert.Equal(1, rig[EngineCounter.PayloadRewrites]);
        Assert.True(Conn(rig).HasStatus(ConnStatus.SeqAdjust));

        // The server acknowledges the 21 bytes it got; the client must see 11 acknowledged.
        Assert.Equal(C + 1 + 11, AckNumber(ServerAcks(rig, C + 1 + 21)));

        // An acknowledgement short of the rewritten segment is untouched.
        Assert.Equal(C + 1, AckNumber(ServerAcks(rig, C + 1)));

        // The client's next segment starts where its stream says; the server must see it after the 21 bytes.
        var second = ClientSends(rig, C + 1 + 11, "NOOP\r\n");
        Assert.Equal(C + 1 + 21, Seq(second));
        Assert.Equal("NOOP\r\n", PayloadText(second));
        Assert.Equal(C + 1 + 11 + 6, AckNumber(ServerAcks(rig, C + 1 + 21 + 6)));

        Assert.Equal(0, rig[EngineCounter.PacketsDropped]);
    }

    [Fact]
    public void Retransmission_of_the_rewritten_segment_is_rewritten_identically()
    {
        var helper = new TokenRewriteHelper(Token, Longer);
        var rig = Established(helper);

        var first = ClientSends(rig, C + 1, "PORT ADDR\r\n");
        var second = ClientSends(rig, C + 12, "NOOP\r\n");

        var again = ClientSends(rig, C + 1, "PORT ADDR\r\n");
        Assert.Equal(first, again);
        var secondAgain = ClientSends(rig, C + 12, "NOOP\r\n");
        Assert.Equal(second, secondAgain);

        // The delta was recorded once: new data is shifted by 10, not 20.
        var third = ClientSends(rig, C + 18, "QUIT\r\n");
        Assert.Equal(C + 28, Seq(third));
        Assert.Equal(2, rig[EngineCounter.PayloadRewrites]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Sack_blocks_in_the_peers_acks_are_shifted_back(bool oddAlignment)
    {
        var helper = new TokenRewriteHelper(Token, Longer);
        var rig = Established(helper);
        ClientSends(rig, C + 1, "PORT ADDR\r\n"); // C+1..C+12, sent as C+1..C+22
        ClientSends(rig, C + 12, "AAAA"); // sent as C+22..C+26
        ClientSends(rig, C + 16, "BBBB"); // sent as C+26..C+30

        // The server lost "AAAA": it acknowledges the command and SACKs "BBBB", in the numbering it saw.
        byte[] sack = Sack((C + 26, C + 30));
        byte[] options = oddAlignment ? [1, .. sack, 1] : [1, 1, .. sack];
        var ack = ServerAcks(rig, C + 22, options);

        Assert.Equal(C + 12, AckNumber(ack));
        Assert.Equal([(C + 16, C + 20)], SackBlocks(ack));
        Assert.Equal(options.Length, TcpHeaderLength(ack) - 20);
    }

    [Fact]
    public void Sack_edges_on_either_side_of_the_last_correction_use_the_right_offset()
    {
        var helper = new TokenRewriteHelper(Token, Longer);
        var rig = Established(helper);
        ClientSends(rig, C + 1, "ADDR\r\n"); // C+1..C+7  -> C+1..C+17   (+10)
        ClientSends(rig, C + 7, "XXXX"); // C+7..C+11 -> C+17..C+21
        ClientSends(rig, C + 11, "ADDR\r\n"); // C+11..C+17 -> C+21..C+37 (+20 from here on)
        ClientSends(rig, C + 17, "YYYY"); // C+17..C+21 -> C+37..C+41

        var ack = ServerAcks(rig, C + 17, [1, 1, .. Sack((C + 21, C + 37), (C + 37, C + 41))]);

        Assert.Equal(C + 7, AckNumber(ack));
        Assert.Equal([(C + 11, C + 17), (C + 17, C + 21)], SackBlocks(ack));
    }

    [Fact]
    public void Two_rewrites_in_one_segment_make_one_delta()
    {
        var helper = new TokenRewriteHelper(Token, Longer);
        var rig = Established(helper);

        var first = ClientSends(rig, C + 1, "ADDR ADDR\r\n"); // 11 -> 31
        Assert.Equal("ADDRESS-LONGER ADDRESS-LONGER\r\n", PayloadText(first));
        Assert.Equal(1, rig[EngineCounter.PayloadRewrites]);
        Assert.Equal(C + 1, Seq(first));

        Assert.Equal(C + 12, AckNumber(ServerAcks(rig, C + 32)));
        Assert.Equal(C + 32, Seq(ClientSends(rig, C + 12, "NOOP\r\n")));
        Assert.Equal(C + 18, AckNumber(ServerAcks(rig, C + 38)));
    }

    [Fact]
    public void Shortening_rewrite_shifts_the_other_way()
    {
        var helper = new TokenRewriteHelper("ADDRESS", "A"); // -6
        var rig = Established(helper);

        var first = ClientSends(rig, C + 1, "PORT ADDRESS\r\n"); // 14 -> 8
        Assert.Equal("PORT A\r\n", PayloadText(first));
        Assert.Equal(20 + 20 + 8, first.Length);

        Assert.Equal(C + 15, AckNumber(ServerAcks(rig, C + 9)));
        Assert.Equal(C + 9, Seq(ClientSends(rig, C + 15, "NOOP\r\n")));
        Assert.Equal(C + 21, AckNumber(ServerAcks(rig, C + 15)));
    }

    [Fact]
    public void Rewrite_in_the_reply_direction_adjusts_the_servers_seq_and_the_clients_ack()
    {
        var helper = new TokenRewriteHelper(Token, Longer) { InOriginal = false, InReply = true };
        var rig = Established(helper);

        var banner = rig.PassIn(TcpPacket(Server, ServicePort, Client, ClientPort, Ack | Psh, seq: S + 1, ack: C + 1, payload: Ascii("227 ADDR\r\n"))); // 10 -> 20
        Assert.Equal("227 ADDRESS-LONGER\r\n", PayloadText(banner));
        Assert.Equal(S + 1, Seq(banner));

        // The client acknowledges the 20 bytes it got.
        var ack = rig.PassOut(TcpPacket(Client, ClientPort, Server, ServicePort, Ack, seq: C + 1, ack: S + 21));
        Assert.Equal(S + 11, AckNumber(ack));
        Assert.Equal(C + 1, Seq(ack)); // the original direction has nothing to adjust

        var next = rig.PassIn(TcpPacket(Server, ServicePort, Client, ClientPort, Ack | Psh, seq: S + 11, ack: C + 1, payload: Ascii("200 OK\r\n")));
        Assert.Equal(S + 21, Seq(next));

        // Client data is not rewritten in this direction.
        var data = ClientSends(rig, C + 1, "PORT ADDR\r\n", ack: S + 29);
        Assert.Equal("PORT ADDR\r\n", PayloadText(data));
        Assert.Equal(S + 19, AckNumber(data));
    }

    [Fact]
    public void Rewrite_that_does_not_fit_the_buffer_drops_and_records_nothing()
    {
        var helper = new TokenRewriteHelper(Token, Longer);
        var rig = Established(helper);
        var segment = TcpPacket(Client, ClientPort, Server, ServicePort, Ack | Psh, seq: C + 1, ack: S + 1, payload: Ascii("PORT ADDR\r\n"));

        var hop = rig.ForwardInBuffer(WithRoom(segment, 9), segment.Length, Lan, Wan); // one byte short of the 10 it needs

        Assert.Equal(Verdict.Drop, hop.Verdict);
        Assert.Equal(1, rig[EngineCounter.DroppedRewriteFailed]);
        Assert.Equal(1, rig[EngineCounter.PacketsDropped]);
        Assert.Equal(0, rig[EngineCounter.PayloadRewrites]);
        Assert.False(Conn(rig).HasStatus(ConnStatus.SeqAdjust));

        // The sender retransmits; this time there is room.
        var retry = rig.ForwardInBuffer(WithRoom(segment, 10), segment.Length, Lan, Wan);
        Assert.True(retry.Accepted);
        AssertValid(retry.Packet);
        Assert.Equal("PORT ADDRESS-LONGER\r\n", PayloadText(retry.Packet));
        Assert.Equal(C + 1, Seq(retry.Packet));
        Assert.Equal(C + 22, Seq(ClientSends(rig, C + 12, "NOOP\r\n")));
    }

    [Fact]
    public void Rewrite_of_an_ipv6_segment_fixes_the_payload_length_and_checksum()
    {
        var helper = new TokenRewriteHelper(Token, Longer);
        var rig = Established(helper, client: Client6, server: Server6);

        var first = rig.PassOut(TcpPacket(Client6, ClientPort, Server6, ServicePort, Ack | Psh, seq: C + 1, ack: S + 1, payload: Ascii("EPRT ADDR\r\n")));
        Assert.Equal("EPRT ADDRESS-LONGER\r\n", PayloadText(first));
        Assert.Equal(40 + 20 + 21, first.Length);

        var ack = rig.PassIn(TcpPacket(Server6, ServicePort, Client6, ClientPort, Ack, seq: S + 1, ack: C + 22));
        Assert.Equal(C + 12, AckNumber(ack));
    }

    [Fact]
    public void Rewrite_after_source_nat_sees_and_keeps_the_translated_headers()
    {
        var helper = new TokenRewriteHelper(Token, Longer);
        var rig = Established(helper, rules: [new NatRule { Action = NatAction.Snat, Range = Range(WanAddress, minPort: 20000, maxPort: 20099) }]);
        var conn = Conn(rig);
        ushort port = conn.Reply.DestinationPort;

        var first = ClientSends(rig, C + 1, "PORT ADDR\r\n");
        Assert.Equal(Ip(WanAddress), Source(first));
        Assert.Equal(port, SourcePort(first));
        Assert.Equal("PORT ADDRESS-LONGER\r\n", PayloadText(first));

        var ack = rig.PassIn(TcpPacket(Server, ServicePort, WanAddress, port, Ack, seq: S + 1, ack: C + 22));
        Assert.Equal(Ip(Client), Destination(ack));
        Assert.Equal(ClientPort, DestinationPort(ack));
        Assert.Equal(C + 12, AckNumber(ack));
    }

    private static byte[] Sack(params (uint Left, uint Right)[] blocks)
    {
        var bytes = new byte[2 + (8 * blocks.Length)];
        bytes[0] = 5;
        bytes[1] = (byte)bytes.Length;
        for (int i = 0; i < blocks.Length; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(2 + (8 * i)), blocks[i].Left);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(6 + (8 * i)), blocks[i].Right);
        }

        return bytes;
    }
}
