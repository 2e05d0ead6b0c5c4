using System.Runtime.CompilerServices;
using Offload.Engine.Conntrack.Tcp;
using Xunit;
using static Offload.Engine.Conntrack.Tcp.TcpSegmentFlags;
using static Offload.Engine.Tests.Tcp.Flow;

namespace Offload.Engine.Tests.Tcp;

public class TcpTrackerTests
{
    private static readonly byte[] ClientSynOptions = Opt.Of(Opt.Mss(1460), Opt.SackPermitted, Opt.Nop, Opt.WindowScale(7));
    private static readonly byte[] ServerSynOptions = Opt.Of(Opt.Mss(1460), Opt.SackPermitted, Opt.Nop, Opt.WindowScale(0));

    [Fact]
    public void State_fits_in_58_bytes()
    {
        // Packed, so that a connection table entry keeps to two cache lines (ConnEntry.Size).
        Assert.Equal(18, Unsafe.SizeOf<TcpDirectionWindow>());
        Assert.Equal(58, Unsafe.SizeOf<TcpTrackState>());
    }

    [Fact]
    public void Tracking_does_not_allocate()
    {
        byte[] synOptions = ClientSynOptions;
        byte[] sack = Opt.Of(Opt.Nop, Opt.Nop, Opt.Sack((S + 2001, S + 3001)));
        var settings = new TcpTrackerSettings();

        static void Run(byte[] synOptions, byte[] sack, TcpTrackerSettings settings)
        {
            TcpTrackState st = default;
            var syn = new TcpSegment(C, 0, Syn, 64240, 0, synOptions);
            TcpTracker.TryStart(ref st, in syn, settings, out _);
            var synAck = new TcpSegment(S, C + 1, Syn | Ack, 65160, 0, ServerSynOptions);
            TcpTracker.Process(ref st, in synAck, true, 0, settings, out _);
            for (uint i = 0; i < 50; i++)
            {
                var data = new TcpSegment(S + 1 + (i * 1000), C + 1, Ack | Psh, 65160, 1000, default);
                TcpTracker.Process(ref st, in data, true, 0, settings, out _);
                var ack = new TcpSegment(C + 1, S + 1001 + (i * 1000), Ack, 1000, 0, sack);
                TcpTracker.Process(ref st, in ack, false, 3, settings, out _);
            }

            var rst = new TcpSegment(C + 1, 0, Rst, 0, 0, default);
            TcpTracker.Process(ref st, in rst, false, 0, settings, out _);
        }

        Run(synOptions, sack, settings); // warm up
        long before = GC.GetAllocatedBytesForCurrentThread();
        Run(synOptions, sack, settings);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Three_way_handshake_reaches_established_and_assured()
    {
        var f = new Flow();
        Assert.True(f.Start(C, Syn, 64240, options: ClientSynOptions));
        f.Expect(TcpConntrackState.SynSent, 120);
        Assert.False(f.Update.SeenReply);
        Assert.False(f.Update.Assured);

        Assert.Equal(TcpVerdict.Accept, f.Reply(S, C + 1, Syn | Ack, 65160, options: ServerSynOptions));
        f.Expect(TcpConntrackState.SynRecv, 60);
        Assert.True(f.Update.SeenReply);
        Assert.False(f.Update.Assured);

        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 1, S + 1, Ack, 502));
        f.Expect(TcpConntrackState.Established, 432_000);
        Assert.True(f.Update.BecameAssured);
        Assert.True(f.Update.Assured);
        Assert.True(f.State.Assured);

        // Assured only once.
        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 1, Ack, 509));
        f.Expect(TcpConntrackState.Established, 432_000);
        Assert.False(f.Update.BecameAssured);
        Assert.True(f.Update.Assured);
    }

    [Fact]
    public void Window_scale_7_and_0_are_recorded_and_applied()
    {
        var f = Established(ClientSynOptions, ServerSynOptions);
        Assert.Equal(7, f.State.Original.Scale);
        Assert.Equal(0, f.State.Reply.Scale);
        Assert.Equal(TcpTrackFlags.WindowScale | TcpTrackFlags.SackPermitted, f.State.Original.Flags & (TcpTrackFlags.WindowScale | TcpTrackFlags.SackPermitted));
        Assert.Equal(TcpTrackFlags.WindowScale | TcpTrackFlags.SackPermitted, f.State.Reply.Flags & (TcpTrackFlags.WindowScale | TcpTrackFlags.SackPermitted));

        // The client's raw window 1000 means 128000 bytes: the server may send up to S+1+128000.
        Assert.Equal(S + 1 + (1000u << 7), f.State.Reply.MaxEnd);

        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 1, Ack, 65160, length: 1000));
        f.Expect(TcpConntrackState.Established, 300); // data not yet acknowledged
        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 100_001, C + 1, Ack, 65160, length: 1000));
        f.Expect(TcpConntrackState.Established, 300);

        // Client acknowledges everything: back to the full timeout.
        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 1, S + 101_001, Ack, 1000));
        f.Expect(TcpConntrackState.Established, 432_000);

        // Far past the scaled window (by more than the client ever advertised): invalid.
        Assert.Equal(TcpVerdict.Invalid, f.Reply(S + 101_001 + 128_000 + 200_000, C + 1, Ack, 65160, length: 1000));
        f.ExpectRejected(TcpConntrackState.Established, TcpInvalidReason.SeqOver);

        // The server's scale is 0: its window 65160 is just that, so the client overshooting it by a
        // few thousand bytes is the kernel's tolerated overshoot (ignored), not accepted.
        Assert.Equal(TcpVerdict.Ignore, f.Orig(C + 1 + 65_160 + 4_000, S + 101_001, Ack, 1000, length: 100));
        f.ExpectRejected(TcpConntrackState.Established, TcpInvalidReason.WindowOvershoot);
    }

    [Fact]
    public void Without_scaling_the_same_far_segment_is_out_of_window()
    {
        // The client offers no window scale, so neither side scales (RFC 7323) and raw 1000 is 1000 bytes.
        var f = Established(Opt.Of(Opt.Mss(1460), Opt.SackPermitted), ServerSynOptions);
        Assert.Equal(0, f.State.Original.Scale);
        Assert.Equal(0, f.State.Reply.Scale);
        Assert.Equal(S + 1 + 1000, f.State.Reply.MaxEnd);

        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 1, Ack, 65160, length: 1000));
        Assert.Equal(TcpVerdict.Invalid, f.Reply(S + 100_001, C + 1, Ack, 65160, length: 1000));
        f.ExpectRejected(TcpConntrackState.Established, TcpInvalidReason.SeqOver);
    }

    [Fact]
    public void Scaling_is_off_when_only_the_server_offers_it()
    {
        var f = Established(Opt.Of(Opt.Mss(1460)), Opt.Of(Opt.WindowScale(9)));
        Assert.Equal(0, f.State.Original.Scale);
        Assert.Equal(0, f.State.Reply.Scale);
    }

    [Fact]
    public void Sack_edge_within_sent_data_is_accepted_and_extends_the_window()
    {
        var f = Established(ClientSynOptions, ServerSynOptions);
        for (uint i = 0; i < 3; i++)
        {
            Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1 + (i * 1000), C + 1, Ack | Psh, 65160, length: 1000));
        }

        Assert.Equal(S + 3001, f.State.Reply.End);

        // Segment S+1001.. was lost; the client acks S+1001 and SACKs the third segment.
        byte[] sack = Opt.Of(Opt.Nop, Opt.Nop, Opt.Sack((S + 2001, S + 3001)));
        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 1, S + 1001, Ack, 1000, options: sack));
        f.Expect(TcpConntrackState.Established, 300);
        // The server may now send up to the SACK edge plus the scaled window, not just ack + window.
        Assert.Equal(S + 3001 + 128_000, f.State.Reply.MaxEnd);
    }

    [Fact]
    public void Sack_edge_beyond_sent_data_is_invalid()
    {
        var f = Established(ClientSynOptions, ServerSynOptions);
        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 1, Ack, 65160, length: 3000));

        byte[] bogus = Opt.Of(Opt.Nop, Opt.Nop, Opt.Sack((S + 2001, S + 5001)));
        Assert.Equal(TcpVerdict.Invalid, f.Orig(C + 1, S + 1001, Ack, 1000, options: bogus));
        f.ExpectRejected(TcpConntrackState.Established, TcpInvalidReason.AckOver);
    }

    [Fact]
    public void Sack_blocks_are_not_read_when_the_receiver_did_not_permit_sack()
    {
        var f = Established(Opt.WindowScale(7), Opt.WindowScale(0));
        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 1, Ack, 65160, length: 3000));

        byte[] bogus = Opt.Of(Opt.Nop, Opt.Nop, Opt.Sack((S + 2001, S + 5001)));
        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 1, S + 1001, Ack, 1000, options: bogus));
    }

    [Fact]
    public void Retransmitted_data_is_accepted()
    {
        var f = Established(ClientSynOptions, ServerSynOptions);
        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 1, S + 1, Ack | Psh, 1000, length: 500));
        f.Expect(TcpConntrackState.Established, 300);
        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 1, S + 1, Ack | Psh, 1000, length: 500));
        f.Expect(TcpConntrackState.Established, 300);
        Assert.Equal(1, f.State.Retrans);

        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 501, Ack, 65160));
        f.Expect(TcpConntrackState.Established, 432_000);

        // A late copy of already acknowledged data still lies within the receiver's window.
        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 1, S + 1, Ack | Psh, 1000, length: 500));
        f.Expect(TcpConntrackState.Established, 432_000);
    }

    [Fact]
    public void Segment_far_out_of_window_is_invalid()
    {
        var f = Established();
        Assert.Equal(TcpVerdict.Invalid, f.Orig(C + 1 + 10_000_000, S + 1, Ack, 1000, length: 100));
        f.ExpectRejected(TcpConntrackState.Established, TcpInvalidReason.SeqOver);

        Assert.Equal(TcpVerdict.Invalid, f.Orig(C + 1, S + 1 + 10_000_000, Ack, 1000));
        f.ExpectRejected(TcpConntrackState.Established, TcpInvalidReason.AckOver);
    }

    [Fact]
    public void Segment_far_out_of_window_is_accepted_when_liberal()
    {
        var f = Established(configure: s => s.BeLiberal = true);
        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 1 + 10_000_000, S + 1, Ack, 1000, length: 100));
        f.Expect(TcpConntrackState.Established, 432_000);
    }

    [Fact]
    public void Fin_fin_ack_close_walks_fin_wait_close_wait_last_ack_time_wait()
    {
        var f = Established();

        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 1, S + 1, Fin | Ack, 1000));
        f.Expect(TcpConntrackState.FinWait, 120);
        Assert.NotEqual(TcpTrackFlags.None, f.State.Original.Flags & TcpTrackFlags.CloseInit);
        Assert.Equal(TcpTrackFlags.None, f.State.Reply.Flags & TcpTrackFlags.CloseInit);

        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 2, Ack, 65160));
        f.Expect(TcpConntrackState.CloseWait, 60);

        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 2, Fin | Ack, 65160));
        f.Expect(TcpConntrackState.LastAck, 30);

        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 2, S + 2, Ack, 1000));
        f.Expect(TcpConntrackState.TimeWait, 120);
    }

    [Fact]
    public void Syn_in_time_wait_asks_for_reopen_and_the_new_connection_starts()
    {
        var f = Established();
        f.Orig(C + 1, S + 1, Fin | Ack, 1000);
        f.Reply(S + 1, C + 2, Fin | Ack, 65160);
        f.Orig(C + 2, S + 2, Ack, 1000);
        Assert.Equal(TcpConntrackState.TimeWait, f.State.State);

        Assert.Equal(TcpVerdict.Reopen, f.Orig(2_000_000, 0, Syn, 64240));
        Assert.Equal(TcpConntrackState.TimeWait, f.State.State);
        Assert.Equal(TcpInvalidReason.None, f.Update.Reason);

        // The engine drops the old entry and starts a new one from the same SYN.
        Assert.True(f.Start(2_000_000, Syn, 64240));
        f.Expect(TcpConntrackState.SynSent, 120);
        Assert.False(f.State.SeenReply);
    }

    [Fact]
    public void Syn_from_the_server_side_in_time_wait_also_reopens()
    {
        var f = Established();
        f.Orig(C + 1, S + 1, Fin | Ack, 1000);
        f.Reply(S + 1, C + 2, Fin | Ack, 65160);
        f.Orig(C + 2, S + 2, Ack, 1000);

        Assert.Equal(TcpVerdict.Reopen, f.Reply(7_000_000, 0, Syn, 64240));
    }

    [Fact]
    public void Rst_with_the_expected_sequence_closes()
    {
        var f = Established();
        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 1, Rst | Ack, 0));
        f.Expect(TcpConntrackState.Close, 10);
        Assert.False(f.Update.Kill);
    }

    [Fact]
    public void Rst_below_what_the_peer_acknowledged_is_invalid()
    {
        var f = Established();
        Assert.Equal(TcpVerdict.Invalid, f.Orig(C - 100, 0, Rst, 0));
        f.ExpectRejected(TcpConntrackState.Established, TcpInvalidReason.InvalidRst);
    }

    [Fact]
    public void Rst_below_the_peer_ack_passes_when_invalid_rsts_are_ignored_but_does_not_close()
    {
        var f = Established(configure: s => s.IgnoreInvalidRst = true);
        Assert.Equal(TcpVerdict.Accept, f.Orig(C - 100, 0, Rst, 0));
        // Not the exact sequence: the state stays so a challenge ACK can follow, but the timeout is short.
        f.Expect(TcpConntrackState.Established, 10);
    }

    [Fact]
    public void Rst_in_window_but_not_exact_keeps_established_with_close_timeout()
    {
        var f = Established();
        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 101, 0, Rst, 0));
        f.Expect(TcpConntrackState.Established, 10);
    }

    [Fact]
    public void Rst_far_out_of_window_is_invalid()
    {
        var f = Established();
        Assert.Equal(TcpVerdict.Invalid, f.Orig(C + 1 + 10_000_000, 0, Rst, 0));
        f.ExpectRejected(TcpConntrackState.Established, TcpInvalidReason.SeqOver);
    }

    [Fact]
    public void Rst_right_after_own_data_closes()
    {
        var f = Established();
        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 1, Ack | Psh, 65160, length: 19));
        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 20, C + 1, Rst, 0));
        f.Expect(TcpConntrackState.Close, 10);
    }

    [Fact]
    public void Rst_answering_the_syn_asks_to_delete_the_entry()
    {
        var f = new Flow();
        Assert.True(f.Start(C, Syn, 64240));
        Assert.Equal(TcpVerdict.Accept, f.Reply(0, C + 1, Rst | Ack, 0));
        Assert.True(f.Update.Kill);
        Assert.Equal(TcpConntrackState.Close, f.State.State);
        Assert.Equal(TcpTimeoutAction.Keep, f.Update.TimeoutAction);
    }

    [Fact]
    public void Retransmitted_syn_does_not_refresh_the_timeout()
    {
        var f = new Flow();
        Assert.True(f.Start(C, Syn, 64240));
        f.Expect(TcpConntrackState.SynSent, 120);
        Assert.Equal(TcpVerdict.Accept, f.Orig(C, 0, Syn, 64240));
        Assert.Equal(TcpConntrackState.SynSent, f.State.State);
        Assert.Equal(TcpTimeoutAction.Keep, f.Update.TimeoutAction);
    }

    [Fact]
    public void Simultaneous_open_goes_through_syn_sent2()
    {
        var f = new Flow();
        Assert.True(f.Start(C, Syn, 64240));
        f.Expect(TcpConntrackState.SynSent, 120);

        // Like any SYN while no reply has been seen, the crossing SYN does not extend the entry.
        Assert.Equal(TcpVerdict.Accept, f.Reply(S, 0, Syn, 65160));
        Assert.Equal(TcpConntrackState.SynSent2, f.State.State);
        Assert.Equal(TcpTimeoutAction.Keep, f.Update.TimeoutAction);
        Assert.True(f.Update.SeenReply);
        Assert.NotEqual(TcpTrackFlags.None, f.State.LastFlags & TcpTrackFlags.SimultaneousOpen);

        Assert.Equal(TcpVerdict.Accept, f.Orig(C, S + 1, Syn | Ack, 64240));
        f.Expect(TcpConntrackState.SynRecv, 60);

        // The server's own SYN/ACK crosses; the table cannot place it, so it passes untouched.
        Assert.Equal(TcpVerdict.Ignore, f.Reply(S, C + 1, Syn | Ack, 65160));
        f.ExpectRejected(TcpConntrackState.SynRecv, TcpInvalidReason.OutOfSync);

        // An ACK from the reply side completes a simultaneous open (it would not complete a normal one).
        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 1, Ack, 65160));
        f.Expect(TcpConntrackState.Established, 432_000);
        Assert.True(f.Update.BecameAssured);
    }

    [Fact]
    public void Reply_ack_completes_only_a_simultaneous_open()
    {
        var f = new Flow();
        Assert.True(f.Start(C, Syn, 64240));
        f.Reply(S, C + 1, Syn | Ack, 65160);
        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 1, Ack, 65160));
        f.Expect(TcpConntrackState.SynRecv, 60);
    }

    [Fact]
    public void Mid_stream_pickup_with_loose()
    {
        var f = new Flow();
        Assert.True(f.Start(C, Ack | Psh, 500, length: 100, ack: S));
        // No reply seen yet: capped to the unacknowledged timeout.
        f.Expect(TcpConntrackState.Established, 300);
        Assert.False(f.Update.Assured);
        Assert.Equal(TcpTrackFlags.BeLiberal, f.State.Original.Flags & TcpTrackFlags.BeLiberal);
        Assert.Equal(TcpTrackFlags.BeLiberal, f.State.Reply.Flags & TcpTrackFlags.BeLiberal);

        Assert.Equal(TcpVerdict.Accept, f.Reply(S, C + 100, Ack, 600));
        f.Expect(TcpConntrackState.Established, 300);
        Assert.True(f.Update.SeenReply);
        Assert.False(f.Update.Assured);

        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 100, S, Ack, 500));
        f.Expect(TcpConntrackState.Established, 432_000);
        Assert.True(f.Update.BecameAssured);

        // Picked-up connections stay liberal: the scale factors were never seen.
        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 100 + 10_000_000, S, Ack, 500));
    }

    [Fact]
    public void Mid_stream_pickup_is_refused_without_loose()
    {
        var f = new Flow();
        f.Settings.Loose = false;
        Assert.False(f.Start(C, Ack | Psh, 500, length: 100, ack: S));
        Assert.Equal(TcpInvalidReason.PickupDisabled, f.Update.Reason);

        // A SYN still starts a connection.
        Assert.True(f.Start(C, Syn, 500));
    }

    [Theory]
    [InlineData(Syn | Ack)]
    [InlineData(Fin | Ack)]
    [InlineData(Rst)]
    [InlineData(Rst | Ack)]
    public void Segments_that_cannot_open_a_connection_are_refused(TcpSegmentFlags flags)
    {
        var f = new Flow();
        Assert.False(f.Start(C, flags, 500, ack: S));
        Assert.Equal(TcpInvalidReason.InvalidTransition, f.Update.Reason);
    }

    [Theory]
    [InlineData(Syn | Fin)]
    [InlineData(Syn | Rst)]
    [InlineData(None)]
    [InlineData(Fin)]
    [InlineData(Psh)]
    [InlineData(Fin | Psh | Urg)]
    [InlineData(Syn | Fin | Ack)]
    [InlineData(Rst | Fin | Ack)]
    public void Invalid_flag_combinations_are_invalid(TcpSegmentFlags flags)
    {
        Assert.False(TcpTracker.HasValidFlags(flags));

        var fresh = new Flow();
        Assert.False(fresh.Start(C, flags, 500));
        Assert.Equal(TcpInvalidReason.BadFlags, fresh.Update.Reason);

        var f = Established();
        TcpTrackState before = f.State;
        Assert.Equal(TcpVerdict.Invalid, f.Orig(C + 1, S + 1, flags, 1000));
        f.ExpectRejected(TcpConntrackState.Established, TcpInvalidReason.BadFlags);
        Assert.Equal(before, f.State);
    }

    [Theory]
    [InlineData(Syn | Ece | Cwr)]
    [InlineData(Syn | Urg)]
    [InlineData(Ack | Psh | Urg | Ece)]
    [InlineData(Fin | Ack | Psh | Urg)]
    [InlineData(Rst | Ack | Cwr)]
    public void Valid_flag_combinations_pass_the_flag_check(TcpSegmentFlags flags)
    {
        Assert.True(TcpTracker.HasValidFlags(flags));
    }

    [Fact]
    public void Invalid_transition_leaves_the_state_alone()
    {
        var f = new Flow();
        Assert.True(f.Start(C, Syn, 64240));
        // The client cannot send a FIN before the server answered.
        Assert.Equal(TcpVerdict.Invalid, f.Orig(C + 1, 0, Fin | Ack, 64240));
        f.ExpectRejected(TcpConntrackState.SynSent, TcpInvalidReason.InvalidTransition);
    }

    [Fact]
    public void Receiver_seq_offset_shifts_acknowledgments_back()
    {
        // The client sends a 20-byte PORT command; the engine rewrites it 3 bytes longer, so the server
        // acknowledges C+1+23. The tracker saw only 20 bytes.
        var withOffset = Established(ClientSynOptions, ServerSynOptions);
        Assert.Equal(TcpVerdict.Accept, withOffset.Orig(C + 1, S + 1, Ack | Psh, 1000, length: 20));
        withOffset.Expect(TcpConntrackState.Established, 300);
        Assert.Equal(TcpVerdict.Accept, withOffset.Reply(S + 1, C + 1 + 23, Ack, 65160, offset: 3));
        // The shifted ack covers exactly what was sent: nothing is unacknowledged any more.
        withOffset.Expect(TcpConntrackState.Established, 432_000);
        Assert.Equal(C + 21, withOffset.State.Reply.MaxAck);

        var without = Established(ClientSynOptions, ServerSynOptions);
        Assert.Equal(TcpVerdict.Accept, without.Orig(C + 1, S + 1, Ack | Psh, 1000, length: 20));
        Assert.Equal(TcpVerdict.Invalid, without.Reply(S + 1, C + 1 + 23, Ack, 65160));
        without.ExpectRejected(TcpConntrackState.Established, TcpInvalidReason.AckOver);
    }

    [Fact]
    public void Receiver_seq_offset_also_applies_to_sack_edges()
    {
        var f = Established(ClientSynOptions, ServerSynOptions);
        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 1, S + 1, Ack | Psh, 1000, length: 3000));
        // The server SACKs the rewritten numbers (+3); without the offset the edge would be past C+3001.
        byte[] sack = Opt.Of(Opt.Nop, Opt.Nop, Opt.Sack((C + 2001 + 3, C + 3001 + 3)));
        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 1001 + 3, Ack, 65160, options: sack, offset: 3));
        Assert.Equal(TcpVerdict.Invalid, f.Reply(S + 1, C + 1001 + 3, Ack, 65160, options: sack));
        Assert.Equal(TcpInvalidReason.AckOver, f.Update.Reason);
    }

    [Fact]
    public void Fourth_copy_of_the_same_segment_lowers_the_timeout_to_the_retrans_timeout()
    {
        // Make the retransmission timeout distinguishable from the unacknowledged one (both 300 by default).
        // Set after the handshake: a lower retrans timeout would also cap SYN_SENT, whose last window is still 0.
        var f = Established();
        f.Settings.RetransTimeout = 100;

        // First transmission and two retransmissions: the unacknowledged-data cap applies.
        for (int copy = 1; copy <= 3; copy++)
        {
            Assert.Equal(TcpVerdict.Accept, f.Orig(C + 1, S + 1, Ack | Psh, 1000, length: 100));
            f.Expect(TcpConntrackState.Established, 300);
            Assert.Equal(copy - 1, f.State.Retrans);
        }

        // Third retransmission (fourth copy) reaches MaxRetrans = 3.
        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 1, S + 1, Ack | Psh, 1000, length: 100));
        f.Expect(TcpConntrackState.Established, 100);
        Assert.Equal(3, f.State.Retrans);

        // An acknowledgment from the peer is a different segment: the count restarts.
        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 101, Ack, 65160));
        f.Expect(TcpConntrackState.Established, 432_000);
        Assert.Equal(0, f.State.Retrans);
    }

    [Fact]
    public void Lower_retrans_timeout_caps_syn_sent_too()
    {
        // Nothing has set the last window yet, which counts as a zero window.
        var f = new Flow();
        f.Settings.RetransTimeout = 100;
        Assert.True(f.Start(C, Syn, 64240));
        f.Expect(TcpConntrackState.SynSent, 100);
    }

    [Fact]
    public void Zero_window_lowers_the_timeout_to_the_retrans_timeout()
    {
        var f = Established();
        f.Settings.RetransTimeout = 100;
        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 1, Ack, 0));
        f.Expect(TcpConntrackState.Established, 100);
    }

    [Fact]
    public void Syn_on_established_is_ignored_and_a_matching_syn_ack_resynchronises()
    {
        var f = Established();
        // The client restarted and opens again on the same ports; we still think the old one is up.
        Assert.Equal(TcpVerdict.Ignore, f.Orig(90_000, 0, Syn, 29200, options: Opt.Of(Opt.SackPermitted, Opt.Nop, Opt.WindowScale(5))));
        f.ExpectRejected(TcpConntrackState.Established, TcpInvalidReason.OutOfSync);

        // The server (which also lost the old connection) answers the new SYN: follow the endpoints.
        Assert.Equal(TcpVerdict.Accept, f.Reply(70_000, 90_001, Syn | Ack, 65160, options: Opt.Of(Opt.SackPermitted, Opt.Nop, Opt.WindowScale(2))));
        f.Expect(TcpConntrackState.SynRecv, 60);
        Assert.Equal(90_001u, f.State.Original.End);
        Assert.Equal(5, f.State.Original.Scale);
        Assert.Equal(2, f.State.Reply.Scale);

        Assert.Equal(TcpVerdict.Accept, f.Orig(90_001, 70_001, Ack, 1000));
        f.Expect(TcpConntrackState.Established, 432_000);
    }

    [Fact]
    public void Challenge_ack_in_last_ack_is_not_taken_for_the_final_ack()
    {
        var f = Established();
        f.Orig(C + 1, S + 1, Fin | Ack, 1000);
        Assert.Equal(TcpVerdict.Accept, f.Reply(S + 1, C + 2, Fin | Ack, 65160));
        f.Expect(TcpConntrackState.LastAck, 30);

        Assert.Equal(TcpVerdict.Ignore, f.Orig(90_000, 0, Syn, 29200));
        f.ExpectRejected(TcpConntrackState.LastAck, TcpInvalidReason.OutOfSync);

        Assert.Equal(TcpVerdict.Ignore, f.Reply(S + 2, C + 2, Ack, 65160));
        f.ExpectRejected(TcpConntrackState.LastAck, TcpInvalidReason.ChallengeAck);

        // The real last ACK still closes.
        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 2, S + 2, Ack, 1000));
        f.Expect(TcpConntrackState.TimeWait, 120);
    }

    [Fact]
    public void Out_of_window_fin_then_rst_from_the_other_side_asks_to_shorten_the_timeout()
    {
        var f = Established();
        Assert.Equal(TcpVerdict.Invalid, f.Orig(C + 1 + 10_000_000, S + 1, Fin | Ack, 1000));
        f.ExpectRejected(TcpConntrackState.Established, TcpInvalidReason.SeqOver);

        Assert.Equal(TcpVerdict.Invalid, f.Reply(S + 1 + 10_000_000, 0, Rst, 0));
        Assert.Equal(TcpInvalidReason.SeqOver, f.Update.Reason);
        Assert.Equal(TcpTimeoutAction.Shorten, f.Update.TimeoutAction);
        Assert.Equal(300, f.Update.TimeoutSeconds);
        Assert.Equal(TcpConntrackState.Established, f.State.State);
    }

    [Fact]
    public void Corrupt_state_value_is_reported_not_thrown()
    {
        var f = Established();
        f.State.State = (TcpConntrackState)42;
        Assert.Equal(TcpVerdict.Invalid, f.Orig(C + 1, S + 1, Ack, 1000));
        Assert.Equal(TcpInvalidReason.CorruptState, f.Update.Reason);
    }

    [Fact]
    public void Settings_defaults_match_the_kernel()
    {
        var s = new TcpTrackerSettings();
        Assert.False(s.BeLiberal);
        Assert.True(s.Loose);
        Assert.False(s.IgnoreInvalidRst);
        Assert.Equal(3, s.MaxRetrans);
        Assert.Equal(120, s.TimeoutFor(TcpConntrackState.SynSent));
        Assert.Equal(60, s.TimeoutFor(TcpConntrackState.SynRecv));
        Assert.Equal(432_000, s.TimeoutFor(TcpConntrackState.Established));
        Assert.Equal(120, s.TimeoutFor(TcpConntrackState.FinWait));
        Assert.Equal(60, s.TimeoutFor(TcpConntrackState.CloseWait));
        Assert.Equal(30, s.TimeoutFor(TcpConntrackState.LastAck));
        Assert.Equal(120, s.TimeoutFor(TcpConntrackState.TimeWait));
        Assert.Equal(10, s.TimeoutFor(TcpConntrackState.Close));
        Assert.Equal(120, s.TimeoutFor(TcpConntrackState.SynSent2));
        Assert.Equal(300, s.RetransTimeout);
        Assert.Equal(300, s.UnacknowledgedTimeout);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.CloseTimeout = -1);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.MaxRetrans = 256);
    }

    [Fact]
    public void Sequence_comparisons_wrap()
    {
        Assert.True(TcpSequence.Before(0xFFFF_FFF0, 0x10));
        Assert.True(TcpSequence.After(0x10, 0xFFFF_FFF0));
        Assert.False(TcpSequence.Before(5, 5));
        Assert.False(TcpSequence.After(5, 5));
    }

    [Fact]
    public void Handshake_across_sequence_wrap()
    {
        var f = new Flow();
        const uint c = 0xFFFF_FFFF;
        const uint s = 0xFFFF_FF00;
        Assert.True(f.Start(c, Syn, 64240));
        Assert.Equal(TcpVerdict.Accept, f.Reply(s, 0, Syn | Ack, 65160));
        f.Expect(TcpConntrackState.SynRecv, 60);
        Assert.Equal(TcpVerdict.Accept, f.Orig(0, s + 1, Ack | Psh, 1000, length: 500));
        f.Expect(TcpConntrackState.Established, 300);
        Assert.Equal(TcpVerdict.Accept, f.Reply(s + 1, 500, Ack, 65160, length: 0x200));
        f.Expect(TcpConntrackState.Established, 300);
        Assert.Equal(TcpVerdict.Accept, f.Orig(500, unchecked(s + 1 + 0x200), Ack, 1000));
        f.Expect(TcpConntrackState.Established, 432_000);
    }
}
