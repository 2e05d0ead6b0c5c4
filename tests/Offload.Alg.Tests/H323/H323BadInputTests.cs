using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.H323;
using Offload.Alg.Tests.Support;
using Offload.Engine;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.H323.H323Messages;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.H323;

/// <summary>
/// The PER walker and the helpers on hostile input: random bytes and real messages damaged a few bytes at a time
/// (the H.323 decoder has the longest CVE history of the kernel's helpers). Nothing throws, no address is recorded
/// outside the message, every walk ends, and a packet the helper cannot read passes as it came.
/// </summary>
public class H323BadInputTests
{
    private static readonly Config Runs = Config.QuickThrowOnFailure.WithMaxTest(3000);

    private static readonly byte[][] Valid =
    [
        Q931(SetupType, Setup(h245: ("10.0.0.5", 5000), destCallSignal: ("192.0.2.80", 1720), sourceCallSignal: ("10.0.0.5", 30000),
            fastStart: [new Channel(1, ForwardControl: ("10.0.0.5", 6001)), new Channel(2, ReverseMedia: ("10.0.0.5", 6000), ReverseControl: ("10.0.0.5", 6001))])).Bytes,
        Q931(ConnectType, Connect(h245: ("10.0.0.5", 5001), tunnelled: [OpenLogicalChannelAck(1, ("10.0.0.5", 7000), ("10.0.0.5", 7001))])).Bytes,
        H245(OpenLogicalChannelRequest(new Channel(3, ForwardControl: ("10.0.0.5", 6003), T120: ("10.0.0.5", 1503)))).Bytes,
        H245(OpenLogicalChannelAck(3, ("10.0.0.5", 8000), ("10.0.0.5", 8001))).Bytes,
        RegistrationRequest(("10.0.0.5", 1720), ("10.0.0.5", 1719)).ToArray(),
        AdmissionRequest(("192.0.2.80", 1720), ("10.0.0.5", 1720)).ToArray(),
    ];

    private static readonly PerField[] Types = [H323Tables.H323UserInformation, H323Tables.MultimediaSystemControlMessage, H323Tables.RasMessage];

    private static Gen<byte[]> Damaged(int maxEdits) =>
        ByteMutations.Of(Gen.Elements(Valid), Gen.Elements<byte>(0x00, 0xff, 0x80, 0x7f, 0x40, 0xc0, 0x01, 0x03, 0x7e), 200, maxEdits);

    private static void AssertWalkIsBounded(byte[] bytes)
    {
        Span<H323Found> room = stackalloc H323Found[H323Actions.MaxFound];
        foreach (var type in Types)
        {
            for (int start = 0; start <= Math.Min(bytes.Length, 8); start += 4)
            {
                var findings = new H323Findings(room);
                var status = PerDecoder.Decode(bytes, start, bytes.Length, type, ref findings);
                Assert.InRange(findings.Steps, 0, PerDecoder.MaxSteps + 1);
                foreach (var found in findings.Found)
                {
                    int length = found.Family == 4 ? 4 : 16;
                    Assert.InRange(found.Offset, start, bytes.Length - length - 2);
                }

                _ = status;
            }
        }
    }

    [Fact]
    public void Random_bytes_never_make_the_walk_throw_record_outside_the_message_or_run_unbounded() =>
        Prop.ForAll(Arb.From(Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b))), (byte[] bytes) => AssertWalkIsBounded(bytes)).Check(Runs);

    [Fact]
    public void Damaged_real_messages_never_make_the_walk_throw_or_record_outside_the_message() =>
        Prop.ForAll(Arb.From(Damaged(4)), (byte[] bytes) => AssertWalkIsBounded(bytes)).Check(Runs);

    [Fact]
    public void Damaged_messages_through_the_helpers_never_throw_and_leave_valid_packets()
    {
        Prop.ForAll(Arb.From(Damaged(3)), (byte[] bytes) =>
        {
            var rig = Masquerading(new H323Helper(), new H323RasHelper());
            var call = new TcpFlow(rig, fromLan: true, Client, 40000, Server, 1720);
            var hop = call.OpenerSends(bytes);
            if (hop.Accepted)
            {
                AssertValid(hop.Packet);
                Assert.Equal(bytes.Length, Payload(hop.Packet).Length); // rewrites never change a length
            }

            var ras = rig.Out(UdpPacket(Client, 1719, Server, 1719, bytes));
            if (ras.Accepted)
            {
                AssertValid(ras.Packet);
                Assert.Equal(bytes.Length, Payload(ras.Packet).Length);
            }

            Assert.Equal(0, rig[EngineCounter.HelperFailures]);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(400));
    }

    [Fact]
    public void Damaged_messages_on_an_h245_connection_never_throw_and_leave_valid_packets()
    {
        Prop.ForAll(Arb.From(Damaged(3)), (byte[] bytes) =>
        {
            var rig = Masquerading(new H323Helper());
            var call = new TcpFlow(rig, fromLan: true, Client, 40000, Server, 1720);
            Assert.True(call.OpenerSends(Q931(SetupType, Setup(h245: (Client, 5000))).Bytes).Accepted);
            var h245 = new TcpFlow(rig, fromLan: false, Server, 41000, WanAddress, 5000);
            foreach (var hop in new[] { h245.AnswererSends(bytes), h245.OpenerSends(bytes) })
            {
                if (hop.Accepted)
                {
                    AssertValid(hop.Packet);
                    Assert.Equal(bytes.Length, Payload(hop.Packet).Length);
                }
            }

            Assert.Equal(0, rig[EngineCounter.HelperFailures]);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
    }

    [Fact]
    public void Valid_messages_decode_whole_at_any_offset_of_a_larger_buffer_and_find_the_same_addresses()
    {
        Prop.ForAll(Arb.From(Gen.Choose(0, 40)), Arb.From(Gen.Choose(0, 40)), (int before, int after) =>
        {
            var (bytes, offsets) = H245(OpenLogicalChannelAck(2, ("10.0.0.5", 8000), ("10.0.0.5", 8001)));
            var buffer = new byte[before + bytes.Length + after];
            Array.Fill(buffer, (byte)0xff);
            bytes.CopyTo(buffer, before);
            Span<H323Found> room = stackalloc H323Found[H323Actions.MaxFound];
            var findings = new H323Findings(room);
            Assert.Equal(PerStatus.Ok, PerDecoder.Decode(buffer, before + 4, before + bytes.Length, H323Tables.MultimediaSystemControlMessage, ref findings));
            Assert.Equal(offsets.Select(o => o + before), findings.Found.ToArray().Select(f => f.Offset));
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(200));
    }

    [Fact]
    public void Encoded_channels_with_any_addresses_and_ports_decode_to_exactly_what_was_written()
    {
        var address = Gen.Choose(1, 254).Select(b => $"10.{b}.0.{b}");
        var port = Gen.Choose(1, 65535).Select(p => (ushort)p);
        var endpoint = Gen.Zip(address, port).Select(t => ((string, ushort)?)(t.Item1, t.Item2));
        var maybe = Gen.OneOf(endpoint, Gen.Constant<(string, ushort)?>(null));
        var channel = from n in Gen.Choose(1, 65535)
                      from fm in maybe
                      from fc in maybe
                      from rm in maybe
                      from rc in maybe
                      select new Channel(n, fm, fc, rm, rc);
        Prop.ForAll(Arb.From(Gen.ArrayOf(channel).Where(a => a.Length is > 0 and < 8)), Arb.From(maybe), (Channel[] channels, (string, ushort)? h245) =>
        {
            var (bytes, offsets) = Q931(SetupType, Setup(h245: h245, fastStart: channels));
            Assert.True(H323Framing.TryReadTpkt(bytes, 0, out int start, out int length));
            Assert.True(H323Framing.TryFindUserInformation(bytes, start, length, out _, out int uuStart, out int uuLength));
            Span<H323Found> room = stackalloc H323Found[H323Actions.MaxFound];
            var findings = new H323Findings(room);
            Assert.Equal(PerStatus.Ok, PerDecoder.Decode(bytes, uuStart, uuStart + uuLength, H323Tables.H323UserInformation, ref findings));
            Assert.Equal(offsets, findings.Found.ToArray().Select(f => f.Offset));
            Assert.Equal(channels.Length, findings.Channels);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
    }
}
