using System.Buffers.Binary;
using System.Security.Cryptography;
using Offload.Engine.Conntrack;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Packets;

namespace Offload.Engine;

/// <summary>
/// One packet on its way through the engine: its buffer (with room to grow when a helper lengthens it),
/// the interfaces it came in and goes out on, and what the engine learnt about it between hooks
/// (the kernel keeps the same in the skb: its conntrack entry and ctinfo).
/// </summary>
public ref struct PacketContext
{
    /// <summary>The packet, starting at its IP header, followed by spare room.</summary>
    public Span<byte> Buffer;

    /// <summary>The packet's current length in <see cref="Buffer"/>; a rewrite may change it.</summary>
    public int Length;

    /// <summary>The interface the packet came in on (0: unknown).</summary>
    public int InInterface;

    /// <summary>The interface routing chose (0: not routed yet).</summary>
    public int OutInterface;

    /// <summary>
    /// Set when the transport checksum holds only the pseudo-header sum (offloaded to the device; NFQUEUE's
    /// CSUMNOTREADY). PreRouting completes it, since whatever the engine gives back is taken as final.
    /// </summary>
    public bool ChecksumPartial;

    /// <summary>
    /// Set for a segmentation-offload super-packet (NFQUEUE's GSO flag). The kernel recomputes each segment's TCP
    /// checksum when it splits such a packet, so a partial TCP checksum need not be completed here.
    /// </summary>
    public bool Gso;

    internal PacketInfo Info;
    internal Connection? Conn;
    internal ConnDirection Dir;
    internal CtInfo Ct;
    internal bool Unconfirmed;
    internal bool IsIcmpError;
    internal bool PassedPreRouting;
    internal bool Untracked;
    internal PacketInfo Inner;
    internal int InnerOffset;

    public PacketContext(Span<byte> buffer, int length, int inInterface = 0)
    {
        Buffer = buffer;
        Length = length;
        InInterface = inInterface;
    }

    /// <summary>The packet as it stands.</summary>
    public readonly Span<byte> Packet => Buffer.Slice(0, Length);

    /// <summary>The connection the packet belongs to, once PreRouting has run.</summary>
    public readonly Connection? Connection => Conn;

    /// <summary>
    /// The packet's relation to its connection (the kernel's ctinfo), valid once PreRouting accepted it: New for a
    /// connection that has seen no reply yet, Established once it has, Related for an expected connection's packets and
    /// for an ICMP error quoting a tracked flow; the reply variants for packets in the reply direction.
    /// </summary>
    public readonly CtInfo CtInfo => Ct;

    /// <summary>Which of its connection's tuples the packet matched, valid once PreRouting accepted it.</summary>
    public readonly ConnDirection Direction => Dir;

    /// <summary>
    /// The status bits of the packet's connection as they stand (the kernel's ct->status), or
    /// <see cref="ConnStatus.None"/> when the packet has none (it was dropped, or PreRouting has not run). For an ICMP
    /// error these are the bits of the flow it quotes.
    /// </summary>
    /// <remarks>
    /// After <see cref="ConntrackEngine.Process"/> (or PostRouting) accepted a packet, both translations of its
    /// connection are decided, so <see cref="ConnStatus.SrcNat"/> and <see cref="ConnStatus.DstNat"/> are final and
    /// <see cref="ConnStatus.Confirmed"/> is set. A field read: nothing is allocated.
    /// </remarks>
    public readonly ConnStatus ConnectionStatus => Conn is { } conn ? conn.StatusBits : ConnStatus.None;

    /// <summary>
    /// True when the packet's connection has its source translated in the original direction (SNAT or MASQUERADE,
    /// the kernel's IPS_SRC_NAT): its replies are addressed to the translated source. False without a connection.
    /// </summary>
    public readonly bool IsSourceNatted => (ConnectionStatus & ConnStatus.SrcNat) != 0;

    /// <summary>
    /// True when the packet's connection has its destination translated in the original direction (DNAT or REDIRECT,
    /// a port forward; the kernel's IPS_DST_NAT). False without a connection.
    /// </summary>
    public readonly bool IsDestinationNatted => (ConnectionStatus & ConnStatus.DstNat) != 0;

    /// <summary>The parsed headers (valid after PreRouting accepted the packet).</summary>
    public readonly PacketInfo Headers => Info;
}

/// <summary>
/// The userspace conntrack and NAT engine. A forwarded packet goes through <see cref="PreRouting"/>
/// (track, destination NAT), then the caller routes it, then <see cref="PostRouting"/> (source NAT,
/// helper, sequence adjustment, confirmation) — the kernel's hooks, in the kernel's order.
/// </summary>
/// <remarks>Not thread-safe: one engine per worker, or calls serialised by the caller.</remarks>
public sealed class ConntrackEngine
{
    private const int MaxRewrites = 16;
    private const int RewriteScratchBytes = 2048;

    /// <summary>Buckets scanned for an unassured entry to drop when the table is full (the kernel's eviction range).</summary>
    private const int EarlyDropBuckets = 8;

    private readonly EngineOptions _options;
    private readonly ConnectionTable _table;
    private readonly ExpectationTable _expectations;
    private readonly NatCore _nat;
    private readonly long[] _counters = new long[Enum.GetValues<EngineCounter>().Length];
    private HelperBinding[] _helpers;
    private NatRule[] _rules;

    // Rewrites a helper asks for, applied after it returns. Reused for every packet: the engine is single-threaded.
    private readonly (int Offset, int Length, int ScratchOffset, int ScratchLength)[] _rewrites = new (int, int, int, int)[MaxRewrites];
    private readonly byte[] _rewriteScratch = new byte[RewriteScratchBytes];

    // Where a rewritten packet's tail waits while the rewrites are laid out (allocated on the first rewrite).
    private byte[] _rewriteTail = [];
    private int _rewriteCount;
    private int _rewriteScratchUsed;
    private int _gcCursor;
    private IConntrackObserver? _observer;
    private readonly EngineHelperHost _helperHost;

    // The expectations registered during the current helper call: withdrawn if the packet that announced them is
    // dropped (by the helper, or because its rewrite failed), since the peer never hears of them.
    private readonly Expectation?[] _callExpectations = new Expectation?[MaxRewrites];
    private int _callExpectationCount;

    public ConntrackEngine(EngineOptions options, IClock clock)
    {
        _options = options;
        Clock = clock;
        ulong hashKey = options.HashKey != 0 ? options.HashKey : RandomKey();
        _table = new ConnectionTable(options.MaxConnections, hashKey);
        _expectations = new ExpectationTable(options.EffectiveMaxExpectations, hashKey ^ 0x5bd1e995UL);
        _nat = new NatCore(_table, options.RandomSeed != 0 ? options.RandomSeed : RandomKey());
        _helpers = [.. options.Helpers];
        _rules = [.. options.NatRules];
        _helperHost = new EngineHelperHost(this);
        AttachLogs(_helpers);
        _observer = options.Observer;
        _expectations.Observer = _observer;
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
        }
    }

    /// <summary>
    /// Replaces the NAT rules and helper bindings (a configuration reload). Tracked connections keep their
    /// translations, helpers and expectations: rules and bindings are consulted only for new connections.
    /// </summary>
    public void Reconfigure(IReadOnlyList<NatRule> rules, IReadOnlyList<HelperBinding> helpers)
    {
        _rules = [.. rules];
        _helpers = [.. helpers];
        AttachLogs(_helpers);
    }

    private void AttachLogs(HelperBinding[] bindings)
    {
        foreach (var binding in bindings)
        {
            binding.Helper.LogSink = (helper, level, message) => _observer?.HelperLogged(helper, level, message);
        }
    }

    /// <summary>
    /// Moves every tracked connection and outstanding expectation from one helper to another (a plugin replaced by a
    /// new version), or, with <paramref name="replacement"/> null, detaches them (a plugin unloaded). The connections
    /// lose the old helper's per-connection state: its types belong to the old code. On removal, the expectations the
    /// helper's connections announced are withdrawn, as the kernel does when a helper is unregistered; on replacement
    /// they stay, since the new version would announce the same.
    /// </summary>
    /// <returns>How many connections were moved or detached.</returns>
    public int ReplaceHelper(ConntrackHelper old, ConntrackHelper? replacement)
    {
        ArgumentNullException.ThrowIfNull(old);
        int moved = 0;
        foreach (var conn in _table.Entries())
        {
            if (conn.Extras is not { } extras || !ReferenceEquals(extras.Helper, old))
            {
                continue;
            }

            extras.Helper = replacement;
            extras.HelperState = null;
            if (replacement is null)
            {
                conn.StatusBits &= ~ConnStatus.Helper;
                _expectations.RemoveAllOf(conn);
            }

            moved++;
        }

        _expectations.ReplaceHelper(old, replacement);
        return moved;
    }

    public EngineOptions Options => _options;

    /// <summary>The helper of that name among those bound now (restoring a snapshot), or null.</summary>
    internal ConntrackHelper? FindHelper(string name)
    {
        foreach (var binding in _helpers)
        {
            if (binding.Helper.Name == name)
            {
                return binding.Helper;
            }
        }

        return null;
    }

    public ConnectionTable Connections => _table;

    public ExpectationTable Expectations => _expectations;

    /// <summary>The counters, indexed by <see cref="EngineCounter"/>.</summary>
    public ReadOnlySpan<long> Counters => _counters;

    public long this[EngineCounter counter] => _counters[(int)counter];

    private static ulong RandomKey() => BinaryPrimitives.ReadUInt64LittleEndian(RandomNumberGenerator.GetBytes(8)) | 1;

    private long Now => Clock.NowNanoseconds;

    private Verdict Drop(EngineCounter reason)
    {
        _counters[(int)reason]++;
        _counters[(int)EngineCounter.PacketsDropped]++;
        return Verdict.Drop;
    }

    // ---------------------------------------------------------------- PREROUTING

    /// <summary>
    /// Tracks a packet that enters the router and applies destination NAT (and the reverse of source NAT
    /// for replies). After it, the caller routes the packet by its (possibly new) destination.
    /// </summary>
    public Verdict PreRouting(ref PacketContext ctx)
    {
        _counters[(int)EngineCounter.PacketsIn]++;
        ctx.Conn = null;
        ctx.Unconfirmed = false;
        ctx.IsIcmpError = false;
        ctx.PassedPreRouting = false;
        ctx.Untracked = false;

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
            CompleteTransportChecksum(packet, info);
            ctx.ChecksumPartial = false;
        }
        else if (_options.ValidateChecksums && !ChecksumsAreValid(packet, info))
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
            _counters[(int)EngineCounter.AcceptedUntracked]++;
            return Verdict.Accept;
        }

        if (info.Protocol is IpProtocol.Icmp or IpProtocol.IcmpV6 && Icmp.IsError(info.Protocol, packet[info.L4Offset]))
        {
            return PreRoutingIcmpError(ref ctx);
        }

        ConnTuples.TryRead(packet, info, out var tuple);
        long now = Now;
        if (_table.TryFind(tuple, out var conn, out var dir) && conn.ExpiresAt <= now)
        {
            Destroy(conn, EngineCounter.ConnectionsExpired);
            conn = null;
        }

        CtInfo ct;
        if (conn is null)
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

        var tracked = TrackProtocol(packet, info, conn!, dir, ctx.Unconfirmed, now, out bool reopen);
        if (reopen)
        {
            // A new connection reusing the tuple of one that is closing: the old entry goes, the packet starts afresh.
            Destroy(conn!, EngineCounter.ConnectionsReopened);
            var created = CreateConnection(packet, info, tuple, now, out conn, out ct);
            if (created != Verdict.Accept)
            {
                return created;
            }

            dir = ConnDirection.Original;
            ctx.Unconfirmed = true;
            tracked = TrackProtocol(packet, info, conn!, dir, true, now, out _);
        }

        if (tracked != Verdict.Accept)
        {
            return tracked;
        }

        if (dir == ConnDirection.Reply)
        {
            conn!.StatusBits |= ConnStatus.SeenReply;
        }

        ctx.Conn = conn;
        ctx.Dir = dir;
        ctx.Ct = ct;

        if (!NatCore.IsDone(conn!, ManipType.Destination) && !DecideNat(conn!, ManipType.Destination, ctx.InInterface, 0))
        {
            Abandon(ref ctx);
            return Drop(EngineCounter.DroppedNatExhausted);
        }

        if (ctx.Unconfirmed && ArrivesUnknownAtNatPort(conn!))
        {
            Abandon(ref ctx);
            return Drop(EngineCounter.DroppedUnknownToNatPort);
        }

        NatManip.Apply(packet, info, conn!, dir, ManipType.Destination);
        ctx.PassedPreRouting = true;
        return Verdict.Accept;
    }

    /// <summary>
    /// A new connection to one of the router's addresses at a port of the NAT range, neither expected nor forwarded by a
    /// DNAT rule: the reply of a translation this engine does not know (made before a restart whose state was lost, or
    /// forged). The kernel would deliver it to the router's stack, which resets the peer; it is dropped instead, so a
    /// flow the daemon forgot fails quietly and nobody learns which ports the router's NAT uses.
    /// </summary>
    private bool ArrivesUnknownAtNatPort(Connection conn)
    {
        ref readonly var tuple = ref conn.OriginalTuple;
        return _options.HasNatPortRange
            && (conn.StatusBits & (ConnStatus.Expected | ConnStatus.DstNat)) == 0
            && tuple.Protocol is IpProtocol.Tcp or IpProtocol.Udp
            && tuple.DestinationPort >= _options.NatPortMin && tuple.DestinationPort <= _options.NatPortMax
            && _options.Interfaces.IsLocal(tuple.Family, tuple.Destination);
    }

    /// <summary>The end of PostRouting for a packet that goes on: it leaves the router.</summary>
    private Verdict Out()
    {
        _counters[(int)EngineCounter.PacketsOut]++;
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

    private static bool ChecksumsAreValid(ReadOnlySpan<byte> packet, in PacketInfo info) =>
        (info.Family != 4 || PacketParser.IPv4HeaderChecksumIsValid(packet))
        && PacketParser.TransportChecksumIsValid(packet, info);

    private Verdict PreRoutingIcmpError(ref PacketContext ctx)
    {
        var packet = ctx.Packet;
        var info = ctx.Info;
        int innerOffset = info.L4Offset + HeaderOffsets.IcmpHeader;
        var inner = PacketParser.ParseQuoted(packet.Slice(innerOffset));
        if (!inner.IsValid || inner.Family != info.Family)
        {
            return Drop(EngineCounter.DroppedIcmpUnrelated);
        }

        var quoted = packet.Slice(innerOffset);
        var innerTuple = new ConnTuple(
            inner.Family,
            inner.Protocol,
            InetAddress.Read(inner.Family, quoted.Slice(inner.SourceAddressOffset)),
            0,
            InetAddress.Read(inner.Family, quoted.Slice(inner.DestinationAddressOffset)),
            0);
        ConnTuples.ReadPorts(quoted.Slice(inner.L4Offset), inner.Protocol, ref innerTuple);

        // The quoted packet went the other way: its inverse is the tuple of the error's own direction. (A quoted ICMP
        // error has no inverse: an error about an error is never related.)
        if (!innerTuple.TryInvert(out var lookup) || !_table.TryFind(lookup, out var conn, out var dir) || conn.ExpiresAt <= Now)
        {
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

        ctx.PassedPreRouting = true;
        return Verdict.Accept;
    }

    /// <summary>Creates an unconfirmed entry for a packet that starts a connection, taking an expectation if one waits for it.</summary>
    private Verdict CreateConnection(ReadOnlySpan<byte> packet, in PacketInfo info, in ConnTuple tuple, long now, out Connection? conn, out CtInfo ct)
    {
        conn = null;
        ct = CtInfo.New;
        if (tuple.IsIcmp && !Icmp.IsQuery(tuple.Protocol, tuple.IcmpType))
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

        conn = new Connection
        {
            OriginalTuple = tuple,
            ReplyTuple = reply,
        };

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

            if (expectation.Master.Extras?.Helper is { } masterHelper && !AcceptExpected(masterHelper, conn, expectation))
            {
                conn = null;
                return Drop(EngineCounter.DroppedByHelper);
            }

            bool natted = expectation.Nat switch
            {
                ExpectationNat.FollowMaster => !expectation.FollowMasterNat || FollowMaster(conn, expectation),
                ExpectationNat.Redirect => _nat.SetupInfo(conn, NatRange.ToAddressAndPort(expectation.NatAddress, expectation.NatPort), ManipType.Destination),
                _ => true,
            };
            if (!natted)
            {
                conn = null;
                return Drop(EngineCounter.DroppedNatExhausted);
            }

            ct = CtInfo.Related;
            _counters[(int)EngineCounter.ConnectionsExpected]++;
            _observer?.ExpectationFulfilled(expectation, conn);
        }
        else
        {
            foreach (var binding in _helpers)
            {
                if (binding.Matches(tuple) && binding.Helper.DisabledReason is null)
                {
                    conn.EnsureExtras().Helper = binding.Helper;
                    conn.StatusBits |= ConnStatus.Helper;
                    break;
                }
            }
        }

        if (tuple.Protocol == IpProtocol.Tcp && !StartTcp(packet, info, conn, now))
        {
            ForgetUnconfirmed(conn);
            conn = null;
            return Drop(EngineCounter.DroppedCannotStart);
        }

        conn.StreamAt = now + 2_000_000_000L;
        _counters[(int)EngineCounter.ConnectionsCreated]++;
        return Verdict.Accept;
    }

    /// <summary>
    /// Translates an expected connection so it reaches the master's peer the way the master does:
    /// its source becomes what the master's peer talks to, and its destination the announced endpoint
    /// (the kernel's nf_nat_follow_master).
    /// </summary>
    private bool FollowMaster(Connection conn, Expectation expectation)
    {
        var master = expectation.Master;
        var masterTuple = master.TupleOf(expectation.NatDirection.Opposite());
        var source = NatRange.ToAddress(masterTuple.Destination);
        if (_options.HasNatPortRange && masterTuple.Destination != conn.OriginalTuple.Source)
        {
            // Leaving with a translated source: its replies must come back to a port the steering rules queue to us.
            source = source with { Flags = source.Flags | NatRangeFlags.ProtoSpecified, MinPort = _options.NatPortMin, MaxPort = _options.NatPortMax };
        }

        return _nat.SetupInfo(conn, source, ManipType.Source)
            && _nat.SetupInfo(conn, NatRange.ToAddressAndPort(masterTuple.Source, expectation.SavedPort), ManipType.Destination);
    }

    /// <summary>Starts TCP tracking; the tracker runs the first segment through its state machine too.</summary>
    private bool StartTcp(ReadOnlySpan<byte> packet, in PacketInfo info, Connection conn, long now)
    {
        var segment = ReadSegment(packet, info);
        if (!TcpTracker.TryStart(ref conn.Tcp, segment, _options.Tcp, out var update))
        {
            return false;
        }

        ApplyTcpUpdate(conn, update, now);
        return true;
    }

    private static void ApplyTcpUpdate(Connection conn, in TcpUpdate update, long now)
    {
        if (update.Assured)
        {
            conn.StatusBits |= ConnStatus.Assured;
        }

        long timeout = update.TimeoutSeconds * 1_000_000_000L;
        switch (update.TimeoutAction)
        {
            case TcpTimeoutAction.Set:
                conn.ExpiresAt = now + timeout;
                break;
            case TcpTimeoutAction.Shorten:
                long left = conn.ExpiresAt - now;
                if (left >= 120 * 1_000_000_000L && left > timeout)
                {
                    conn.ExpiresAt = now + timeout;
                }

                break;
        }

        if (update.Kill)
        {
            // A RST before any reply: the entry is finished. It still translates this last packet.
            conn.ExpiresAt = now;
        }
    }

    private static TcpSegment ReadSegment(ReadOnlySpan<byte> packet, in PacketInfo info)
    {
        var tcp = packet.Slice(info.L4Offset, info.PayloadOffset - info.L4Offset);
        return new TcpSegment(
            BinaryPrimitives.ReadUInt32BigEndian(tcp.Slice(HeaderOffsets.TcpSeq)),
            BinaryPrimitives.ReadUInt32BigEndian(tcp.Slice(HeaderOffsets.TcpAck)),
            (TcpSegmentFlags)tcp[HeaderOffsets.TcpFlags],
            BinaryPrimitives.ReadUInt16BigEndian(tcp.Slice(HeaderOffsets.TcpWindow)),
            info.PayloadLength,
            tcp.Slice(HeaderOffsets.TcpMinHeader));
    }

    /// <summary>Runs the protocol's state tracking and sets the entry's timeout.</summary>
    private Verdict TrackProtocol(ReadOnlySpan<byte> packet, in PacketInfo info, Connection conn, ConnDirection dir, bool isNew, long now, out bool reopen)
    {
        reopen = false;
        long timeout;
        switch (info.Protocol)
        {
            case IpProtocol.Tcp:
            {
                if (isNew)
                {
                    return Verdict.Accept; // The tracker already ran this segment when it started the connection.
                }

                var segment = ReadSegment(packet, info);
                int receiverOffset = 0;
                if (conn.Extras is { } extras && conn.HasStatus(ConnStatus.SeqAdjust))
                {
                    // The receiver acknowledges the other direction's data as we rewrote it; the window is in the sender's numbering.
                    receiverOffset = SeqAdj.OffsetFor(extras.SeqAdj(dir.Opposite()), segment.Ack - 1);
                }

                var verdict = TcpTracker.Process(ref conn.Tcp, segment, dir == ConnDirection.Reply, receiverOffset, _options.Tcp, out var update);
                switch (verdict)
                {
                    case TcpVerdict.Reopen:
                        if (isNew)
                        {
                            return Drop(EngineCounter.DroppedTcpInvalid);
                        }

                        reopen = true;
                        return Verdict.Accept;
                    case TcpVerdict.Invalid:
                        return Drop(EngineCounter.DroppedTcpInvalid);
                    case TcpVerdict.Ignore:
                        // Accepted without changing state (e.g. a segment the tracker could not judge).
                        return Verdict.Accept;
                }

                ApplyTcpUpdate(conn, update, now);
                return Verdict.Accept;
            }

            case IpProtocol.Udp:
            case IpProtocol.UdpLite:
                if (conn.HasStatus(ConnStatus.SeenReply))
                {
                    bool stream = now > conn.StreamAt;
                    timeout = (long)(stream ? _options.UdpStreamTimeout : _options.UdpTimeout).TotalNanoseconds;
                    if (stream)
                    {
                        conn.StatusBits |= ConnStatus.Assured;
                    }
                }
                else
                {
                    timeout = (long)_options.UdpTimeout.TotalNanoseconds;
                }

                break;

            case IpProtocol.Icmp:
            case IpProtocol.IcmpV6:
                timeout = (long)_options.IcmpTimeout.TotalNanoseconds;
                break;

            default:
                timeout = (long)_options.GenericTimeout.TotalNanoseconds;
                break;
        }

        conn.ExpiresAt = now + timeout;
        return Verdict.Accept;
    }

    /// <summary>
    /// Both hooks in one call, for a packet the kernel queued at one point only (a live queue): PreRouting, then,
    /// if it goes on, PostRouting with <see cref="PacketContext.OutInterface"/> as the kernel reported it (0 before routing).
    /// The caller does not route: the kernel routes the packet after the verdict, or already has.
    /// </summary>
    public Verdict Process(ref PacketContext ctx) =>
        PreRouting(ref ctx) == Verdict.Accept ? PostRouting(ref ctx) : Verdict.Drop;

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

        var conn = ctx.Conn;
        if (!ctx.PassedPreRouting || conn is null)
        {
            // PreRouting dropped it (and counted it), or was never called: nothing may leave untracked.
            return Verdict.Drop;
        }

        if (ctx.IsIcmpError)
        {
            return NatManip.TranslateIcmpError(ctx.Packet, ctx.Info, ctx.Inner, ctx.InnerOffset, conn, ctx.Dir, ManipType.Source)
                ? Out()
                : Drop(EngineCounter.DroppedIcmpUnrelated);
        }

        if (!NatCore.IsDone(conn, ManipType.Source) && !DecideNat(conn, ManipType.Source, ctx.InInterface, SourceNatOutInterface(in ctx, conn)))
        {
            Abandon(ref ctx);
            return Drop(EngineCounter.DroppedNatExhausted);
        }

        NatManip.Apply(ctx.Packet, ctx.Info, conn, ctx.Dir, ManipType.Source);

        if (conn.Extras?.Helper is { } helper)
        {
            var verdict = RunHelper(ref ctx, conn, helper);
            if (verdict != Verdict.Accept)
            {
                Abandon(ref ctx);
                return verdict;
            }
        }

        if (ctx.Info.Protocol == IpProtocol.Tcp && conn.HasStatus(ConnStatus.SeqAdjust) && conn.Extras is { } extras)
        {
            SeqAdj.Adjust(ctx.Packet, ctx.Info, extras.SeqAdj(ctx.Dir), extras.SeqAdj(ctx.Dir.Opposite()));
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
            _observer?.ConnectionConfirmed(conn);
            ctx.Unconfirmed = false;
        }

        return Out();
    }

    /// <summary>
    /// The out interface the SNAT rules of a new connection are matched against: the one routing chose, or, for a
    /// packet queued before routing (a live queue at PREROUTING reports none), the interface whose connected subnet
    /// holds the destination after DNAT. The kernel decides source NAT after its full routing decision; we know only
    /// the connected subnets, which is what a hairpin flow (DNAT'd to a host on the LAN, MASQUERADE out the LAN) needs.
    /// </summary>
    private int SourceNatOutInterface(in PacketContext ctx, Connection conn)
    {
        if (ctx.OutInterface != 0 || !ctx.Unconfirmed)
        {
            return ctx.OutInterface;
        }

        // The reply tuple's source is where the original packet goes after DNAT.
        return _options.Interfaces.RouteOut(conn.ReplyTuple.Family, conn.ReplyTuple.Source);
    }

    /// <summary>Looks up the NAT rules for a new connection's manip; without a match, a null binding reserves its tuple.</summary>
    private bool DecideNat(Connection conn, ManipType manip, int inInterface, int outInterface)
    {
        var packet = manip == ManipType.Source ? AfterDestinationNat(conn) : conn.OriginalTuple;
        foreach (var rule in _rules)
        {
            if (rule.Manip != manip || !rule.Matches(packet, inInterface, outInterface))
            {
                continue;
            }

            if (!TryRangeOf(rule, conn, inInterface, outInterface, out var range))
            {
                return false;
            }

            if (rule.Action == NatAction.Masquerade)
            {
                conn.MasqueradeInterface = outInterface;
            }

            return _nat.SetupInfo(conn, range, manip);
        }

        return _nat.SetupNullBinding(conn, manip);
    }

    /// <summary>
    /// The original direction as POSTROUTING sees it, where source NAT rules are matched: after destination NAT (the
    /// kernel's nat table matches the packet, whose destination DNAT has already rewritten). The reply tuple's source
    /// is where the packet goes; an ICMP query keeps its type in place of a destination port.
    /// </summary>
    private static ConnTuple AfterDestinationNat(Connection conn)
    {
        var tuple = conn.OriginalTuple;
        if (!conn.HasStatus(ConnStatus.DstNat))
        {
            return tuple;
        }

        tuple.Destination = conn.ReplyTuple.Source;
        if (!tuple.IsIcmp)
        {
            tuple.DestinationPort = conn.ReplyTuple.SourcePort;
        }

        return tuple;
    }

    private bool TryRangeOf(NatRule rule, Connection conn, int inInterface, int outInterface, out NatRange range)
    {
        range = rule.Range;
        if (rule.Action is NatAction.Snat or NatAction.Dnat)
        {
            return true;
        }

        // MASQUERADE takes the outgoing interface's address towards where the packet goes after DNAT (the reply
        // tuple's source); REDIRECT the incoming one's.
        var tuple = conn.OriginalTuple;
        int ifindex = rule.Action == NatAction.Masquerade ? outInterface : inInterface;
        if (!_options.Interfaces.TryGetPrimaryAddress(ifindex, tuple.Family, rule.Action == NatAction.Masquerade ? conn.ReplyTuple.Source : tuple.Source, out var address))
        {
            return false;
        }

        range = range with { Flags = range.Flags | NatRangeFlags.MapIps, MinAddress = address, MaxAddress = address };
        return true;
    }

    /// <summary>Forgets a packet's new, unconfirmed connection (the packet is dropped before confirmation).</summary>
    private void Abandon(ref PacketContext ctx)
    {
        if (ctx.Unconfirmed && ctx.Conn is { } conn)
        {
            if (conn.Extras is not null)
            {
                _expectations.RemoveAllOf(conn);
            }

            ForgetUnconfirmed(conn);
            ctx.Conn = null;
            ctx.Unconfirmed = false;
        }
    }

    /// <summary>
    /// An expected connection dropped before it was confirmed: the observer heard it fulfil its expectation, so it
    /// hears it go too (or it would keep, say, the connection's steering entry forever).
    /// </summary>
    private void ForgetUnconfirmed(Connection conn)
    {
        if (conn.HasStatus(ConnStatus.Expected))
        {
            _observer?.ConnectionDestroyed(conn);
        }
    }

    // ---------------------------------------------------------------- helpers and rewrites

    private Verdict RunHelper(ref PacketContext ctx, Connection conn, ConntrackHelper helper)
    {
        if (helper.DisabledReason is not null)
        {
            // A failed helper's connections go on with plain tracking.
            return Verdict.Accept;
        }

        _rewriteCount = 0;
        _rewriteScratchUsed = 0;
        _callExpectationCount = 0;
        var layout = new HelperPacketLayout(ctx.Info.L4Offset, ctx.Info.PayloadOffset, ctx.Info.PayloadLength, ctx.Info.Protocol, ctx.Dir, ctx.Ct, conn.IsNatted);
        var context = new HelperContext(_helperHost, helper, conn, ctx.Packet, layout, in conn.TupleOf(ctx.Dir), in conn.TupleOf(ctx.Dir.Opposite()));
        HelperVerdict verdict;
        try
        {
            verdict = _options.HelperInvoker is { } invoker ? invoker.Help(helper, ref context) : helper.Help(ref context);
        }
        catch (Exception e)
        {
            // Its rewrites are forgotten and the packet goes on untouched; expectations it made stay (they were valid).
            _rewriteCount = 0;
            ForgetCallExpectations();
            DisableHelper(helper, e);
            return Verdict.Accept;
        }

        if (verdict == HelperVerdict.Drop)
        {
            _rewriteCount = 0;
            WithdrawCallExpectations();
            return Drop(EngineCounter.DroppedByHelper);
        }

        if (_rewriteCount == 0 || ApplyRewrites(ref ctx, conn))
        {
            ForgetCallExpectations();
            return Verdict.Accept;
        }

        WithdrawCallExpectations();
        return Drop(EngineCounter.DroppedRewriteFailed);
    }

    private void WithdrawCallExpectations()
    {
        for (int i = 0; i < _callExpectationCount; i++)
        {
            _expectations.Remove(_callExpectations[i]!);
        }

        ForgetCallExpectations();
    }

    private void ForgetCallExpectations()
    {
        Array.Clear(_callExpectations, 0, _callExpectationCount);
        _callExpectationCount = 0;
    }

    /// <summary>Asks the master's helper whether an expected connection may start; a failed helper lets it.</summary>
    private bool AcceptExpected(ConntrackHelper helper, Connection conn, Expectation expectation)
    {
        if (helper.DisabledReason is not null)
        {
            return true;
        }

        var master = expectation.Master;
        var arriving = new ExpectedConnection(conn.OriginalTuple, master.OriginalTuple, expectation.Class, master.Extras?.HelperState);
        try
        {
            var verdict = _options.HelperInvoker is { } invoker ? invoker.OnExpectedConnection(helper, arriving) : helper.OnExpectedConnection(arriving);
            return verdict == HelperVerdict.Accept;
        }
        catch (Exception e)
        {
            DisableHelper(helper, e);
            return true;
        }
    }

    /// <summary>
    /// Disables a helper that failed: no new connection is bound to it and its connections are tracked without it. Its
    /// outstanding expectations stay: they were valid when made.
    /// </summary>
    private void DisableHelper(ConntrackHelper helper, Exception error)
    {
        if (helper.DisabledReason is not null)
        {
            return;
        }

        helper.DisabledReason = $"{error.GetType().Name}: {error.Message}";
        _counters[(int)EngineCounter.HelperFailures]++;
        _observer?.HelperDisabled(helper, error);
    }

    /// <summary>Why a helper was disabled, or null while it works.</summary>
    public static string? DisabledReason(ConntrackHelper helper) => helper.DisabledReason;

    /// <summary>Lets a disabled helper work again (after its plugin was replaced, say). New connections bind to it again.</summary>
    public static void Enable(ConntrackHelper helper) => helper.DisabledReason = null;

    internal bool QueueRewrite(int payloadLength, int offset, int length, ReadOnlySpan<byte> replacement)
    {
        if (offset < 0 || length < 0 || offset + length > payloadLength || _rewriteCount == MaxRewrites
            || replacement.Length > RewriteScratchBytes - _rewriteScratchUsed)
        {
            return false;
        }

        if (_rewriteCount > 0)
        {
            var last = _rewrites[_rewriteCount - 1];
            if (offset < last.Offset + last.Length)
            {
                return false;
            }
        }

        replacement.CopyTo(_rewriteScratch.AsSpan(_rewriteScratchUsed));
        _rewrites[_rewriteCount++] = (offset, length, _rewriteScratchUsed, replacement.Length);
        _rewriteScratchUsed += replacement.Length;
        return true;
    }

    /// <summary>
    /// Applies the queued payload rewrites: moves the bytes, fixes the IP length and checksums, and for TCP
    /// records the length change for sequence adjustment (once per packet, however many rewrites it had).
    /// </summary>
    private bool ApplyRewrites(ref PacketContext ctx, Connection conn)
    {
        var info = ctx.Info;
        int delta = 0;
        for (int i = 0; i < _rewriteCount; i++)
        {
            delta += _rewrites[i].ScratchLength - _rewrites[i].Length;
        }

        int newLength = ctx.Length + delta;
        if (newLength > ctx.Buffer.Length || newLength > 65535)
        {
            _rewriteCount = 0;
            return false;
        }

        // The packet from the first rewrite on is copied aside, then written back piece by piece: original bytes,
        // replacement, original bytes... Only the final length has to fit, whatever the order of growing and shrinking.
        int from = info.PayloadOffset + _rewrites[0].Offset;
        if (_rewriteTail.Length < ctx.Length - from)
        {
            _rewriteTail = new byte[65536];
        }

        var tail = _rewriteTail.AsSpan(0, ctx.Length - from);
        ctx.Buffer.Slice(from, tail.Length).CopyTo(tail);
        int read = 0;
        int write = from;
        for (int i = 0; i < _rewriteCount; i++)
        {
            var (offset, length, scratch, scratchLength) = _rewrites[i];
            int keep = info.PayloadOffset + offset - from - read;
            tail.Slice(read, keep).CopyTo(ctx.Buffer.Slice(write));
            write += keep;
            read += keep + length;
            _rewriteScratch.AsSpan(scratch, scratchLength).CopyTo(ctx.Buffer.Slice(write));
            write += scratchLength;
        }

        tail.Slice(read).CopyTo(ctx.Buffer.Slice(write));
        ctx.Length = newLength;

        _rewriteCount = 0;
        _counters[(int)EngineCounter.PayloadRewrites]++;

        var packet = ctx.Packet;
        info.TotalLength = ctx.Length;
        ctx.Info = info;
        if (info.Family == 4)
        {
            BinaryPrimitives.WriteUInt16BigEndian(packet.Slice(HeaderOffsets.IPv4TotalLength), (ushort)ctx.Length);
            packet[HeaderOffsets.IPv4Checksum] = 0;
            packet[HeaderOffsets.IPv4Checksum + 1] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(packet.Slice(HeaderOffsets.IPv4Checksum), Checksum.Compute(packet.Slice(0, info.L4Offset)));
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(packet.Slice(HeaderOffsets.IPv6PayloadLength), (ushort)(ctx.Length - HeaderOffsets.IPv6HeaderLength));
        }

        var l4 = packet.Slice(info.L4Offset);
        if (info.Protocol == IpProtocol.Tcp)
        {
            if (delta != 0)
            {
                var extras = conn.EnsureExtras();
                uint seq = BinaryPrimitives.ReadUInt32BigEndian(l4.Slice(HeaderOffsets.TcpSeq));
                SeqAdj.Record(ref extras.SeqAdj(ctx.Dir), seq, delta);
                conn.StatusBits |= ConnStatus.SeqAdjust;
            }

            RecomputeTransportChecksum(packet, info, HeaderOffsets.TcpChecksum, zeroMeansNone: false);
        }
        else if (info.Protocol == IpProtocol.Udp)
        {
            bool hadChecksum = BinaryPrimitives.ReadUInt16BigEndian(l4.Slice(HeaderOffsets.UdpChecksum)) != 0;
            BinaryPrimitives.WriteUInt16BigEndian(l4.Slice(HeaderOffsets.UdpLength), (ushort)l4.Length);
            if (hadChecksum)
            {
                RecomputeTransportChecksum(packet, info, HeaderOffsets.UdpChecksum, zeroMeansNone: true);
            }
        }

        return true;
    }

    private static void CompleteTransportChecksum(Span<byte> packet, in PacketInfo info)
    {
        if (info.IsFragment)
        {
            return;
        }

        switch (info.Protocol)
        {
            case IpProtocol.Tcp:
                RecomputeTransportChecksum(packet, info, HeaderOffsets.TcpChecksum, zeroMeansNone: false);
                break;
            case IpProtocol.Udp:
                RecomputeTransportChecksum(packet, info, HeaderOffsets.UdpChecksum, zeroMeansNone: true);
                break;
        }
    }

    private static void RecomputeTransportChecksum(Span<byte> packet, in PacketInfo info, int checksumOffset, bool zeroMeansNone)
    {
        var l4 = packet.Slice(info.L4Offset, info.TotalLength - info.L4Offset);
        l4[checksumOffset] = 0;
        l4[checksumOffset + 1] = 0;
        ushort check = Checksum.Finish(Checksum.Add(PacketParser.PseudoHeader(packet, info, l4.Length), l4));
        if (zeroMeansNone && check == 0)
        {
            check = 0xFFFF;
        }

        BinaryPrimitives.WriteUInt16BigEndian(l4.Slice(checksumOffset), check);
    }

    /// <summary>Registers an expectation for a helper (see <see cref="HelperContext.Expect"/>).</summary>
    internal ExpectResult Expect(Connection master, ConnDirection direction, ref ExpectationRequest request)
    {
        var helper = master.Extras?.Helper;
        var policy = helper?.Policy ?? new ExpectationPolicy(1, TimeSpan.FromMinutes(5));
        var expectation = new Expectation(master, request.Helper)
        {
            SourcePrefixLength = request.SourcePrefixLength,
            MatchSourcePort = request.MatchSourcePort,
            Flags = request.Flags,
            Class = request.Class,
        };

        var tuple = master.OriginalTuple;
        tuple.Protocol = request.Protocol;
        tuple.Source = request.Source;
        tuple.SourcePort = request.MatchSourcePort ? request.SourcePort : (ushort)0;
        tuple.Destination = request.Destination;
        tuple.DestinationPort = request.DestinationPort;
        expectation.Tuple = tuple;

        expectation.Nat = request.Nat;
        expectation.NatAddress = request.NatAddress;
        expectation.NatPort = request.NatPort;

        ExpectResult result;
        if (master.IsNatted && request.Nat == ExpectationNat.FollowMaster)
        {
            // The expected connection arrives at the master's translated address: it must be translated the
            // same way, on a port nobody else expects, starting with the announced one. The search then goes up
            // one port at a time, as the kernel's helpers did until 6.x (today's kernel tries random ports above the
            // announced one instead): predictable, and identical in a replay.
            expectation.FollowMasterNat = true;
            expectation.NatDirection = direction.Opposite();
            expectation.SavedPort = request.DestinationPort;
            result = ExpectResult.NoFreePort;
            // Only an endpoint the helper re-announces at a translated address is ours to place: the peer's own
            // endpoint (a server's passive port) must stay where the peer listens.
            bool atTranslatedAddress = request.Destination != master.TupleOf(direction).Source;
            expectation.AtTranslatedAddress = atTranslatedAddress;
            var (first, min, size) = ExpectationPortSearch(request.DestinationPort, atTranslatedAddress);
            for (int attempt = 0; attempt < Math.Min(NatCore.MaxAttempts, size); attempt++)
            {
                ushort port = (ushort)(min + ((first - min + attempt) % size));
                if (port == 0)
                {
                    continue;
                }

                tuple.DestinationPort = port;
                expectation.Tuple = tuple;
                // Announcing the same port again replaces the master's earlier expectation (a repeated PORT); a port
                // the search moved to is a new one, and one the master already expects there is taken.
                result = _expectations.Add(expectation, policy, Now, replaceSame: attempt == 0);
                if (result != ExpectResult.Clash)
                {
                    break;
                }
            }

            if (result == ExpectResult.Clash)
            {
                result = ExpectResult.NoFreePort;
            }
        }
        else
        {
            result = _expectations.Add(expectation, policy, Now);
        }

        if (result == ExpectResult.Added)
        {
            if (_callExpectationCount < _callExpectations.Length)
            {
                _callExpectations[_callExpectationCount++] = expectation;
            }

            request.DestinationPort = expectation.Tuple.DestinationPort;
            _counters[(int)EngineCounter.ExpectationsCreated]++;
        }
        else
        {
            _counters[(int)EngineCounter.ExpectationsFailed]++;
        }

        return result;
    }

    /// <summary>
    /// Where the port search for a translated expectation starts, and the range it stays in: upwards from the
    /// announced port (as the kernel), or, with a configured expectation port range, inside that range, starting at
    /// the announced port when it lies in it.
    /// </summary>
    private (int First, int Min, int Size) ExpectationPortSearch(ushort announced, bool atTranslatedAddress)
    {
        int min = _options.NatPortMin;
        int max = _options.NatPortMax;
        if (!_options.HasNatPortRange || !atTranslatedAddress)
        {
            return (announced, announced, 65536 - announced);
        }

        int size = max - min + 1;
        int first = announced >= min && announced <= max ? announced : min + (int)(announced * 2654435761u % (uint)size);
        return (first, min, size);
    }

    /// <summary>
    /// What a helper's actions do, on this engine. Each action runs in a <c>finally</c> block: a plugin aborted at its
    /// time budget is stopped between actions, never in the middle of one (the runtime does not interrupt a finally).
    /// </summary>
    private sealed class EngineHelperHost(ConntrackEngine engine) : HelperHost
    {
        internal override long NowNanoseconds => engine.Now;

        internal override object? GetState(object connection) => ((Connection)connection).Extras?.HelperState;

        internal override void SetState(object connection, object? state)
        {
            try
            {
            }
            finally
            {
                ((Connection)connection).EnsureExtras().HelperState = state;
            }
        }

        internal override ExpectResult Expect(object connection, ConnDirection direction, ref ExpectationRequest request)
        {
            var result = ExpectResult.TableFull;
            try
            {
            }
            finally
            {
                result = engine.Expect((Connection)connection, direction, ref request);
            }

            return result;
        }

        internal override bool QueueRewrite(int payloadLength, int payloadOffset, int length, ReadOnlySpan<byte> replacement)
        {
            bool queued = false;
            try
            {
            }
            finally
            {
                queued = engine.QueueRewrite(payloadLength, payloadOffset, length, replacement);
            }

            return queued;
        }

        internal override void Count(HelperEvent helperEvent) => engine.CountHelperEvent(helperEvent);

        internal override void RefreshTimeout(object connection, TimeSpan timeout)
        {
            try
            {
            }
            finally
            {
                ((Connection)connection).ExpiresAt = engine.Now + (long)(timeout.Ticks * 100);
            }
        }
    }

    internal void CountHelperEvent(HelperEvent helperEvent) =>
        _counters[(int)EngineCounter.HelperMalformedCommand + (int)helperEvent]++;

    // ---------------------------------------------------------------- lifetime

    /// <summary>Removes a connection and everything that hangs off it.</summary>
    public void Destroy(Connection conn) => Destroy(conn, null);

    private void Destroy(Connection conn, EngineCounter? reason)
    {
        conn.StatusBits |= ConnStatus.Dying;
        if (_table.Remove(conn))
        {
            _observer?.ConnectionDestroyed(conn);
        }

        if (conn.Extras is { } extras)
        {
            _expectations.RemoveAllOf(conn);
            if (extras.Helper is { } helper && helper.DisabledReason is null)
            {
                try
                {
                    if (_options.HelperInvoker is { } invoker)
                    {
                        invoker.OnDestroy(helper, extras.HelperState);
                    }
                    else
                    {
                        helper.OnDestroy(extras.HelperState);
                    }
                }
                catch (Exception e)
                {
                    DisableHelper(helper, e);
                }
            }
        }

        if (reason is { } counter)
        {
            _counters[(int)counter]++;
        }
    }

    /// <summary>
    /// Removes the connections masqueraded to an address their interface no longer has (the kernel does the same when
    /// an address goes away): their replies could never come back, and a new connection will get the new address.
    /// </summary>
    /// <param name="stillHas">Whether an interface (by index) still has an address (of a family).</param>
    /// <returns>How many connections were removed.</returns>
    public int ForgetMasqueradedToGoneAddresses(Func<int, byte, InetAddress, bool> stillHas)
    {
        ArgumentNullException.ThrowIfNull(stillHas);
        var gone = new List<Connection>();
        foreach (var connection in _table.Entries())
        {
            if (connection.MasqueradeInterface != 0
                && !stillHas(connection.MasqueradeInterface, connection.ReplyTuple.Family, connection.ReplyTuple.Destination))
            {
                gone.Add(connection);
            }
        }

        foreach (var connection in gone)
        {
            Destroy(connection, EngineCounter.ConnectionsMasqueradeGone);
        }

        return gone.Count;
    }

    /// <summary>
    /// Frees one unassured entry near <paramref name="tuple"/>'s bucket so a new connection fits (the kernel's early_drop).
    /// Assured connections are kept: they proved they are wanted.
    /// </summary>
    private bool EarlyDrop(in ConnTuple tuple)
    {
        int bucket = _table.BucketOf(tuple);
        for (int i = 0; i < EarlyDropBuckets; i++)
        {
            for (int link = _table.FirstLinkOfBucket(bucket + i); link != -1;)
            {
                var entry = _table.EntryOfLink(link);
                if (!entry.HasStatus(ConnStatus.Assured) && !entry.IsDying)
                {
                    Destroy(entry, EngineCounter.ConnectionsEarlyDropped);
                    return true;
                }

                link = ConnectionTable.NextLink(entry, link);
            }
        }

        return false;
    }

    /// <summary>
    /// Removes expired connections and expectations, looking at up to <paramref name="budget"/> table slots from
    /// where the last call stopped, so the work per call stays bounded. Returns the number of connections removed.
    /// </summary>
    public int CollectGarbage(int budget)
    {
        long now = Now;
        int removed = 0;
        int capacity = _table.Capacity;
        for (int i = 0; i < budget; i++)
        {
            var entry = _table.AtSlot(_gcCursor);
            _gcCursor = _gcCursor + 1 == capacity ? 0 : _gcCursor + 1;
            if (entry is not null && entry.ExpiresAt <= now)
            {
                Destroy(entry, EngineCounter.ConnectionsExpired);
                removed++;
            }
        }

        _counters[(int)EngineCounter.ExpectationsExpired] += _expectations.Expire(now);
        return removed;
    }
}
