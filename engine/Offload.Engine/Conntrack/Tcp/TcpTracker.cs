using static Offload.Engine.Conntrack.Tcp.TcpSequence;

namespace Offload.Engine.Conntrack.Tcp;

/// <summary>
/// Stateful TCP tracking as a middlebox does it: a state machine driven by the control bits of each
/// segment, plus window tracking that checks each segment's sequence and acknowledgment numbers against
/// what the two ends have sent and advertised (after van Rooij, "Real Stateful TCP Packet Filtering in
/// IP Filter", with the kernel's RFC 793 relaxations). Behaviour follows Linux's conntrack TCP tracker.
/// </summary>
/// <remarks>
/// Pure functions over a <see cref="TcpTrackState"/> the caller owns; no allocation, no clock: timeouts
/// come back as seconds for the caller to apply. Not thread-safe per connection: serialise calls for one entry.
/// </remarks>
public static class TcpTracker
{
    // Table outcomes beyond the ten real states: the segment is invalid, or may be valid but cannot be placed.
    private const byte Iv = 10;
    private const byte Ig = 11;

    private const byte Ss = (byte)TcpConntrackState.SynSent;
    private const byte Sr = (byte)TcpConntrackState.SynRecv;
    private const byte Es = (byte)TcpConntrackState.Established;
    private const byte Fw = (byte)TcpConntrackState.FinWait;
    private const byte Cw = (byte)TcpConntrackState.CloseWait;
    private const byte La = (byte)TcpConntrackState.LastAck;
    private const byte Tw = (byte)TcpConntrackState.TimeWait;
    private const byte Cl = (byte)TcpConntrackState.Close;
    private const byte S2 = (byte)TcpConntrackState.SynSent2;

    private const int StateCount = 10;
    private const int KindCount = 6;

    // An acknowledgment may trail the other side's highest sequence by this much (or by the sender's
    // largest window, if larger) before it counts as overly delayed.
    private const uint MinAckSlack = 66_000;

    // Next state by [direction][segment kind][current state]. Rows follow TcpSegmentKind
    // (None, Syn, SynAck, Fin, Ack, Rst); columns follow TcpConntrackState
    // (None, SynSent, SynRecv, Established, FinWait, CloseWait, LastAck, TimeWait, Close, SynSent2).
    private static ReadOnlySpan<byte> Transitions =>
    [
        // Original direction (client to server).
        Iv, Iv, Iv, Iv, Iv, Iv, Iv, Iv, Iv, Iv, // no control bit worth a transition
        Ss, Ss, Ig, Ig, Ig, Ig, Ig, Ss, Ss, S2, // SYN: opens, retransmits, or reopens after TIME_WAIT/CLOSE
        Iv, Iv, Sr, Iv, Iv, Iv, Iv, Iv, Iv, Sr, // SYN/ACK: only the simultaneous-open answer
        Iv, Iv, Fw, Fw, La, La, La, Tw, Cl, Iv, // FIN: not before the handshake answer
        Es, Iv, Es, Es, Cw, Cw, Tw, Tw, Cl, Iv, // ACK: completes the handshake, answers a FIN, or picks up
        Iv, Cl, Cl, Cl, Cl, Cl, Cl, Cl, Cl, Cl, // RST

        // Reply direction (server to client).
        Iv, Iv, Iv, Iv, Iv, Iv, Iv, Iv, Iv, Iv,
        Iv, S2, Iv, Iv, Iv, Iv, Iv, Ss, Iv, S2, // SYN: simultaneous open, or reopen with roles swapped
        Iv, Sr, Ig, Ig, Ig, Ig, Ig, Ig, Ig, Sr, // SYN/ACK: the normal answer; late copies are ignored
        Iv, Iv, Fw, Fw, La, La, La, Tw, Cl, Iv,
        Iv, Ig, Sr, Es, Cw, Cw, Tw, Tw, Cl, Ig, // ACK before our SYN/ACK may belong to a half-open connection
        Iv, Cl, Cl, Cl, Cl, Cl, Cl, Cl, Cl, Cl,
    ];

    /// <summary>
    /// Starts tracking from the first segment of a connection (original direction) and runs that segment
    /// through the state machine, as for any later one.
    /// </summary>
    /// <param name="state">Overwritten with the new connection's state on success; unspecified on failure.</param>
    /// <param name="segment">The segment that has no entry yet.</param>
    /// <param name="settings">Switches and timeouts.</param>
    /// <param name="update">The new state and timeout; on failure, the <see cref="TcpUpdate.Reason"/>.</param>
    /// <returns>
    /// True when an entry should be created: a plain SYN, or with <see cref="TcpTrackerSettings.Loose"/> an
    /// ACK of a connection already under way (picked up with guessed windows and liberal checking). False
    /// otherwise; count the segment as invalid.
    /// </returns>
    public static bool TryStart(ref TcpTrackState state, in TcpSegment segment, TcpTrackerSettings settings, out TcpUpdate update)
    {
        ArgumentNullException.ThrowIfNull(settings);
        update = default;

        if (!HasValidFlags(segment.Flags))
        {
            update.Reason = TcpInvalidReason.BadFlags;
            return false;
        }

        byte first = Next(TcpDirection.Original, Classify(segment.Flags), TcpConntrackState.None);
        if (first == Ss)
        {
            state = default;
            ref TcpDirectionWindow client = ref state.Original;
            client.End = segment.End;
            client.MaxWindow = Math.Max(segment.Window, 1u);
            client.MaxEnd = client.End;
            ApplyHandshakeOptions(ref client, segment.Options);
        }
        else if (first == Iv)
        {
            update.Reason = TcpInvalidReason.InvalidTransition;
            return false;
        }
        else if (!settings.Loose)
        {
            update.Reason = TcpInvalidReason.PickupDisabled;
            return false;
        }
        else
        {
            // Mid-stream: the handshake (and so the window scales) was missed. Guess a window from this
            // segment, assume SACK, and never reject on window grounds for the life of the entry.
            state = default;
            ref TcpDirectionWindow sender = ref state.Original;
            sender.End = segment.End;
            sender.MaxWindow = Math.Max(segment.Window, 1u);
            sender.MaxEnd = sender.End + sender.MaxWindow;
            state.Original.Flags = TcpTrackFlags.SackPermitted | TcpTrackFlags.BeLiberal;
            state.Reply.Flags = TcpTrackFlags.SackPermitted | TcpTrackFlags.BeLiberal;
        }

        return Run(ref state, in segment, TcpDirection.Original, 0, settings, ref update) == TcpVerdict.Accept;
    }

    /// <summary>Tracks one segment of an existing connection.</summary>
    /// <param name="state">The connection's state, updated in place.</param>
    /// <param name="segment">The segment, as it arrived (before this engine rewrites it).</param>
    /// <param name="isReply">The segment travels in the reply direction.</param>
    /// <param name="receiverSeqOffset">
    /// The sequence adjustment (seqadj) applied to the other direction's segments, that is, how far the
    /// numbers this segment acknowledges are shifted from what the tracker saw. It is subtracted from the
    /// acknowledgment and SACK edges before the window check. Pass the offset that applies to (ack - 1)
    /// in the other direction's adjustment record, or 0 when the connection is not being rewritten.
    /// </param>
    /// <param name="settings">Switches and timeouts.</param>
    /// <param name="update">New state, timeout action, assured/seen-reply, reason for a rejection.</param>
    /// <returns>The verdict; see <see cref="TcpVerdict"/>.</returns>
    public static TcpVerdict Process(
        ref TcpTrackState state,
        in TcpSegment segment,
        bool isReply,
        int receiverSeqOffset,
        TcpTrackerSettings settings,
        out TcpUpdate update)
    {
        ArgumentNullException.ThrowIfNull(settings);
        update = default;
        return Run(ref state, in segment, isReply ? TcpDirection.Reply : TcpDirection.Original, receiverSeqOffset, settings, ref update);
    }

    /// <summary>
    /// True when the control bits form a combination a real TCP sends (PSH, ECE and CWR may be added to any):
    /// SYN, SYN+URG, SYN+ACK, RST, RST+ACK, FIN+ACK, FIN+ACK+URG, ACK, ACK+URG.
    /// </summary>
    public static bool HasValidFlags(TcpSegmentFlags flags)
    {
        const TcpSegmentFlags Significant =
            TcpSegmentFlags.Fin | TcpSegmentFlags.Syn | TcpSegmentFlags.Rst | TcpSegmentFlags.Ack | TcpSegmentFlags.Urg;
        return (flags & Significant) switch
        {
            TcpSegmentFlags.Syn => true,
            TcpSegmentFlags.Syn | TcpSegmentFlags.Urg => true,
            TcpSegmentFlags.Syn | TcpSegmentFlags.Ack => true,
            TcpSegmentFlags.Rst => true,
            TcpSegmentFlags.Rst | TcpSegmentFlags.Ack => true,
            TcpSegmentFlags.Fin | TcpSegmentFlags.Ack => true,
            TcpSegmentFlags.Fin | TcpSegmentFlags.Ack | TcpSegmentFlags.Urg => true,
            TcpSegmentFlags.Ack => true,
            TcpSegmentFlags.Ack | TcpSegmentFlags.Urg => true,
            _ => false,
        };
    }

    /// <summary>Classifies a segment for the state machine: RST first, then SYN (with or without ACK), FIN, ACK.</summary>
    public static TcpSegmentKind Classify(TcpSegmentFlags flags)
    {
        if ((flags & TcpSegmentFlags.Rst) != 0)
        {
            return TcpSegmentKind.Rst;
        }

        if ((flags & TcpSegmentFlags.Syn) != 0)
        {
            return (flags & TcpSegmentFlags.Ack) != 0 ? TcpSegmentKind.SynAck : TcpSegmentKind.Syn;
        }

        if ((flags & TcpSegmentFlags.Fin) != 0)
        {
            return TcpSegmentKind.Fin;
        }

        return (flags & TcpSegmentFlags.Ack) != 0 ? TcpSegmentKind.Ack : TcpSegmentKind.None;
    }

    private static TcpVerdict Run(
        ref TcpTrackState st,
        in TcpSegment seg,
        TcpDirection dir,
        int receiverSeqOffset,
        TcpTrackerSettings s,
        ref TcpUpdate u)
    {
        u.OldState = st.State;
        TcpVerdict verdict = Track(ref st, in seg, dir, receiverSeqOffset, s, ref u);

        // Any reply the tracker did not reject proves the other end exists, even one it could not place.
        if (dir == TcpDirection.Reply && verdict is TcpVerdict.Accept or TcpVerdict.Ignore)
        {
            st.Status |= TcpTrackStatus.SeenReply;
        }

        u.NewState = st.State;
        u.SeenReply = st.SeenReply;
        u.Assured = st.Assured;
        return verdict;
    }

    private static TcpVerdict Track(
        ref TcpTrackState st,
        in TcpSegment seg,
        TcpDirection dir,
        int receiverSeqOffset,
        TcpTrackerSettings s,
        ref TcpUpdate u)
    {
        if (!HasValidFlags(seg.Flags))
        {
            return Reject(ref u, TcpVerdict.Invalid, TcpInvalidReason.BadFlags);
        }

        TcpConntrackState old = st.State;
        if (old > TcpConntrackState.SynSent2)
        {
            return Reject(ref u, TcpVerdict.Invalid, TcpInvalidReason.CorruptState);
        }

        TcpSegmentKind kind = Classify(seg.Flags);
        byte next = Next(dir, kind, old);
        bool checkWindow = true;

        switch (next)
        {
            case Ss when old < TcpConntrackState.TimeWait:
                break;

            case Ss:
            case Ig:
                // A SYN after a FIN exchange or after this same side's RST starts a new connection on the
                // same ports (RFC 1122 lets TIME_WAIT be cut short): the old entry must go.
                if (next == Ss && MayReopen(ref st, dir))
                {
                    return TcpVerdict.Reopen;
                }

                if (!TryResync(ref st, in seg, dir, kind))
                {
                    return RecordOutOfSync(ref st, in seg, dir, kind, old, ref u);
                }

                // The endpoints agreed on a connection we had ignored the SYN of: follow them.
                old = TcpConntrackState.SynSent;
                next = Sr;
                break;

            case Iv:
                return Reject(ref u, TcpVerdict.Invalid, TcpInvalidReason.InvalidTransition);

            case Tw:
                // In LAST_ACK, a SYN we let through may draw a challenge ACK (RFC 5961) that would
                // otherwise look like the final ACK of the close.
                if (old == TcpConntrackState.LastAck
                    && kind == TcpSegmentKind.Ack
                    && st.LastDir != dir
                    && st.LastIndex == TcpSegmentKind.Syn
                    && (st.LastFlags & TcpTrackFlags.ChallengeAckExpected) != 0)
                {
                    st.LastFlags &= ~TcpTrackFlags.ChallengeAckExpected;
                    return Reject(ref u, TcpVerdict.Ignore, TcpInvalidReason.ChallengeAck);
                }

                break;

            case S2:
                // The table alone cannot tell the simultaneous-open handshake apart later on.
                st.LastFlags |= TcpTrackFlags.SimultaneousOpen;
                break;

            case Sr:
                if (dir == TcpDirection.Reply
                    && kind == TcpSegmentKind.Ack
                    && (st.LastFlags & TcpTrackFlags.SimultaneousOpen) != 0)
                {
                    next = Es;
                }

                break;

            case Cl when kind == TcpSegmentKind.Rst:
                switch (CheckReset(ref st, in seg, dir, old, s, out bool keepState))
                {
                    case ResetCheck.Invalid:
                        return Reject(ref u, TcpVerdict.Invalid, TcpInvalidReason.InvalidRst);
                    case ResetCheck.SkipWindow:
                        checkWindow = false;
                        break;
                }

                if (keepState)
                {
                    next = (byte)old;
                }

                break;
        }

        if (checkWindow)
        {
            TcpVerdict window = CheckWindow(ref st, in seg, dir, kind, receiverSeqOffset, s, out TcpInvalidReason reason);
            if (window == TcpVerdict.Ignore)
            {
                return Reject(ref u, TcpVerdict.Ignore, reason);
            }

            if (window == TcpVerdict.Invalid)
            {
                OnInvalid(ref st, dir, kind, s, ref u);
                return Reject(ref u, TcpVerdict.Invalid, reason);
            }
        }

        st.LastIndex = kind;
        st.LastDir = dir;

        var newState = (TcpConntrackState)next;
        st.State = newState;
        if (old != newState && newState == TcpConntrackState.FinWait)
        {
            Window(ref st, dir).Flags |= TcpTrackFlags.CloseInit;
        }

        int timeout = ChooseTimeout(ref st, kind, newState, s);
        u.TimeoutAction = TcpTimeoutAction.Set;
        u.TimeoutSeconds = timeout;

        if (!st.SeenReply)
        {
            if (kind == TcpSegmentKind.Rst)
            {
                // Refused before it began (RST answering the SYN): nothing worth keeping.
                u.Kill = true;
                u.TimeoutAction = TcpTimeoutAction.Keep;
                u.TimeoutSeconds = 0;
                return TcpVerdict.Accept;
            }

            if (kind == TcpSegmentKind.Syn && old == TcpConntrackState.SynSent)
            {
                // A retransmitted SYN must not extend the entry, or a client (or NAT in front of it)
                // reusing the port could keep an unanswered entry alive for ever.
                u.TimeoutAction = TcpTimeoutAction.Keep;
                u.TimeoutSeconds = 0;
                return TcpVerdict.Accept;
            }

            // A picked-up connection with no answer yet does not deserve the ESTABLISHED timeout.
            if (newState == TcpConntrackState.Established && timeout > s.UnacknowledgedTimeout)
            {
                u.TimeoutSeconds = s.UnacknowledgedTimeout;
            }
        }
        else if (!st.Assured
            && old is TcpConntrackState.SynRecv or TcpConntrackState.Established
            && newState == TcpConntrackState.Established)
        {
            st.Status |= TcpTrackStatus.Assured;
            u.BecameAssured = true;
        }

        return TcpVerdict.Accept;
    }

    private static int ChooseTimeout(ref TcpTrackState st, TcpSegmentKind kind, TcpConntrackState newState, TcpTrackerSettings s)
    {
        int stateTimeout = s.TimeoutFor(newState);
        if (st.Retrans >= s.MaxRetrans && stateTimeout > s.RetransTimeout)
        {
            return s.RetransTimeout;
        }

        if (kind == TcpSegmentKind.Rst)
        {
            return s.CloseTimeout;
        }

        if (((st.Original.Flags | st.Reply.Flags) & TcpTrackFlags.DataUnacknowledged) != 0
            && stateTimeout > s.UnacknowledgedTimeout)
        {
            return s.UnacknowledgedTimeout;
        }

        // A zero window seen last means the peer may stall: treat it like retransmissions.
        if (st.LastWindow == 0 && stateTimeout > s.RetransTimeout)
        {
            return s.RetransTimeout;
        }

        return stateTimeout;
    }

    private static bool MayReopen(ref TcpTrackState st, TcpDirection dir)
    {
        TcpTrackFlags both = st.Original.Flags | st.Reply.Flags;
        return (both & TcpTrackFlags.CloseInit) != 0
            || (st.LastDir == dir && st.LastIndex == TcpSegmentKind.Rst);
    }

    // A SYN/ACK that acknowledges a SYN we ignored earlier shows both ends are in sync and we are not:
    // rebuild the SYN sender's window from what was noted about that SYN, and forget the other side's.
    private static bool TryResync(ref TcpTrackState st, in TcpSegment seg, TcpDirection dir, TcpSegmentKind kind)
    {
        if (kind != TcpSegmentKind.SynAck
            || st.LastIndex != TcpSegmentKind.Syn
            || st.LastDir == dir
            || seg.Ack != st.LastEnd)
        {
            return false;
        }

        ref TcpDirectionWindow synSender = ref Window(ref st, st.LastDir);
        synSender.End = st.LastEnd;
        synSender.MaxEnd = st.LastEnd;
        synSender.MaxWindow = st.LastWindow == 0 ? 1u : st.LastWindow;
        synSender.Scale = st.LastWindowScale;
        st.LastFlags &= ~TcpTrackFlags.ChallengeAckExpected;
        synSender.Flags = st.LastFlags;

        ref TcpDirectionWindow answerer = ref Window(ref st, dir);
        answerer.End = 0;
        answerer.MaxEnd = 0;
        answerer.MaxWindow = 0;
        answerer.MaxAck = 0;
        answerer.Scale = 0;
        answerer.Flags &= TcpTrackFlags.BeLiberal;
        return true;
    }

    // The segment may be the endpoints' truth and our entry stale (a SYN in ORIGINAL, a SYN/ACK in REPLY,
    // an ACK in REPLY after only a SYN). Let it pass untouched but note it, so the answer can be recognised.
    private static TcpVerdict RecordOutOfSync(
        ref TcpTrackState st,
        in TcpSegment seg,
        TcpDirection dir,
        TcpSegmentKind kind,
        TcpConntrackState old,
        ref TcpUpdate u)
    {
        st.LastIndex = kind;
        st.LastDir = dir;
        st.LastSeq = seg.Seq;
        st.LastEnd = seg.End;
        st.LastWindow = seg.Window;

        if (kind == TcpSegmentKind.Syn && dir == TcpDirection.Original)
        {
            TcpHandshakeOptions options = TcpOptions.ParseHandshake(seg.Options);
            st.LastFlags = TcpTrackFlags.None;
            st.LastWindowScale = 0;
            if (options.HasWindowScale)
            {
                st.LastFlags |= TcpTrackFlags.WindowScale;
                st.LastWindowScale = options.WindowScale;
            }

            if (options.SackPermitted)
            {
                st.LastFlags |= TcpTrackFlags.SackPermitted;
            }

            if (old == TcpConntrackState.LastAck)
            {
                st.LastFlags |= TcpTrackFlags.ChallengeAckExpected;
            }
        }

        // An ACK answering our SYN may be a challenge ACK; a RST with this number may follow it.
        if (old == TcpConntrackState.SynSent && kind == TcpSegmentKind.Ack && dir == TcpDirection.Reply)
        {
            st.LastAck = seg.Ack;
        }

        return Reject(ref u, TcpVerdict.Ignore, TcpInvalidReason.OutOfSync);
    }

    private enum ResetCheck : byte
    {
        CheckWindow,
        SkipWindow,
        Invalid,
    }

    // RST handling (RFC 5961 spirit): a RST must carry the exact sequence the peer expects to close an
    // assured connection; near misses keep the state so a challenge ACK can sort it out.
    private static ResetCheck CheckReset(
        ref TcpTrackState st,
        in TcpSegment seg,
        TcpDirection dir,
        TcpConntrackState old,
        TcpTrackerSettings s,
        out bool keepState)
    {
        keepState = false;

        // Already closing: the tuple may have been reused and the window data be stale, so do not judge.
        if (old is TcpConntrackState.FinWait or TcpConntrackState.CloseWait or TcpConntrackState.LastAck
            or TcpConntrackState.TimeWait or TcpConntrackState.Close)
        {
            return ResetCheck.SkipWindow;
        }

        ref TcpDirectionWindow peer = ref Window(ref st, Other(dir));
        // After a SYN we let through, the peer's highest ACK may belong to the old connection.
        if ((peer.Flags & TcpTrackFlags.MaxAckSet) != 0 && st.LastIndex != TcpSegmentKind.Syn)
        {
            uint seq = seg.Seq;
            bool established = old == TcpConntrackState.Established && st.Assured;

            // Most likely the answer to a SYN we let through.
            if (seq == 0 && !established)
            {
                return ResetCheck.CheckWindow;
            }

            if (Before(seq, peer.MaxAck) && !s.IgnoreInvalidRst)
            {
                return ResetCheck.Invalid;
            }

            if (!established || seq == peer.MaxAck)
            {
                return ResetCheck.CheckWindow;
            }

            // A RST right behind this side's own last data segment is part of the same burst.
            if (st.LastIndex == TcpSegmentKind.Ack && st.LastDir == dir && seq == st.LastEnd)
            {
                return ResetCheck.CheckWindow;
            }

            keepState = true;
        }

        // A RST answering a SYN (seen by a live connection) or an ACK (on a half-open entry) that we let
        // through without tracking: its acknowledgment may cover numbers we never saw, so skip the check.
        if (((st.SeenReply && st.LastIndex == TcpSegmentKind.Syn)
                || (!st.Assured && st.LastIndex == TcpSegmentKind.Ack))
            && seg.Ack == st.LastEnd)
        {
            return ResetCheck.SkipWindow;
        }

        // A RST following the challenge ACK we let through in SYN_SENT.
        if (old == TcpConntrackState.SynSent
            && st.LastIndex == TcpSegmentKind.Ack
            && st.LastDir == TcpDirection.Reply
            && seg.Seq == st.LastAck)
        {
            return ResetCheck.SkipWindow;
        }

        return ResetCheck.CheckWindow;
    }

    // Window tracking. With sender S and receiver R of this segment:
    //   S.End    = highest seq + len S has sent
    //   S.MaxEnd = highest (ack or SACK edge) + window R has advertised: S may not send past it
    //   S.MaxWin = largest window S has advertised (plus SACKed data beyond its ack)
    // and the segment must satisfy
    //   seq <= S.MaxEnd                         (not beyond R's window)
    //   seq + len >= S.End - R.MaxWin           (not wholly below R's window)
    //   ack <= R.End                            (acks nothing R has not sent)
    //   ack >= R.End - max(S.MaxWin, 66000)     (not an ancient ack)
    private static TcpVerdict CheckWindow(
        ref TcpTrackState st,
        in TcpSegment seg,
        TcpDirection dir,
        TcpSegmentKind kind,
        int receiverSeqOffset,
        TcpTrackerSettings s,
        out TcpInvalidReason reason)
    {
        reason = TcpInvalidReason.None;
        ref TcpDirectionWindow sender = ref Window(ref st, dir);
        ref TcpDirectionWindow receiver = ref Window(ref st, Other(dir));

        bool syn = (seg.Flags & TcpSegmentFlags.Syn) != 0;
        bool hasAck = (seg.Flags & TcpSegmentFlags.Ack) != 0;
        bool rst = (seg.Flags & TcpSegmentFlags.Rst) != 0;

        uint seq = seg.Seq;
        uint ack = seg.Ack;
        uint sack = ack;
        uint win = seg.Window;
        uint end = seg.End;

        // SACK blocks may acknowledge beyond the cumulative ack; the highest edge is what must be bounded.
        if ((receiver.Flags & TcpTrackFlags.SackPermitted) != 0)
        {
            sack = TcpOptions.HighestSackRightEdge(seg.Options, sack);
        }

        // The numbers this segment acknowledges were shifted by our own rewriting of the other direction.
        ack = unchecked(ack - (uint)receiverSeqOffset);
        sack = unchecked(sack - (uint)receiverSeqOffset);

        if (sender.MaxWindow == 0)
        {
            if (syn)
            {
                InitSender(ref sender, ref receiver, in seg, end, win, dir);
                if (!hasAck)
                {
                    // SYN from the reply side: simultaneous open; nothing to check against yet.
                    return TcpVerdict.Accept;
                }
            }
            else
            {
                // First segment from this side of a picked-up connection: take its numbers as they come.
                sender.End = end;
                uint scaled = win << sender.Scale;
                sender.MaxWindow = scaled == 0 ? 1u : scaled;
                sender.MaxEnd = end + sender.MaxWindow;
                if (receiver.MaxWindow == 0)
                {
                    // Nothing seen the other way either; make the ack bounds pass until it is.
                    receiver.End = sack;
                    receiver.MaxEnd = sack;
                }
                else if (sack == receiver.End + 1)
                {
                    // Answer to a keepalive probe, which reuses the last sequence number minus one.
                    receiver.End++;
                }
            }
        }
        else if (syn
            && After(end, sender.End)
            && st.State is TcpConntrackState.SynSent or TcpConntrackState.SynRecv)
        {
            // A restarted endpoint may send a new SYN (or SYN/ACK) with higher numbers and other options
            // (RFC 793): start this side over, as for its first SYN.
            InitSender(ref sender, ref receiver, in seg, end, win, dir);
            if (dir == TcpDirection.Reply && !hasAck)
            {
                return TcpVerdict.Accept;
            }
        }

        if (!hasAck || (rst && ack == 0))
        {
            // No acknowledgment (or the zero one some stacks put in a RST): treat it as acking everything.
            ack = receiver.End;
            sack = receiver.End;
        }

        if (rst && seq == 0 && st.State == TcpConntrackState.SynSent)
        {
            // RST answering a SYN with sequence 0: place it where the SYN sender expects it.
            seq = sender.End;
            end = sender.End;
        }

        uint ackSlack = Math.Max(sender.MaxWindow, MinAckSlack);

        if (!Before(seq, sender.MaxEnd + 1))
        {
            // Some stacks send a little more than the window allows. If everything else fits, let the
            // segment pass as ignored but remember its end, or the ACK for it would look like an ACK of
            // unseen data and every later segment would fail.
            uint overshot = end - sender.MaxEnd + 1;
            bool ackOk = After(sack, receiver.End - ackSlack - 1);
            bool inReceiverWindow = receiver.MaxWindow != 0 && After(end, sender.End - receiver.MaxWindow - 1);
            if (inReceiverWindow && ackOk && overshot <= receiver.MaxWindow && Before(sack, receiver.End + 1))
            {
                sender.End = end;
                sender.Flags |= TcpTrackFlags.DataUnacknowledged;
                return Fail(ref sender, s, TcpVerdict.Ignore, TcpInvalidReason.WindowOvershoot, out reason);
            }

            return Fail(ref sender, s, TcpVerdict.Invalid, TcpInvalidReason.SeqOver, out reason);
        }

        if (!Before(sack, receiver.End + 1))
        {
            return Fail(ref sender, s, TcpVerdict.Invalid, TcpInvalidReason.AckOver, out reason);
        }

        if (receiver.MaxWindow != 0 && !After(end, sender.End - receiver.MaxWindow - 1))
        {
            return Fail(ref sender, s, TcpVerdict.Ignore, TcpInvalidReason.SeqUnder, out reason);
        }

        if (!After(sack, receiver.End - ackSlack - 1))
        {
            return Fail(ref sender, s, TcpVerdict.Ignore, TcpInvalidReason.AckUnder, out reason);
        }

        // The window field of a SYN is never scaled (RFC 7323).
        if (!syn)
        {
            win <<= sender.Scale;
        }

        uint advertised = win + (sack - ack);
        if (sender.MaxWindow < advertised)
        {
            sender.MaxWindow = advertised;
        }

        if (After(end, sender.End))
        {
            sender.End = end;
            sender.Flags |= TcpTrackFlags.DataUnacknowledged;
        }

        if (hasAck)
        {
            if ((sender.Flags & TcpTrackFlags.MaxAckSet) == 0)
            {
                sender.MaxAck = ack;
                sender.Flags |= TcpTrackFlags.MaxAckSet;
            }
            else if (After(ack, sender.MaxAck))
            {
                sender.MaxAck = ack;
            }
        }

        if (receiver.MaxWindow != 0 && After(end, sender.MaxEnd))
        {
            receiver.MaxWindow += end - sender.MaxEnd;
        }

        if (After(sack + win, receiver.MaxEnd - 1))
        {
            receiver.MaxEnd = sack + win;
            if (win == 0)
            {
                // A zero window still admits a one-byte probe.
                receiver.MaxEnd++;
            }
        }

        if (ack == receiver.End)
        {
            receiver.Flags &= ~TcpTrackFlags.DataUnacknowledged;
        }

        if (kind == TcpSegmentKind.Ack)
        {
            if (st.LastDir == dir
                && st.LastSeq == seq
                && st.LastAck == ack
                && st.LastEnd == end
                && st.LastWindow == seg.Window)
            {
                // Saturate rather than wrap: wrapping would lift the retransmission timeout cap again.
                if (st.Retrans < byte.MaxValue)
                {
                    st.Retrans++;
                }
            }
            else
            {
                st.LastDir = dir;
                st.LastSeq = seq;
                st.LastAck = ack;
                st.LastEnd = end;
                st.LastWindow = seg.Window;
                st.Retrans = 0;
            }
        }

        return TcpVerdict.Accept;
    }

    // First SYN or SYN/ACK of a side: its numbers and options define the side's window.
    private static void InitSender(
        ref TcpDirectionWindow sender,
        ref TcpDirectionWindow receiver,
        in TcpSegment seg,
        uint end,
        uint win,
        TcpDirection dir)
    {
        sender.End = end;
        sender.MaxEnd = end;
        sender.MaxWindow = win == 0 ? 1u : win;
        ApplyHandshakeOptions(ref sender, seg.Options);

        // RFC 7323: scaling is in force only if both SYNs carried the option.
        if (dir == TcpDirection.Reply
            && !((sender.Flags & TcpTrackFlags.WindowScale) != 0 && (receiver.Flags & TcpTrackFlags.WindowScale) != 0))
        {
            sender.Scale = 0;
            receiver.Scale = 0;
        }
    }

    // An empty option area leaves what was known before; otherwise the options replace it.
    private static void ApplyHandshakeOptions(ref TcpDirectionWindow window, ReadOnlySpan<byte> options)
    {
        if (options.IsEmpty)
        {
            return;
        }

        TcpHandshakeOptions parsed = TcpOptions.ParseHandshake(options);
        window.Scale = 0;
        window.Flags &= TcpTrackFlags.BeLiberal;
        if (parsed.SackPermitted)
        {
            window.Flags |= TcpTrackFlags.SackPermitted;
        }

        if (parsed.HasWindowScale)
        {
            window.Scale = parsed.WindowScale;
            window.Flags |= TcpTrackFlags.WindowScale;
        }
    }

    // A FIN or RST judged out of window on an assured connection, after the other side also sent one:
    // both ends are likely gone and our windows stale, so ask for the short timeout.
    private static void OnInvalid(ref TcpTrackState st, TcpDirection dir, TcpSegmentKind kind, TcpTrackerSettings s, ref TcpUpdate u)
    {
        if (!st.Assured || kind is not (TcpSegmentKind.Rst or TcpSegmentKind.Fin))
        {
            return;
        }

        if (st.LastDir != dir && st.LastIndex is TcpSegmentKind.Fin or TcpSegmentKind.Rst)
        {
            u.TimeoutAction = TcpTimeoutAction.Shorten;
            u.TimeoutSeconds = s.UnacknowledgedTimeout;
        }
        else
        {
            st.LastIndex = kind;
            st.LastDir = dir;
        }
    }

    private static TcpVerdict Fail(
        ref TcpDirectionWindow sender,
        TcpTrackerSettings s,
        TcpVerdict verdict,
        TcpInvalidReason why,
        out TcpInvalidReason reason)
    {
        if (s.BeLiberal || (sender.Flags & TcpTrackFlags.BeLiberal) != 0)
        {
            reason = TcpInvalidReason.None;
            return TcpVerdict.Accept;
        }

        reason = why;
        return verdict;
    }

    private static TcpVerdict Reject(ref TcpUpdate u, TcpVerdict verdict, TcpInvalidReason reason)
    {
        u.Reason = reason;
        return verdict;
    }

    private static byte Next(TcpDirection dir, TcpSegmentKind kind, TcpConntrackState state) =>
        Transitions[(((dir == TcpDirection.Original ? 0 : 1) * KindCount) + (int)kind) * StateCount + (int)state];

    private static TcpDirection Other(TcpDirection dir) =>
        dir == TcpDirection.Original ? TcpDirection.Reply : TcpDirection.Original;

    private static ref TcpDirectionWindow Window(ref TcpTrackState st, TcpDirection dir)
    {
        if (dir == TcpDirection.Original)
        {
            return ref st.Original;
        }

        return ref st.Reply;
    }
}
