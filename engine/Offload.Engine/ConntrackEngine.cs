using System.Buffers.Binary;
using System.Security.Cryptography;
using Offload.Engine.Conntrack;
using Offload.Engine.Conntrack.L4;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;
using Offload.Engine.Hosting;
using Offload.Engine.Nat;
using Offload.Engine.Packets;

namespace Offload.Engine;

/// <summary>
/// The userspace conntrack and NAT engine. A forwarded packet goes through <see cref="PreRouting"/>
/// (track, destination NAT), then the caller routes it, then <see cref="PostRouting"/> (source NAT,
/// helper, sequence adjustment, confirmation) — the kernel's hooks, in the kernel's order.
/// </summary>
/// <remarks>
/// Not thread-safe: one engine per worker, or calls serialised by the caller. The hooks are here; the connection's
/// lifetime in ConntrackEngine.Lifetime.cs; the work they hand out in the engine's parts: the protocol trackers
/// (<see cref="L4Protos"/>), the NAT rules (<see cref="NatRuleTable"/>), helper calls and expectations
/// (<see cref="HelperDispatch"/>), payload rewrites (in <see cref="PacketScratch"/>, the per-packet state).
/// </remarks>
public sealed partial class ConntrackEngine
{
    private readonly EngineOptions _options;
    private readonly ConnectionTable _table;
    private readonly ExpectationTable _expectations;
    private readonly NatCore _nat;
    private readonly NatRuleTable _natRules;
    private readonly L4Protos _l4;
    private readonly HelperDispatch _helpers;
    private readonly EngineCounters _counters = new();

    // What holds meaning for the current packet only; everything else here is the engine's shared state.
    private readonly PacketScratch _scratch;
    private IConntrackObserver? _observer;

    public ConntrackEngine(EngineOptions options, IClock clock)
    {
        _options = options;
        Clock = clock;
        ulong hashKey = options.HashKey != 0 ? options.HashKey : RandomKey();
        _table = new ConnectionTable(options.MaxConnections, hashKey);
        _expectations = new ExpectationTable(options.EffectiveMaxExpectations, hashKey ^ 0x5bd1e995UL) { GreKeys = _table.GreKeys, Directory = options.Directory, Shard = options.Shard };
        _nat = new NatCore(_table, clock, conn => Destroy(conn, EngineCounter.ConnectionsExpired), options.RandomSeed != 0 ? options.RandomSeed : RandomKey());
        _natRules = new NatRuleTable(options, _nat);
        _l4 = new L4Protos(options, _counters);
        _scratch = new PacketScratch(_counters);
        _helpers = new HelperDispatch(options, clock, _expectations, _scratch, _counters);
        Observer = options.Observer;
    }

    public IClock Clock { get; }

    /// <summary>Who is told of expectations and connections coming and going (replaces <see cref="EngineOptions.Observer"/>).</summary>
    public IConntrackObserver? Observer
    {
        get => _observer;
        set
        {
            _observer = value;
            _expectations.Observer = value;
            _helpers.Observer = value;
        }
    }

    /// <summary>
    /// Replaces the NAT rules and helper bindings (a configuration reload). Tracked connections keep their
    /// translations, helpers and expectations: rules and bindings are consulted only for new connections.
    /// </summary>
    public void Reconfigure(IReadOnlyList<NatRule> rules, IReadOnlyList<HelperBinding> helpers)
    {
        _natRules.Replace(rules);
        _helpers.Bind(helpers);
    }

    public EngineOptions Options => _options;

    /// <summary>The helper of that name among those bound now (restoring a snapshot), or null.</summary>
    internal ConntrackHelper? FindHelper(string name) => _helpers.Find(name);

    public ConnectionTable Connections => _table;

    public ExpectationTable Expectations => _expectations;

    /// <summary>The counters, indexed by <see cref="EngineCounter"/>.</summary>
    public ReadOnlySpan<long> Counters => _counters.Values;

    public long this[EngineCounter counter] => _counters[counter];

    /// <summary>Why a helper was disabled, or null while it works.</summary>
    public static string? DisabledReason(ConntrackHelper helper) => helper.DisabledReason;

    /// <summary>Lets a disabled helper work again (after its plugin was replaced, say). New connections bind to it again.</summary>
    public static void Enable(ConntrackHelper helper) => helper.DisabledReason = null;

    private static ulong RandomKey() => BinaryPrimitives.ReadUInt64LittleEndian(RandomNumberGenerator.GetBytes(8)) | 1;

    private long Now => Clock.NowNanoseconds;

    private Verdict Drop(EngineCounter reason) => _counters.Drop(reason);

    // ---------------------------------------------------------------- PREROUTING

    /// <summary>
    /// Tracks a packet that enters the router and applies destination NAT (and the reverse of source NAT
    /// for replies). After it, the caller routes the packet by its (possibly new) destination.
    /// </summary>
    public Verdict PreRouting(ref PacketContext ctx)
    {
        _counters.Count(EngineCounter.PacketsIn);
        ctx.Conn = null;
        ctx.Unconfirmed = false;
        ctx.IsIcmpError = false;
        ctx.PassedPreRouting = false;
        ctx.Untracked = false;
        ctx.Changed = false;

        var info = PacketParser.Parse(ctx.Packet);
        if (!info.IsValid)
        {
            return Drop(EngineCounter.MalformedTruncated + ((int)info.Error - 1));
        }

        if (info.IsLaterFragment)
        {
            return Drop(EngineCounter.DroppedLaterFragment);
        }

        if (info.Protocol == (info.Family == 4 ? IpProtocol.IcmpV6 : IpProtocol.Icmp))
        {
            return Drop(EngineCounter.DroppedIcmpOtherFamily);
        }

        // Ethernet padding and the like: the datagram ends where its header says.
        ctx.Changed = info.TotalLength != ctx.Length;
        ctx.Length = info.TotalLength;
        ctx.Info = info;
        var packet = ctx.Packet;

        if (ctx.ChecksumPartial && ctx.Gso && info.Protocol == IpProtocol.Tcp)
        {
            // The kernel sets up each segment's checksum itself when it segments a packet we give back: summing up to
            // 64 KiB here would be wasted (every later incremental update of the field is as harmless).
            ctx.ChecksumPartial = false;
        }
        else if (ctx.ChecksumPartial)
        {
            // An offloaded checksum holds only the pseudo-header sum, for the device to finish. The kernel takes a
            // packet we give back as final (CHECKSUM_NONE), so finish it here: every later update is then an ordinary
            // incremental one. (A GSO super-packet gets its segments' checksums from the kernel anyway.)
            TransportChecksum.Complete(packet, info);
            ctx.Changed = true;
            ctx.ChecksumPartial = false;
        }
        else if (_options.ValidateChecksums && !ChecksumsAreValid(packet, info, ctx.ChecksumVerified))
        {
            return Drop(EngineCounter.MalformedBadChecksum);
        }

        if (info.Protocol == IpProtocol.IcmpV6 && Icmp.IsLinkScoped(packet[info.L4Offset]) && StaysOnLink(packet))
        {
            // Neighbour discovery and MLD: the kernel's conntrack leaves them untracked and lets them pass
            // (nf_conntrack_proto_icmpv6.c, noct_valid_new). A router's own, or one sent to its link-local address,
            // reaches a queue like any ICMPv6: dropping it would leave the router without neighbours on that link.
            ctx.Untracked = true;
            ctx.PassedPreRouting = true;
            _counters.Count(EngineCounter.AcceptedUntracked);
            return Verdict.Accept;
        }

        if (info.Protocol is IpProtocol.Icmp or IpProtocol.IcmpV6 && Icmp.IsError(info.Protocol, packet[info.L4Offset]))
        {
            return PreRoutingIcmpError(ref ctx);
        }

        ConnTuples.TryRead(packet, info, out var tuple);
        if (tuple.Protocol == IpProtocol.Gre)
        {
            tuple.SourcePort = _table.GreKeys.SourceKeyOf(tuple);
        }

        long now = Now;
        bool found = _table.TryFind(tuple, out var conn, out var dir);
        if (found && conn.ExpiresAt <= now)
        {
            Destroy(conn, EngineCounter.ConnectionsExpired);
            found = false;
        }

        CtInfo ct;
        if (!found && OwnedElsewhere(ref ctx, tuple))
        {
            return Verdict.Handover;
        }

        if (!found)
        {
            var created = CreateConnection(packet, info, tuple, now, out conn, out ct);
            if (created != Verdict.Accept)
            {
                return created;
            }

            dir = ConnDirection.Original;
            ctx.Unconfirmed = true;
        }
        else if (dir == ConnDirection.Reply)
        {
            ct = CtInfo.EstablishedReply;
        }
        else
        {
            ct = conn.HasStatus(ConnStatus.SeenReply) ? CtInfo.Established
                : conn.HasStatus(ConnStatus.Expected) ? CtInfo.Related
                : CtInfo.New;
        }

        var l4 = _l4.For(info.Protocol);
        var tracked = l4.Track(packet, info, conn, dir, ctx.Unconfirmed, now, out bool reopen);
        if (reopen)
        {
            // A new connection reusing the tuple of one that is closing: the old entry goes, the packet starts afresh.
            Destroy(conn, EngineCounter.ConnectionsReopened);
            var created = CreateConnection(packet, info, tuple, now, out conn, out ct);
            if (created != Verdict.Accept)
            {
                return created;
            }

            dir = ConnDirection.Original;
            ctx.Unconfirmed = true;
            tracked = l4.Track(packet, info, conn, dir, true, now, out _);
        }

        if (!ctx.Unconfirmed && conn.ExpiresAt <= now)
        {
            // This packet killed its connection (a RST answering the SYN): the entry waits for the collector, but its
            // tuples are free for the NAT's search from now on (NatCore.IsUsed), which must learn it.
            _table.NoteRelease();
        }

        if (tracked != Verdict.Accept)
        {
            return tracked;
        }

        if (dir == ConnDirection.Reply)
        {
            conn.StatusBits |= ConnStatus.SeenReply;
        }

        ctx.Conn = conn;
        ctx.Dir = dir;
        ctx.Ct = ct;

        if (!NatCore.IsDone(conn, ManipType.Destination) && !_natRules.Decide(conn, ManipType.Destination, ctx.InInterface, 0))
        {
            Abandon(ref ctx);
            return Drop(EngineCounter.DroppedNatExhausted);
        }

        if (ctx.Unconfirmed && _natRules.ArrivesUnknownAtNatPort(conn))
        {
            Abandon(ref ctx);
            return Drop(EngineCounter.DroppedUnknownToNatPort);
        }

        ctx.Changed |= NatManip.Apply(packet, info, conn, dir, ManipType.Destination);
        ctx.PassedPreRouting = true;
        return Verdict.Accept;
    }

    /// <summary>The end of PostRouting for a packet that goes on: it leaves the router.</summary>
    private Verdict Out()
    {
        _counters.Count(EngineCounter.PacketsOut);
        return Verdict.Accept;
    }

    /// <summary>
    /// True for an IPv6 packet that never left its link: neighbour discovery goes with hop limit 255 (RFC 4861, a
    /// forwarded packet has at most 254), MLD from a link-local or the unspecified address (RFC 3810). A forwarded
    /// packet of those types is neither, and stays subject to tracking (so it is not let out untranslated).
    /// </summary>
    private static bool StaysOnLink(ReadOnlySpan<byte> packet) =>
        packet[7] == 255
        || (packet[8] == 0xFE && (packet[9] & 0xC0) == 0x80)
        || packet.Slice(8, 16).IndexOfAnyExcept((byte)0) < 0;

    /// <summary>
    /// The kernel's nf_conntrack_checksum: the IPv4 header (20 to 60 bytes, cheap) always, the transport checksum
    /// unless the queue said it was verified (the kernel's conntrack trusts CHECKSUM_UNNECESSARY the same way).
    /// </summary>
    private static bool ChecksumsAreValid(ReadOnlySpan<byte> packet, in PacketInfo info, bool transportVerified) =>
        (info.Family != 4 || PacketParser.IPv4HeaderChecksumIsValid(packet))
        && (transportVerified || PacketParser.TransportChecksumIsValid(packet, info));

    /// <summary>
    /// The tuple an ICMP error's own direction has, from the packet it quotes: the quoted packet went the other way, so
    /// its inverse. False when the quote is not a packet of the error's family, or has no inverse (an error about an
    /// error is never related).
    /// </summary>
    private bool TryReadQuotedFlow(ReadOnlySpan<byte> packet, in PacketInfo info, out PacketInfo inner, out int innerOffset, out ConnTuple lookup)
    {
        innerOffset = info.L4Offset + HeaderOffsets.IcmpHeader;
        var quoted = packet.Slice(innerOffset);
        inner = PacketParser.ParseQuoted(quoted);
        lookup = default;
        if (!inner.IsValid || inner.Family != info.Family)
        {
            return false;
        }

        var innerTuple = new ConnTuple(
            inner.Family,
            inner.Protocol,
            InetAddress.Read(inner.Family, quoted.Slice(inner.SourceAddressOffset)),
            0,
            InetAddress.Read(inner.Family, quoted.Slice(inner.DestinationAddressOffset)),
            0);
        ConnTuples.ReadPorts(quoted.Slice(inner.L4Offset), inner.Protocol, ref innerTuple);
        if (innerTuple.Protocol == IpProtocol.Gre)
        {
            innerTuple.SourcePort = _table.GreKeys.SourceKeyOf(innerTuple);
        }

        return innerTuple.TryInvert(out lookup);
    }

    private Verdict PreRoutingIcmpError(ref PacketContext ctx)
    {
        var packet = ctx.Packet;
        var info = ctx.Info;
        if (!TryReadQuotedFlow(packet, info, out var inner, out int innerOffset, out var lookup))
        {
            return Drop(EngineCounter.DroppedIcmpUnrelated);
        }

        if (!_table.TryFind(lookup, out var conn, out var dir) || conn.ExpiresAt <= Now)
        {
            // The flow it quotes may live in another shard: the error's own addresses say nothing of the flow's, and a
            // flow without translation is published nowhere (OwnerShard -1: any shard may hold it, see TracksFlowOf).
            if (_options.Directory is { } directory && !ctx.HandedOver)
            {
                int owner = directory.ConnectionOwnerOf(lookup);
                if (owner != _options.Shard)
                {
                    ctx.OwnerShard = owner;
                    return Verdict.Handover;
                }
            }

            return Drop(EngineCounter.DroppedIcmpUnrelated);
        }

        // The error must go where that direction's packets go, as in the kernel's nf_conntrack_inet_error: a quote of
        // B->T sent from B to some X would otherwise pass as related to A->B although X never took part.
        if (InetAddress.Read(info.Family, packet.Slice(info.DestinationAddressOffset)) != conn.TupleOf(dir).Destination)
        {
            return Drop(EngineCounter.DroppedIcmpUnrelated);
        }

        ctx.Conn = conn;
        ctx.Dir = dir;
        ctx.Ct = CtInfo.Related.InDirection(dir);
        ctx.IsIcmpError = true;
        ctx.Inner = inner;
        ctx.InnerOffset = innerOffset;

        if (!NatManip.TranslateIcmpError(packet, info, inner, innerOffset, conn, dir, ManipType.Destination))
        {
            return Drop(EngineCounter.DroppedIcmpUnrelated);
        }

        ctx.Changed |= NatManip.NeedsManip(conn, dir, ManipType.Destination);

        ctx.PassedPreRouting = true;
        return Verdict.Accept;
    }

    /// <summary>Creates an unconfirmed entry for a packet that starts a connection, taking an expectation if one waits for it.</summary>
    private Verdict CreateConnection(ReadOnlySpan<byte> packet, in PacketInfo info, in ConnTuple tuple, long now, out Connection conn, out CtInfo ct)
    {
        conn = default;
        ct = CtInfo.New;
        var l4 = _l4.For(tuple.Protocol);
        if (!l4.CanStart(tuple))
        {
            return Drop(EngineCounter.DroppedCannotStart);
        }

        if (!tuple.TryInvert(out var reply))
        {
            return Drop(EngineCounter.DroppedCannotStart);
        }

        if (_table.IsFull && !EarlyDrop(tuple))
        {
            return Drop(EngineCounter.DroppedTableFull);
        }

        // A new connection lives as long as its first packet: one the last packet left unconfirmed (dropped on a way
        // that did not abandon it, or never brought to PostRouting) is gone by now, as the kernel frees it with its skb.
        ReclaimUnconfirmed();
        conn = _table.Create(tuple, reply);
        _lastUnconfirmed = conn;

        var expectation = _expectations.Count > 0 ? _expectations.Take(tuple, now) : null;
        if (expectation is not null)
        {
            conn.StatusBits |= ConnStatus.Expected;
            var extras = conn.EnsureExtras();
            extras.Master = expectation.Master;
            extras.ExpectedAtTranslatedAddress = expectation.AtTranslatedAddress;
            if (expectation.Helper is not null)
            {
                extras.Helper = expectation.Helper;
                conn.StatusBits |= ConnStatus.Helper;
            }

            if (expectation.Master.Extras?.Helper is { } masterHelper && !_helpers.AcceptExpected(masterHelper, conn, expectation))
            {
                _table.Release(conn);
                return Drop(EngineCounter.DroppedByHelper);
            }

            bool natted = expectation.Nat switch
            {
                ExpectationNat.FollowMaster => !expectation.FollowMasterNat || _natRules.FollowMaster(conn, expectation),
                ExpectationNat.Redirect => _natRules.Redirect(conn, expectation),
                ExpectationNat.Source => _natRules.SourceTo(conn, expectation),
                ExpectationNat.OnArrival => _natRules.Chosen(conn, _helpers.ChoiceFor(expectation)),
                _ => true,
            };
            if (!natted)
            {
                _table.Release(conn);
                return Drop(EngineCounter.DroppedNatExhausted);
            }

            ct = CtInfo.Related;
            _counters.Count(EngineCounter.ConnectionsExpected);
            _observer?.ExpectationFulfilled(expectation, conn);
        }
        else
        {
            _helpers.Assign(conn, tuple);
        }

        if (!l4.Start(packet, info, conn, now))
        {
            ForgetUnconfirmed(conn);
            return Drop(EngineCounter.DroppedCannotStart);
        }

        if (conn.Protocol != IpProtocol.Tcp)
        {
            conn.StreamAt = now + 2_000_000_000L; // TCP's tracking holds those bytes
        }

        _counters.Count(EngineCounter.ConnectionsCreated);
        return Verdict.Accept;
    }

    /// <summary>
    /// Both hooks in one call, for a packet the kernel queued at one point only (a live queue): PreRouting, then,
    /// if it goes on, PostRouting with <see cref="PacketContext.OutInterface"/> as the kernel reported it (0 before routing).
    /// The caller does not route: the kernel routes the packet after the verdict, or already has.
    /// </summary>
    public Verdict Process(ref PacketContext ctx) =>
        PreRouting(ref ctx) switch
        {
            Verdict.Accept => PostRouting(ref ctx),
            Verdict.Handover => Verdict.Handover,
            _ => Verdict.Drop,
        };

    /// <summary>
    /// Whether this engine holds the connection a packet belongs to, or for an ICMP error the one it quotes: the shard a
    /// <see cref="Verdict.Handover"/> with <see cref="PacketContext.OwnerShard"/> -1 goes to. Looks, changes nothing.
    /// </summary>
    public bool TracksFlowOf(ReadOnlySpan<byte> packet)
    {
        var info = PacketParser.Parse(packet);
        if (!info.IsValid || info.IsLaterFragment)
        {
            return false;
        }

        ConnTuple tuple;
        if (info.Protocol is IpProtocol.Icmp or IpProtocol.IcmpV6 && Icmp.IsError(info.Protocol, packet[info.L4Offset]))
        {
            if (!TryReadQuotedFlow(packet, info, out _, out _, out tuple))
            {
                return false;
            }
        }
        else
        {
            ConnTuples.TryRead(packet, info, out tuple);
            if (tuple.Protocol == IpProtocol.Gre)
            {
                tuple.SourcePort = _table.GreKeys.SourceKeyOf(tuple);
            }
        }

        return _table.TryFind(tuple, out var conn, out _) && conn.ExpiresAt > Now;
    }

    /// <summary>
    /// For a packet this shard's table does not know: true (and <see cref="PacketContext.OwnerShard"/> set) when
    /// another shard has published its connection or expects it, so that the packet runs there.
    /// </summary>
    private bool OwnedElsewhere(ref PacketContext ctx, in ConnTuple tuple)
    {
        if (_options.Directory is not { } directory || ctx.HandedOver)
        {
            return false;
        }

        int owner = directory.OwnerOf(tuple);
        if (owner < 0 || owner == _options.Shard)
        {
            return false;
        }

        ctx.OwnerShard = owner;
        return true;
    }

    // ---------------------------------------------------------------- POSTROUTING

    /// <summary>
    /// Finishes a routed packet: source NAT (and the reverse of destination NAT for replies), the helper,
    /// sequence adjustment, and confirmation of a new connection into the table.
    /// </summary>
    public Verdict PostRouting(ref PacketContext ctx)
    {
        if (ctx.Untracked && ctx.PassedPreRouting)
        {
            return Out();
        }

        if (!ctx.PassedPreRouting || ctx.Conn is not { } conn)
        {
            // PreRouting dropped it (and counted it), or was never called: nothing may leave untracked.
            return Verdict.Drop;
        }

        if (ctx.IsIcmpError)
        {
            if (!NatManip.TranslateIcmpError(ctx.Packet, ctx.Info, ctx.Inner, ctx.InnerOffset, conn, ctx.Dir, ManipType.Source))
            {
                return Drop(EngineCounter.DroppedIcmpUnrelated);
            }

            ctx.Changed |= NatManip.NeedsManip(conn, ctx.Dir, ManipType.Source);
            return Out();
        }

        if (!NatCore.IsDone(conn, ManipType.Source) && !_natRules.Decide(conn, ManipType.Source, ctx.InInterface, _natRules.SourceNatOutInterface(ctx.OutInterface, ctx.Unconfirmed, conn)))
        {
            Abandon(ref ctx);
            return Drop(EngineCounter.DroppedNatExhausted);
        }

        ctx.Changed |= NatManip.Apply(ctx.Packet, ctx.Info, conn, ctx.Dir, ManipType.Source);

        if (conn.Extras?.Helper is { } helper)
        {
            var verdict = _helpers.Help(ref ctx, conn, helper);
            if (verdict != Verdict.Accept)
            {
                Abandon(ref ctx);
                return verdict;
            }
        }

        if (ctx.Info.Protocol == IpProtocol.Tcp && conn.HasStatus(ConnStatus.SeqAdjust) && conn.Extras is { } extras)
        {
            ctx.Changed |= SeqAdj.Adjust(ctx.Packet, ctx.Info, extras.SeqAdj(ctx.Dir), extras.SeqAdj(ctx.Dir.Opposite()));
        }

        if (ctx.Unconfirmed)
        {
            if (_table.IsTaken(conn.OriginalTuple, conn) || _table.IsTaken(conn.ReplyTuple, conn) || (_table.IsFull && !EarlyDrop(conn.OriginalTuple)))
            {
                Abandon(ref ctx);
                return Drop(EngineCounter.DroppedInsertClash);
            }

            _table.Insert(conn);
            conn.StatusBits |= ConnStatus.Confirmed;
            Publish(conn, arrivedElsewhere: ctx.HandedOver);
            _observer?.ConnectionConfirmed(conn);
            ctx.Unconfirmed = false;
        }

        return Out();
    }

}
