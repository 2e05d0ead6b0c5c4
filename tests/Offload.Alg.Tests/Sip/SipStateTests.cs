using System.Buffers;
using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.Sip;
using Offload.Engine;
using Offload.Engine.Snapshot;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Sip.SipText;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Sip;

/// <summary>
/// The SIP helper carries a call flow's media across a restart of the daemon: what the phone offered (and where the
/// router placed it), so that an answer after the restart still makes the phone's media leave from the router's port
/// the peer was told, as before it. Damaged or foreign bytes give fresh state.
/// </summary>
public class SipStateTests
{
    private const long WrittenAt = 1_800_000_000_000_000_000;

    [Fact]
    public void A_call_offered_before_a_restart_is_answered_after_it_with_the_phones_media_paired()
    {
        var before = Masquerading(new SipHelper());
        var invite = before.Out(UdpPacket(Client, 5060, Server, 5060, Ascii(Invite(Client, 5060, Server, Sdp(Client, 6000)))));
        Assert.True(invite.Accepted, before.DropSummary());
        ushort wanPort = SourcePort(invite.Packet);
        using var image = EngineSnapshot.Capture(before.Engine, WrittenAt, final: true);
        using var stream = new MemoryStream();
        image.WriteTo(stream);

        var after = Masquerading(new SipHelper());
        var result = EngineSnapshot.Load(after.Engine, new MemoryStream(stream.ToArray()), WrittenAt + 1_000_000_000);
        Assert.Equal((1, 0), (result.HelperStatesRestored, result.HelperStatesReset));

        string via = $"SIP/2.0/UDP {WanAddress}:{wanPort};branch=z9hG4bK776asdhds;rport";
        var answer = after.In(UdpPacket(Server, 5060, WanAddress, wanPort, Ascii(Ok(via, WanAddress, wanPort, Server, Sdp(Server, 7000)))));
        Assert.True(answer.Accepted, after.DropSummary());

        // The phone's RTP to the peer leaves from the router's port its offer announced (paired), from the restored state.
        var rtp = after.Out(UdpPacket(Client, 6000, Server, 7000, Ascii("rtp")));
        Assert.Equal(CtInfo.Related, rtp.CtInfo);
        Assert.Equal(6000, SourcePort(rtp.Packet));
        var rtcp = Assert.Single(after.Expectations, e => e.Nat == ExpectationNat.Source); // RTP's was taken; RTCP's waits
        Assert.Equal((A(Client), (ushort)6001, (ushort)6001), (rtcp.Tuple.Source, rtcp.Tuple.SourcePort, rtcp.NatPort));
    }

    [Fact]
    public void What_it_restores_saves_back_to_the_same_bytes_and_damage_gives_fresh_state()
    {
        var helper = new SipHelper();
        var call = new SipCallState();
        call.Remember(0, A(Client), 6000, 61000);
        call.RememberPeer(1, A(Server), 7000);
        var writer = new ArrayBufferWriter<byte>();
        Assert.True(helper.SaveState(call, writer));
        byte[] saved = writer.WrittenSpan.ToArray();
        Assert.Equal(SipCallState.SavedLength, saved.Length);

        var restored = Assert.IsType<SipCallState>(helper.RestoreState(saved, helper.StateVersion));
        var again = new ArrayBufferWriter<byte>();
        Assert.True(helper.SaveState(restored, again));
        Assert.Equal(saved, again.WrittenSpan.ToArray());
        Assert.True(restored.TryGet(0, out var media) && media.TranslatedPort == 61000);
        Assert.True(restored.TryTakePeer(1, out var peer) && peer.Port == 7000);

        var damaged = saved.ToArray();
        damaged[0] = 2;
        Assert.Null(helper.RestoreState(damaged, helper.StateVersion));
        Assert.Null(helper.RestoreState(saved.AsSpan(1), helper.StateVersion));
        Assert.Null(helper.RestoreState(saved, 2));
        Assert.False(helper.SaveState(new object(), new ArrayBufferWriter<byte>()));
    }

    [Fact]
    public void Any_bytes_restore_to_a_state_that_saves_back_the_same_or_to_nothing()
    {
        var helper = new SipHelper();
        var lengths = Gen.Frequency((1, Gen.Choose(0, 400)), (3, Gen.Constant(SipCallState.SavedLength)));
        var bytes = lengths.SelectMany(n => Gen.ArrayOf(Gen.Frequency((3, Gen.Choose(0, 1)), (1, Gen.Choose(0, 255))).Select(b => (byte)b), n));
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(500), Prop.ForAll(bytes.ToArbitrary(), data =>
        {
            var state = helper.RestoreState(data, helper.StateVersion);
            if (state is null)
            {
                return true;
            }

            var writer = new ArrayBufferWriter<byte>();
            return helper.SaveState(state, writer) && writer.WrittenSpan.SequenceEqual(data);
        }));
    }
}
