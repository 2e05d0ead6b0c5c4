using System.Buffers.Binary;
using System.Runtime.InteropServices;
using FsCheck;
using FsCheck.Fluent;
using Offload.Engine.Conntrack.Tcp;
using Xunit;

namespace Offload.Engine.Tests.Tcp;

public class TcpTrackerPropertyTests
{
    private static readonly TcpSegmentFlags[] CommonFlags =
    [
        TcpSegmentFlags.Syn,
        TcpSegmentFlags.Syn | TcpSegmentFlags.Ack,
        TcpSegmentFlags.Ack,
        TcpSegmentFlags.Ack | TcpSegmentFlags.Psh,
        TcpSegmentFlags.Fin | TcpSegmentFlags.Ack,
        TcpSegmentFlags.Rst,
        TcpSegmentFlags.Rst | TcpSegmentFlags.Ack,
    ];

    private static Gen<byte> AnyByte => Gen.Choose(0, 255).Select(i => (byte)i);

    // Option areas: sometimes garbage, sometimes a sequence of plausible (or subtly broken) options.
    private static Gen<byte[]> Options =>
        Gen.OneOf(
            Gen.Choose(0, 40).SelectMany(n => Gen.ArrayOf(AnyByte, n)),
            Gen.ListOf(Gen.OneOf(
                    Gen.Constant(new byte[] { 1 }),
                    Gen.Constant(new byte[] { 0 }),
                    Gen.Constant(new byte[] { 4, 2 }),
                    AnyByte.Select(s => new byte[] { 3, 3, s }),
                    Gen.Choose(0, 4).SelectMany(n => Gen.ArrayOf(AnyByte, n * 8).Select(body => Opt.Of([5, (byte)(2 + body.Length)], body))),
                    Gen.Choose(0, 12).SelectMany(n => Gen.ArrayOf(AnyByte, n).Select(body => Opt.Of([AnyKind(body), (byte)Math.Max(0, body.Length - 1)], body)))))
                .Select(parts => Opt.Of(parts.ToArray()))
                .Select(o => o.Length > 40 ? o[..40] : o));

    private static byte AnyKind(byte[] body) => body.Length > 0 ? body[0] : (byte)2;

    public sealed record RandomCase(byte[] StateBytes, byte[] SegmentBytes, byte[] Options, bool IsReply, int Offset, int SettingBits);

    public sealed record Step(bool IsReply, int FlagIndex, byte RawFlags, bool UseRawFlags, int SeqDelta, int AckDelta, int Length, ushort Window, byte[] Options, int Offset);

    [Fact]
    public void Random_segments_on_random_states_never_throw_and_rejections_keep_the_state()
    {
        Gen<RandomCase> gen =
            from state in Gen.ArrayOf(AnyByte, 64)
            from segment in Gen.ArrayOf(AnyByte, 16)
            from options in Options
            from isReply in Gen.Elements(true, false)
            from offset in Gen.OneOf(Gen.Constant(0), Gen.Choose(-100, 100), Gen.Choose(int.MinValue, int.MaxValue))
            from bits in Gen.Choose(0, 15)
            select new RandomCase(state, segment, options, isReply, offset, bits);

        Check.One(
            Config.QuickThrowOnFailure.WithMaxTest(3000),
            Prop.ForAll(gen.ToArbitrary(), c =>
            {
                TcpTrackState st = MemoryMarshal.Read<TcpTrackState>(c.StateBytes);
                // Half the time use a real state value so the deeper paths run.
                if ((c.SettingBits & 8) != 0)
                {
                    st.State = (TcpConntrackState)(c.StateBytes[0] % 10);
                }

                ReadOnlySpan<byte> b = c.SegmentBytes;
                var seg = new TcpSegment(
                    BinaryPrimitives.ReadUInt32BigEndian(b),
                    BinaryPrimitives.ReadUInt32BigEndian(b[4..]),
                    (TcpSegmentFlags)b[8],
                    BinaryPrimitives.ReadUInt16BigEndian(b[9..]),
                    BinaryPrimitives.ReadUInt16BigEndian(b[11..]),
                    c.Options);
                var settings = new TcpTrackerSettings
                {
                    BeLiberal = (c.SettingBits & 1) != 0,
                    Loose = (c.SettingBits & 2) != 0,
                    IgnoreInvalidRst = (c.SettingBits & 4) != 0,
                };

                TcpConntrackState before = st.State;
                TcpVerdict verdict = TcpTracker.Process(ref st, in seg, c.IsReply, c.Offset, settings, out TcpUpdate update);
                CheckInvariants(before, st, verdict, update);

                TcpTrackState fresh = default;
                bool started = TcpTracker.TryStart(ref fresh, in seg, settings, out TcpUpdate startUpdate);
                Assert.Equal(started, startUpdate.Reason == TcpInvalidReason.None);
                if (started)
                {
                    Assert.True(fresh.State is TcpConntrackState.SynSent or TcpConntrackState.Established);
                }

                return true;
            }));
    }

    [Fact]
    public void Random_walks_from_a_real_start_never_throw_and_stay_in_known_states()
    {
        Gen<Step> step =
            from isReply in Gen.Elements(true, false)
            from flagIndex in Gen.Choose(0, CommonFlags.Length - 1)
            from raw in AnyByte
            from useRaw in Gen.Frequency((1, Gen.Constant(true)), (9, Gen.Constant(false)))
            from seqDelta in Gen.OneOf(Gen.Choose(-3000, 3000), Gen.Choose(-200_000, 200_000), Gen.Choose(int.MinValue, int.MaxValue))
            from ackDelta in Gen.OneOf(Gen.Constant(0), Gen.Choose(-3000, 3000), Gen.Choose(int.MinValue, int.MaxValue))
            from length in Gen.OneOf(Gen.Constant(0), Gen.Choose(1, 1460), Gen.Choose(0, 65535))
            from window in Gen.Choose(0, 65535)
            from options in Gen.Frequency((3, Gen.Constant(Array.Empty<byte>())), (1, Options))
            from offset in Gen.OneOf(Gen.Constant(0), Gen.Choose(-50, 50))
            select new Step(isReply, flagIndex, raw, useRaw, seqDelta, ackDelta, length, (ushort)window, options, offset);

        Gen<(bool Pickup, bool Liberal, Step[] Steps)> walk =
            from pickup in Gen.Elements(true, false)
            from liberal in Gen.Frequency((1, Gen.Constant(true)), (4, Gen.Constant(false)))
            from steps in Gen.ArrayOf(step, 40)
            select (pickup, liberal, steps);

        Check.One(
            Config.QuickThrowOnFailure.WithMaxTest(500),
            Prop.ForAll(walk.ToArbitrary(), w =>
            {
                var settings = new TcpTrackerSettings { BeLiberal = w.Liberal };
                TcpTrackState st = default;
                var first = new TcpSegment(1000, 5000, w.Pickup ? TcpSegmentFlags.Ack : TcpSegmentFlags.Syn, 64240, 0, Opt.Of(Opt.SackPermitted, Opt.Nop, Opt.WindowScale(7)));
                Assert.True(TcpTracker.TryStart(ref st, in first, settings, out _));

                foreach (Step s in w.Steps)
                {
                    // Aim near the numbers the tracker holds, so in-window paths are exercised too.
                    TcpDirectionWindow sender = s.IsReply ? st.Reply : st.Original;
                    TcpDirectionWindow receiver = s.IsReply ? st.Original : st.Reply;
                    var seg = new TcpSegment(
                        unchecked(sender.End + (uint)s.SeqDelta),
                        unchecked(receiver.End + (uint)s.AckDelta),
                        s.UseRawFlags ? (TcpSegmentFlags)s.RawFlags : CommonFlags[s.FlagIndex],
                        s.Window,
                        s.Length,
                        s.Options);

                    TcpConntrackState before = st.State;
                    TcpVerdict verdict = TcpTracker.Process(ref st, in seg, s.IsReply, s.Offset, settings, out TcpUpdate update);
                    CheckInvariants(before, st, verdict, update);
                    Assert.True(Enum.IsDefined(st.State));

                    if (verdict == TcpVerdict.Reopen || update.Kill)
                    {
                        // The engine would replace the entry; start over from a SYN as it would.
                        st = default;
                        var syn = new TcpSegment(seg.Seq, 0, TcpSegmentFlags.Syn, s.Window, 0, s.Options);
                        Assert.True(TcpTracker.TryStart(ref st, in syn, settings, out _));
                    }
                }

                return true;
            }));
    }

    private static void CheckInvariants(TcpConntrackState before, in TcpTrackState after, TcpVerdict verdict, in TcpUpdate update)
    {
        Assert.True(Enum.IsDefined(verdict));
        Assert.Equal(before, update.OldState);
        Assert.Equal(after.State, update.NewState);
        switch (verdict)
        {
            case TcpVerdict.Accept:
                Assert.Equal(TcpInvalidReason.None, update.Reason);
                Assert.NotEqual(TcpTimeoutAction.Shorten, update.TimeoutAction);
                Assert.True(update.TimeoutSeconds >= 0);
                break;
            case TcpVerdict.Reopen:
                Assert.Equal(before, after.State);
                Assert.Equal(TcpTimeoutAction.Keep, update.TimeoutAction);
                break;
            default:
                // Invalid and ignored segments never move the state machine or refresh the timeout.
                Assert.NotEqual(TcpInvalidReason.None, update.Reason);
                Assert.Equal(before, after.State);
                Assert.NotEqual(TcpTimeoutAction.Set, update.TimeoutAction);
                break;
        }
    }
}
