using System.Diagnostics;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Routing;

namespace Offload.Engine;

/// <summary>The engine's notion of time: monotonic nanoseconds. A replay drives it from capture timestamps.</summary>
public interface IClock
{
    long NowNanoseconds { get; }
}

/// <summary>The system's monotonic clock.</summary>
public sealed class SystemClock : IClock
{
    public static SystemClock Instance { get; } = new();

    public long NowNanoseconds => (long)(Stopwatch.GetTimestamp() * (1_000_000_000.0 / Stopwatch.Frequency));
}

/// <summary>A clock set by its owner (replays and tests).</summary>
public sealed class ManualClock : IClock
{
    public long NowNanoseconds { get; set; }

    public void Advance(TimeSpan by) => NowNanoseconds += (long)by.TotalNanoseconds;
}

/// <summary>
/// Told of the rare events of the engine's life (never of single packets), on the thread that processes the packet
/// that caused them. A live daemon uses them to keep per-flow steering entries (ipset) in step with the table.
/// Every member has a default that does nothing, so an observer implements only what it needs.
/// </summary>
public interface IConntrackObserver
{
    /// <summary>A helper registered an expectation.</summary>
    void ExpectationAdded(Expectations.Expectation expectation)
    {
    }

    /// <summary>An expectation went: it lapsed, was replaced or evicted, its master died, or a connection fulfilled it.</summary>
    void ExpectationRemoved(Expectations.Expectation expectation)
    {
    }

    /// <summary>A new connection fulfilled an expectation (it is not confirmed yet).</summary>
    void ExpectationFulfilled(Expectations.Expectation expectation, Conntrack.Connection connection)
    {
    }

    /// <summary>
    /// A new connection entered the table (it was confirmed at the end of its first packet's PostRouting). Replication
    /// sends it to the standby from here, so it is never later than the batch after its first packet.
    /// </summary>
    void ConnectionConfirmed(Conntrack.Connection connection)
    {
    }

    /// <summary>
    /// A confirmed connection left the table (expired, closed, dropped early, or its address went), or an expected
    /// connection whose <see cref="ExpectationFulfilled"/> was told was dropped before it was confirmed.
    /// </summary>
    void ConnectionDestroyed(Conntrack.Connection connection)
    {
    }

    /// <summary>A helper failed (threw, or ran past its budget) and was disabled; its connections fall back to plain tracking.</summary>
    void HelperDisabled(ConntrackHelper helper, Exception error)
    {
    }

    /// <summary>A helper wrote a log line.</summary>
    void HelperLogged(ConntrackHelper helper, HelperLogLevel level, string message)
    {
    }
}

/// <summary>
/// Runs a helper's code for the engine. The default calls it directly; the daemon runs plugins under a time budget.
/// An exception thrown out of <see cref="Help"/> or <see cref="OnExpectedConnection"/> disables the helper.
/// </summary>
public interface IHelperInvoker
{
    /// <summary>Calls <see cref="ConntrackHelper.Help"/>.</summary>
    HelperVerdict Help(ConntrackHelper helper, ref HelperContext context);

    /// <summary>Calls <see cref="ConntrackHelper.OnExpectedConnection"/>.</summary>
    HelperVerdict OnExpectedConnection(ConntrackHelper helper, in ExpectedConnection connection);

    /// <summary>Calls <see cref="ConntrackHelper.OnDestroy"/> (by default directly).</summary>
    void OnDestroy(ConntrackHelper helper, object? state) => helper.OnDestroy(state);
}

/// <summary>What to do with a packet.</summary>
public enum Verdict : byte
{
    Accept,
    Drop,

    /// <summary>
    /// Another shard owns the packet's connection, or expects it (see <see cref="EngineOptions.Directory"/>): nothing
    /// was changed or counted; the caller runs the packet through that shard (<see cref="PacketContext.OwnerShard"/>).
    /// </summary>
    Handover,
}

/// <summary>Everything that configures an engine. Read once when the engine is built.</summary>
/// <remarks>A record, so that the shards of one daemon are built from one set of options, each <c>with</c> its own <see cref="Shard"/>.</remarks>
public sealed record EngineOptions
{
    /// <summary>Most connections tracked at once (the kernel's nf_conntrack_max).</summary>
    public int MaxConnections { get; init; } = 262_144;

    /// <summary>Most expectations outstanding at once; 0 means MaxConnections / 256 (at least 64), like the kernel's default.</summary>
    public int MaxExpectations { get; init; }

    /// <summary>Key of the tuple hash. Leave 0 for a random key (live); set it for a deterministic replay.</summary>
    public ulong HashKey { get; init; }

    /// <summary>Seed of the port search. Leave 0 for a random seed (live); set it for a deterministic replay.</summary>
    public ulong RandomSeed { get; init; }

    /// <summary>Verify IPv4 header and transport checksums of incoming packets, like the kernel's nf_conntrack_checksum=1.</summary>
    public bool ValidateChecksums { get; init; } = true;

    public TcpTrackerSettings Tcp { get; init; } = new();

    /// <summary>UDP flow that has seen no reply.</summary>
    public TimeSpan UdpTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>UDP flow that has seen traffic both ways for a while.</summary>
    public TimeSpan UdpStreamTimeout { get; init; } = TimeSpan.FromSeconds(120);

    public TimeSpan IcmpTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Protocols tracked by addresses only (ESP, SCTP without a tracker, ...).</summary>
    public TimeSpan GenericTimeout { get; init; } = TimeSpan.FromSeconds(600);

    /// <summary>
    /// GRE flow that has seen no reply (the kernel's GRE_TIMEOUT), a PPTP call's too: the kernel's pptp_expectfn sets 10
    /// minutes and 5 hours for a call, but its GRE tracker sets its own timeouts on the connection's first packet, after
    /// that (seen in conntrack -L on this kernel).
    /// </summary>
    public TimeSpan GreTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>GRE flow that has seen traffic both ways (the kernel's GRE_STREAM_TIMEOUT).</summary>
    public TimeSpan GreStreamTimeout { get; init; } = TimeSpan.FromSeconds(180);

    public IReadOnlyList<NatRule> NatRules { get; init; } = [];

    /// <summary>
    /// The ports a live daemon's steering rules send back to it (0 and 0: no such range, as in a replay). The
    /// translations the engine makes up for expected connections stay in it, so that one static steering rule
    /// catches them: the port announced for a connection that will arrive at a translated address (searched from
    /// the announced port, inside the range), and the source port of an expected connection that leaves with a
    /// translated source. Without it, the kernel's behaviour: the search goes up from the announced port, and
    /// source ports are kept.
    /// </summary>
    public ushort NatPortMin { get; init; }

    /// <inheritdoc cref="NatPortMin"/>
    public ushort NatPortMax { get; init; }

    internal bool HasNatPortRange => NatPortMin != 0 || NatPortMax != 0;

    /// <summary>
    /// Which of <see cref="Shards"/> engine shards this engine is (0 for the only one). A shard chooses source NAT ports
    /// only in its own slice of each range (<see cref="Sharding.PortSlice"/>): of <see cref="NatPortMin"/>..<see
    /// cref="NatPortMax"/> and of each rule's ports.
    /// </summary>
    public int Shard { get; init; }

    /// <summary>How many engine shards share the work (1: this engine alone).</summary>
    public int Shards { get; init; } = 1;

    /// <summary>
    /// Where the shards publish what another shard's queue may receive, and look when their own table misses; null
    /// for an engine alone. With it, <see cref="ConntrackEngine.PreRouting"/> answers <see cref="Verdict.Handover"/>
    /// for a packet another shard owns.
    /// </summary>
    public Sharding.ShardDirectory? Directory { get; init; }

    /// <summary>This shard's slice of a port range (the whole range for an engine alone).</summary>
    internal (ushort Min, ushort Max) SliceOf(ushort min, ushort max) => Sharding.PortSlice.Of(min, max, Shard, Shards);

    public IReadOnlyList<HelperBinding> Helpers { get; init; } = [];

    /// <summary>How helper code is called (null: directly, exceptions contained).</summary>
    public IHelperInvoker? HelperInvoker { get; init; }

    public INetworkInterfaces Interfaces { get; init; } = new StaticNetworkInterfaces();

    /// <summary>Told of expectations and connections coming and going; null for nobody.</summary>
    public IConntrackObserver? Observer { get; init; }

    internal int EffectiveMaxExpectations => MaxExpectations > 0 ? MaxExpectations : Math.Max(64, MaxConnections / 256);
}

/// <summary>Everything the engine counts. Drops are counted by reason, never silently.</summary>
public enum EngineCounter
{
    /// <summary>Packets given to PreRouting.</summary>
    PacketsIn,

    /// <summary>Packets that PostRouting let go on: they leave the router.</summary>
    PacketsOut,

    /// <summary>Packets dropped, at either hook; each drop is also counted under its reason.</summary>
    PacketsDropped,

    // Malformed packets, one per PacketError value, in the same order.
    MalformedTruncated,
    MalformedBadVersion,
    MalformedBadIPv4HeaderLength,
    MalformedBadTotalLength,
    MalformedBadExtensionHeader,
    MalformedTooManyExtensionHeaders,
    MalformedJumboPayload,
    MalformedTcpHeaderTruncated,
    MalformedBadTcpDataOffset,
    MalformedUdpHeaderTruncated,
    MalformedBadUdpLength,
    MalformedIcmpTruncated,
    MalformedBadChecksum,

    /// <summary>A non-first fragment: no ports to track it by (a live queue sees only reassembled packets).</summary>
    DroppedLaterFragment,

    /// <summary>A packet that may not start a connection (a TCP segment without SYN when pickup is off, an ICMP reply...).</summary>
    DroppedCannotStart,

    /// <summary>A TCP segment outside the window or with impossible flags.</summary>
    DroppedTcpInvalid,

    /// <summary>Enhanced GRE (version 1) that carries no PPP: not PPTP, and the kernel refuses to track it too.</summary>
    DroppedGreNotPptp,

    /// <summary>
    /// An ICMP error quoting a packet of no tracked connection (or of one, but sent elsewhere than that direction's
    /// destination), or a quote that cannot be read: garbage, cut inside the first 8 bytes of its transport header,
    /// of the other family, a later fragment, or itself an ICMP error.
    /// </summary>
    DroppedIcmpUnrelated,

    /// <summary>ICMPv6 in an IPv4 packet or ICMP in an IPv6 one (the kernel tracks them as an unknown protocol; nobody sends them).</summary>
    DroppedIcmpOtherFamily,

    /// <summary>The table was full and no unassured entry could be dropped early.</summary>
    DroppedTableFull,

    /// <summary>No unique tuple was left in a NAT range.</summary>
    DroppedNatExhausted,

    /// <summary>A new connection's tuple was taken when it was to be confirmed.</summary>
    DroppedInsertClash,

    /// <summary>A helper dropped the packet.</summary>
    DroppedByHelper,

    /// <summary>A payload rewrite could not be applied (the packet would exceed 64 KiB or its buffer).</summary>
    DroppedRewriteFailed,

    /// <summary>
    /// A new flow to one of the router's addresses at a port of the NAT range that no connection or expectation
    /// explains (a reply to a translation the daemon no longer knows): never handed to the router's own stack, which
    /// would reset the peer's connection.
    /// </summary>
    DroppedUnknownToNatPort,

    ConnectionsCreated,
    ConnectionsExpected,
    ConnectionsExpired,
    ConnectionsEarlyDropped,
    ConnectionsReopened,

    /// <summary>Masqueraded connections removed because their interface lost the address they were translated to.</summary>
    ConnectionsMasqueradeGone,
    ExpectationsCreated,
    ExpectationsFailed,
    ExpectationsExpired,
    PayloadRewrites,

    HelperMalformedCommand,
    HelperForeignAddressRefused,
    HelperPartialCommand,
    HelperExpectationFailed,
    HelperRewriteFailed,

    /// <summary>A helper threw or ran past its budget and was disabled (its connections fall back to plain tracking).</summary>
    HelperFailures,

    /// <summary>
    /// IPv6 neighbour discovery and MLD that stayed on their link (the router's own, or to its link-local address):
    /// let through untracked, as the kernel's conntrack does.
    /// </summary>
    AcceptedUntracked,
}
