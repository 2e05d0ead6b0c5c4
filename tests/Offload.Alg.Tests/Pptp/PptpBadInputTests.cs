using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.Pptp;
using Offload.Alg.Tests.Support;
using Offload.Engine;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Pptp.PptpMessages;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Pptp;

/// <summary>
/// Bad input through the PPTP parser and helper: lengths are checked against the segment before a field is read, a
/// length below the header or a wrong magic cookie stops the segment (counted), a message cut by the segment's end is
/// counted as partial, a known message too short for its fields is refused; whatever arrives, nothing throws, the
/// segment keeps its length (call IDs are rewritten in place), and a control connection holds at most the policy's
/// expectations.
/// </summary>
public class PptpBadInputTests
{
    private static readonly FsCheck.Config Runs = FsCheck.Config.QuickThrowOnFailure.WithMaxTest(800);

    private static byte[] Concat(params byte[][] parts) => [.. parts.SelectMany(p => p)];

    [Fact]
    public void A_length_below_the_header_is_malformed_and_one_past_the_segment_is_partial()
    {
        var message = OutgoingCallRequest(0x1111);
        BinaryPrimitives.WriteUInt16BigEndian(message, 11);
        Assert.Equal(PptpRead.Malformed, PptpParser.Read(message, 0, out _));
        BinaryPrimitives.WriteUInt16BigEndian(message, (ushort)(message.Length + 1));
        Assert.Equal(PptpRead.Partial, PptpParser.Read(message, 0, out _));
        Assert.Equal(PptpRead.Partial, PptpParser.Read(message.AsSpan(0, 11), 0, out _));
        Assert.Equal(PptpRead.Partial, PptpParser.Read(message, message.Length, out _));
    }

    [Fact]
    public void A_wrong_cookie_is_malformed_a_management_message_or_unknown_type_is_skipped_and_a_short_body_refused()
    {
        var wrongCookie = StartRequest();
        wrongCookie[7] ^= 1;
        Assert.Equal(PptpRead.Malformed, PptpParser.Read(wrongCookie, 0, out _));

        var management = StartRequest();
        management[3] = 2;
        Assert.Equal(PptpRead.Other, PptpParser.Read(management, 0, out var skipped));
        Assert.Equal(management.Length, skipped.Length);

        Assert.Equal(PptpRead.Other, PptpParser.Read(Message(99, 4), 0, out _));
        Assert.Equal(PptpRead.Malformed, PptpParser.Read(Message(8, 19), 0, out _)); // an Outgoing-Call-Reply needs 20
        Assert.Equal(PptpRead.Control, PptpParser.Read(Message(8, 20), 0, out _));
    }

    [Fact]
    public void Every_message_of_a_segment_is_read_and_a_malformed_one_is_counted_and_passed()
    {
        var rig = Masquerading(new PptpHelper());
        var control = new PptpControl(rig, Client, 40000, Server).Started();
        var request = control.FromClient(Concat(Message(5, 4), OutgoingCallRequest(0x1111)));
        Assert.Equal(control.SeenPort, BinaryPrimitives.ReadUInt16BigEndian(Payload(request).AsSpan(16 + 12)));

        var broken = OutgoingCallReply(0x2222, control.SeenPort);
        BinaryPrimitives.WriteUInt16BigEndian(broken, 5);
        var passed = control.FromServer(broken);
        Assert.Equal(broken, Payload(passed));
        Assert.Equal(1, rig[EngineCounter.HelperMalformedCommand]);
        Assert.Empty(rig.Expectations);
    }

    [Fact]
    public void A_message_cut_by_the_segment_is_counted_as_partial_and_passed_unread()
    {
        var rig = Masquerading(new PptpHelper());
        var control = new PptpControl(rig, Client, 40000, Server).Started();
        var whole = OutgoingCallRequest(0x1111);
        var first = control.FromClient(whole[..40]);
        Assert.Equal(whole[..40], Payload(first));
        Assert.Equal(1, rig[EngineCounter.HelperPartialCommand]);
    }

    [Fact]
    public void Hundreds_of_messages_in_a_segment_are_read_up_to_the_bound()
    {
        var rig = Masquerading(new PptpHelper());
        var control = new PptpControl(rig, Client, 40000, Server).Started();
        var echoes = Concat([.. Enumerable.Repeat(Message(5, 4), 300), OutgoingCallRequest(0x1111)]);
        var sent = control.FromClient(echoes);
        Assert.Equal(echoes, Payload(sent)); // the request past the bound is not read, so not rewritten
    }

    // ---------------------------------------------------------------- properties

    private static readonly byte[][] Valid =
    [
        StartRequest(), StartReply(), OutgoingCallRequest(0x1111), OutgoingCallReply(0x2222, 0x1111), IncomingCallRequest(0x2222),
        IncomingCallReply(0x1111, 0x2222), IncomingCallConnected(0x1111), CallClearRequest(0x1111), CallDisconnectNotify(0x1111),
        WanErrorNotify(0x1111), SetLinkInfo(0x2222), Concat(OutgoingCallRequest(0x1111), CallClearRequest(0x1111)),
    ];

    private static readonly Gen<byte> AnyByte = Gen.Frequency(
        (1, Gen.Choose(0, 255).Select(b => (byte)b)),
        (3, Gen.Elements<byte>(0, 1, 2, 7, 8, 11, 12, 0x1A, 0x2B, 0x3C, 0x4D, 0xFF)));

    private static readonly Gen<byte[]> Mutated = ByteMutations.Of(Gen.Elements(Valid), AnyByte, maxPosition: 240, maxEdits: 5);

    // Whatever a peer sends, in either direction of a confirmed session with a call set up: the helper never fails, the
    // packet passes with its length and valid checksums, at most a call ID per message read changes, and the expectations
    // stay within the policy.
    private static bool Survives(byte[] payload, bool fromServer)
    {
        var rig = Masquerading(new PptpHelper());
        var control = new PptpControl(rig, Client, 40000, Server).Started();
        var request = control.FromClient(OutgoingCallRequest(0x1111));
        control.FromServer(OutgoingCallReply(0x2222, BinaryPrimitives.ReadUInt16BigEndian(Payload(request).AsSpan(12))));
        if (payload.Length == 0)
        {
            return true;
        }

        var sent = fromServer ? control.FromServer(payload) : control.FromClient(payload);
        var after = Payload(sent);
        int changed = after.Length == payload.Length ? after.Where((b, i) => b != payload[i]).Count() : int.MaxValue;
        return rig[EngineCounter.HelperFailures] == 0
            && changed <= 2 * PptpHelper.MaxMessagesPerSegment
            && rig.Expectations.Count <= PptpHelper.DefaultPolicy.MaxExpected;
    }

    [Fact]
    public void Mutated_messages_from_either_side_never_fail_the_helper()
    {
        Check.One(Runs, Prop.ForAll(Mutated.ToArbitrary(), ArbMap.Default.ArbFor<bool>(), Survives));
    }

    [Fact]
    public void Random_bytes_never_fail_the_helper()
    {
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), ArbMap.Default.ArbFor<bool>(), Survives));
    }

    [Fact]
    public void The_parser_never_reads_past_the_segment_and_always_advances()
    {
        var segments = Gen.OneOf(Mutated, ArbMap.Default.GeneratorFor<byte[]>());
        Check.One(Runs, Prop.ForAll(segments.ToArbitrary(), Gen.Choose(0, 300).ToArbitrary(), (segment, offset) =>
        {
            var read = PptpParser.Read(segment, offset, out var message);
            return read switch
            {
                PptpRead.Control => message.Offset == offset && message.Length >= PptpParser.HeaderLength
                    && message.Offset + message.Length <= segment.Length
                    && message.Length - PptpParser.HeaderLength >= PptpParser.BodyLength(message.Type),
                PptpRead.Other => message.Length >= PptpParser.HeaderLength && message.Offset + message.Length <= segment.Length,
                _ => true,
            };
        }));
    }
}
