using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.Sip;
using Offload.Engine;
using Offload.Sdk.Testing;
using Offload.Alg.Tests.Support;
using Xunit;
using static Offload.Alg.Tests.Sip.SipText;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Sip;

/// <summary>
/// Bad input through the SIP helper: what SIP allows is parsed, the rest is counted and passed; nothing throws, no
/// scan runs past the message, and expectations stay within the per-class limit whatever a body announces.
/// </summary>
public class SipBadInputTests
{
    private static readonly Config Runs = Config.QuickThrowOnFailure.WithMaxTest(1500);

    private static Hop SendOut(RouterRig rig, string text) =>
        rig.Out(UdpPacket(Client, 5060, Server, 5060, Encoding.Latin1.GetBytes(text)));

    [Fact]
    public void An_absurd_content_length_is_counted_and_the_message_passes_untouched()
    {
        var rig = Masquerading(new SipHelper());
        string text = Invite(Client, 5060, Server, Sdp(Client, 6000)).Replace("Content-Length: ", "Content-Length: 99999999", StringComparison.Ordinal);
        var hop = SendOut(rig, text);
        Assert.True(hop.Accepted);
        Assert.Equal(text, PayloadText(hop.Packet));
        Assert.Equal(1, rig[EngineCounter.HelperMalformedCommand]);
        Assert.Empty(rig.Expectations);
    }

    [Fact]
    public void A_content_length_longer_than_the_datagram_is_counted()
    {
        var rig = Masquerading(new SipHelper());
        string body = Sdp(Client, 6000);
        string text = Invite(Client, 5060, Server, body).Replace($"Content-Length: {body.Length}", $"Content-Length: {body.Length + 50}", StringComparison.Ordinal);
        Assert.True(SendOut(rig, text).Accepted);
        Assert.Equal(1, rig[EngineCounter.HelperMalformedCommand]);
    }

    [Fact]
    public void Hundreds_of_media_lines_are_read_up_to_the_bound_and_expectations_stay_within_the_class_limit()
    {
        var rig = Masquerading(new SipHelper());
        var extra = new StringBuilder();
        for (int i = 0; i < 300; i++)
        {
            extra.Append(CultureInfoFree($"m=audio {8000 + (2 * i)} RTP/AVP 0\r\n"));
        }

        var hop = SendOut(rig, Invite(Client, 5060, Server, Sdp(Client, 6000, extra: extra.ToString())));
        Assert.True(hop.Accepted, rig.DropSummary());
        AssertValid(hop.Packet);
        Assert.Equal(1, rig[EngineCounter.HelperMalformedCommand]); // the media past the bound, counted once
        Assert.Equal(SipHelper.Classes[1].MaxExpected, rig.Expectations.Count(e => e.Class == 1));
        Assert.Equal(rig.Expectations.Count, rig.Expectations.Count(e => e.Class == 1));
    }

    [Fact]
    public void Headers_without_an_end_are_a_split_message_over_tcp_and_passed()
    {
        var rig = Masquerading(new SipHelper());
        string whole = Invite(Client, 5060, Server, Sdp(Client, 6000));
        string first = whole[..(whole.Length / 2)];
        var syn = rig.Out(TcpPacket(Client, 40000, Server, 5060, Syn, seq: 100));
        Assert.True(syn.Accepted);
        rig.In(TcpPacket(Server, 5060, WanAddress, SourcePort(syn.Packet), Syn | Ack, seq: 900, ack: 101));
        rig.Out(TcpPacket(Client, 40000, Server, 5060, Ack, seq: 101, ack: 901));
        var half = rig.Out(TcpPacket(Client, 40000, Server, 5060, Ack | Psh, seq: 101, ack: 901, payload: Ascii(first)));
        Assert.True(half.Accepted);
        Assert.Equal(first, PayloadText(half.Packet));
        Assert.Equal(1, rig[EngineCounter.HelperPartialCommand]);
    }

    [Fact]
    public void After_a_message_split_across_tcp_segments_the_next_is_read_where_it_ends_and_nothing_between_is_taken_for_a_message()
    {
        var rig = Masquerading(new SipHelper());
        var syn = rig.Out(TcpPacket(Client, 40000, Server, 5060, Syn, seq: 100));
        ushort wanPort = SourcePort(syn.Packet);
        rig.In(TcpPacket(Server, 5060, WanAddress, wanPort, Syn | Ack, seq: 900, ack: 101));
        rig.Out(TcpPacket(Client, 40000, Server, 5060, Ack, seq: 101, ack: 901));

        // A message whose body holds what looks like a REGISTER, split so that a segment starts with it.
        string forged = $"REGISTER sip:{Server} SIP/2.0\r\nContact: <sip:alice@{Client}:7777>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n";
        string a = Invite(Client, 40000, Server, "v\r\n" + forged + "tail\r\n", method: "MESSAGE").Replace("UDP", "TCP", StringComparison.Ordinal);
        string b = Invite(Client, 40000, Server, Sdp(Client, 6000)).Replace("UDP", "TCP", StringComparison.Ordinal);
        int cut1 = a.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4 + 3;
        int cut2 = cut1 + forged.Length;
        string[] segments = [a[..cut1], a[cut1..cut2], a[cut2..] + "\r\n" + b];
        uint seq = 101;
        string last = "";
        foreach (var segment in segments)
        {
            var hop = rig.Out(TcpPacket(Client, 40000, Server, 5060, Ack | Psh, seq: seq, ack: 901, payload: Ascii(segment)));
            Assert.True(hop.Accepted, rig.DropSummary());
            AssertValid(hop.Packet);
            last = PayloadText(hop.Packet);
            seq += (uint)segment.Length;
        }

        Assert.Equal(1, rig[EngineCounter.HelperPartialCommand]); // the split message, passed as the kernel passes it
        Assert.DoesNotContain(rig.Expectations, e => e.Class == 0); // the body's "REGISTER" was never read
        Assert.Equal(2, rig.Expectations.Count(e => e.Class == 1)); // the INVITE after it was
        Assert.Contains($"Contact: <sip:alice@{WanAddress}:{wanPort}>", last, StringComparison.Ordinal);
        Assert.StartsWith("tail\r\n\r\nINVITE ", last, StringComparison.Ordinal);
    }

    [Fact]
    public void Two_messages_in_one_tcp_segment_are_both_translated_with_the_sequence_following()
    {
        var rig = Masquerading(new SipHelper());
        var syn = rig.Out(TcpPacket(Client, 40000, Server, 5060, Syn, seq: 100));
        ushort wanPort = SourcePort(syn.Packet);
        rig.In(TcpPacket(Server, 5060, WanAddress, wanPort, Syn | Ack, seq: 900, ack: 101));
        rig.Out(TcpPacket(Client, 40000, Server, 5060, Ack, seq: 101, ack: 901));
        string one = Invite(Client, 40000, Server, Sdp(Client, 6000)).Replace("UDP", "TCP", StringComparison.Ordinal);
        string two = Invite(Client, 40000, Server, "", method: "OPTIONS").Replace("UDP", "TCP", StringComparison.Ordinal);
        var hop = rig.Out(TcpPacket(Client, 40000, Server, 5060, Ack | Psh, seq: 101, ack: 901, payload: Ascii(one + two)));
        Assert.True(hop.Accepted, rig.DropSummary());
        AssertValid(hop.Packet);
        string sent = PayloadText(hop.Packet);
        Assert.DoesNotContain(Client, sent);
        Assert.Equal(2, sent.Split($"Contact: <sip:alice@{WanAddress}:{wanPort}>").Length - 1);
        Assert.Equal(2, rig.Expectations.Count);

        // The next segment's sequence number is shifted by what the rewrite added.
        int grown = sent.Length - (one.Length + two.Length);
        var next = rig.Out(TcpPacket(Client, 40000, Server, 5060, Ack, seq: (uint)(101 + one.Length + two.Length), ack: 901));
        Assert.Equal((uint)(101 + one.Length + two.Length + grown), Seq(next.Packet));
    }

    [Fact]
    public void Not_sip_at_all_passes_uncounted()
    {
        var rig = Masquerading(new SipHelper());
        var hop = SendOut(rig, "\r\n\r\n");
        Assert.True(hop.Accepted);
        Assert.Equal(0, rig[EngineCounter.HelperMalformedCommand]);
    }

    private static readonly string[] Valid =
    [
        Invite(Client, 5060, Server, Sdp(Client, 6000)),
        Invite(Client, 5060, Server, Sdp(Client, 6000), method: "UPDATE"),
        Ok($"SIP/2.0/UDP {Client}:5060;received={Client};rport=5060", Client, 5060, Server, Sdp(Server, 7000)),
        Invite(Client, 5060, Server, "", method: "REGISTER", headers: "Expires: 60\r\n"),
    ];

    private static readonly byte[] Interesting = Encoding.Latin1.GetBytes("0123456789 :;=@<>[]./\r\n\tsipSIPmcvlotIN IP4");

    private static readonly Gen<byte> AnyByte = Gen.Frequency(
        (1, Gen.Choose(0, 255).Select(b => (byte)b)),
        (3, Gen.Elements(Interesting)));

    private static readonly Gen<byte[]> Mutated = ByteMutations.Of(Gen.Elements(Valid).Select(text => Encoding.Latin1.GetBytes(text)), AnyByte, maxPosition: 2000, maxEdits: 6);

    // Whatever arrives, the helper never fails (a throw would disable it), the packet is accepted or dropped and what
    // leaves is a valid packet, and the expectations stay within the per-class limit.
    private static bool Survives(byte[] payload)
    {
        var rig = Masquerading(new SipHelper());
        var hop = rig.Out(UdpPacket(Client, 5060, Server, 5060, payload));
        if (rig[EngineCounter.HelperFailures] != 0)
        {
            return false;
        }

        if (hop.Accepted)
        {
            AssertValid(hop.Packet);
        }

        return rig.Expectations.GroupBy(e => e.Class).All(g => g.Count() <= SipHelper.Classes[g.Key].MaxExpected);
    }

    [Fact]
    public void Mutated_messages_never_fail_the_helper()
    {
        Check.One(Runs, Prop.ForAll(Mutated.ToArbitrary(), Survives));
    }

    [Fact]
    public void Random_bytes_never_fail_the_helper()
    {
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), Survives));
    }

    [Fact]
    public void Mutated_messages_split_across_tcp_segments_never_fail_the_helper()
    {
        var split = Mutated.SelectMany(payload => Gen.Choose(0, payload.Length).SelectMany(cut1 => Gen.Choose(cut1, payload.Length).Select(cut2 => (payload, cut1, cut2))));
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(400), Prop.ForAll(split.ToArbitrary(), t => SurvivesOverTcp(t.payload, t.cut1, t.cut2)));
    }

    // The same over a TCP flow, the payload cut into up to three segments (twice, as a retransmission would repeat them):
    // the helper never fails, and what leaves is valid.
    private static bool SurvivesOverTcp(byte[] payload, int cut1, int cut2)
    {
        var rig = Masquerading(new SipHelper());
        var syn = rig.Out(TcpPacket(Client, 40000, Server, 5060, Syn, seq: 100));
        rig.In(TcpPacket(Server, 5060, WanAddress, SourcePort(syn.Packet), Syn | Ack, seq: 900, ack: 101));
        rig.Out(TcpPacket(Client, 40000, Server, 5060, Ack, seq: 101, ack: 901));
        for (int round = 0; round < 2; round++)
        {
            foreach (var (from, to) in new[] { (0, cut1), (cut1, cut2), (cut2, payload.Length) })
            {
                if (to > from)
                {
                    var hop = rig.Out(TcpPacket(Client, 40000, Server, 5060, Ack | Psh, seq: (uint)(101 + from), ack: 901, payload: payload[from..to]));
                    if (hop.Accepted)
                    {
                        AssertValid(hop.Packet);
                    }
                }
            }
        }

        return rig[EngineCounter.HelperFailures] == 0;
    }

    private static string CultureInfoFree(FormattableString text) => FormattableString.Invariant(text);
}
