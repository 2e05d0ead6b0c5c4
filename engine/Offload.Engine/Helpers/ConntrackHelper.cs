using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Packets;

namespace Offload.Engine.Helpers;

/// <summary>What a helper decides about the packet it was shown.</summary>
public enum HelperVerdict : byte
{
    /// <summary>Let the packet go on (with any rewrites the helper asked for).</summary>
    Accept,

    /// <summary>Drop the packet (counted); the sender will retransmit.</summary>
    Drop,
}

/// <summary>
/// A protocol helper (ALG): it reads the payloads of the connections bound to it, announces the
/// related connections they negotiate as expectations, and rewrites addresses in payloads when the
/// connection is translated. The engine calls it for each packet of a bound connection after NAT, as
/// the kernel calls a helper at the end of POSTROUTING.
/// </summary>
public abstract class ConntrackHelper
{
    protected ConntrackHelper(string name, ExpectationPolicy policy)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Name = name;
        Policy = policy;
    }

    /// <summary>The helper's name, as in <c>-j CT --helper NAME</c> and in listings.</summary>
    public string Name { get; }

    /// <summary>How many expectations a master may keep outstanding, and for how long.</summary>
    public ExpectationPolicy Policy { get; }

    /// <summary>Looks at one packet. Must not keep references to the context or its spans after returning.</summary>
    public abstract HelperVerdict Help(ref HelperContext context);

    /// <summary>Called when a connection bound to this helper is destroyed, so it can release per-connection state.</summary>
    public virtual void OnDestroy(Connection connection)
    {
    }

    public override string ToString() => Name;
}

/// <summary>
/// Which new connections a helper is attached to: by protocol and original destination port, and optionally
/// by the original destination address under a prefix (the tuple-and-mask form of <c>-j CT --helper</c> rules).
/// </summary>
public sealed record HelperBinding(ConntrackHelper Helper, byte Protocol, ushort Port, byte Family = 0)
{
    /// <summary>The destination network the binding is limited to (with <see cref="DestinationPrefixLength"/>).</summary>
    public InetAddress Destination { get; init; }

    /// <summary>Leading bits of the destination that must match <see cref="Destination"/>; -1 for any destination.</summary>
    public int DestinationPrefixLength { get; init; } = -1;

    public bool Matches(in ConnTuple tuple) =>
        tuple.Protocol == Protocol
        && tuple.DestinationPort == Port
        && (Family == 0 || Family == tuple.Family)
        && (DestinationPrefixLength < 0 || (tuple.Family == Family && tuple.Destination.IsInPrefix(tuple.Family, Destination, DestinationPrefixLength)));
}

/// <summary>What a helper announces: the connection it expects, and how it is to be translated.</summary>
public struct ExpectationRequest
{
    public byte Protocol;

    /// <summary>The address the expected connection comes from.</summary>
    public InetAddress Source;

    /// <summary>Leading bits of <see cref="Source"/> that must match: 0 accepts any source.</summary>
    public int SourcePrefixLength;

    public ushort SourcePort;

    /// <summary>False accepts any source port (the usual case: FTP data comes from any port).</summary>
    public bool MatchSourcePort;

    /// <summary>The address the expected connection goes to (after the master's NAT: the address its peer sees).</summary>
    public InetAddress Destination;

    /// <summary>The announced port. When the master is translated, the engine may move it to a free one and writes the port it chose back here.</summary>
    public ushort DestinationPort;

    public int Class;

    public ExpectationFlags Flags;

    /// <summary>A helper to attach to the expected connection, if it needs one.</summary>
    public ConntrackHelper? Helper;
}

/// <summary>
/// One packet as a helper sees it: the connection, direction, ctinfo and payload, and the actions a
/// helper may take. Valid only during <see cref="ConntrackHelper.Help"/>.
/// </summary>
public ref struct HelperContext
{
    private readonly ConntrackEngine _engine;
    private readonly Span<byte> _packet;
    private readonly PacketInfo _info;

    internal HelperContext(ConntrackEngine engine, Span<byte> packet, in PacketInfo info, Connection connection, ConnDirection direction, CtInfo ctInfo)
    {
        _engine = engine;
        _packet = packet;
        _info = info;
        Connection = connection;
        Direction = direction;
        CtInfo = ctInfo;
    }

    public Connection Connection { get; }

    public ConnDirection Direction { get; }

    public CtInfo CtInfo { get; }

    /// <summary>The transport payload (after the TCP or UDP header).</summary>
    public readonly ReadOnlySpan<byte> Payload => _packet.Slice(_info.PayloadOffset, _info.PayloadLength);

    /// <summary>The IP protocol of the packet.</summary>
    public readonly byte Protocol => _info.Protocol;

    /// <summary>The TCP sequence number of the payload's first byte, as the sender numbered it (before sequence adjustment).</summary>
    public readonly uint TcpSequence => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(_packet.Slice(_info.L4Offset + HeaderOffsets.TcpSeq));

    /// <summary>The tuple of the packet's direction.</summary>
    public readonly ref readonly ConnTuple Tuple => ref Connection.TupleOf(Direction);

    /// <summary>The tuple of the other direction: its destination is where a related connection from the peer must be sent to.</summary>
    public readonly ref readonly ConnTuple OtherTuple => ref Connection.TupleOf(Direction.Opposite());

    /// <summary>The engine's clock, in nanoseconds.</summary>
    public readonly long Now => _engine.Clock.NowNanoseconds;

    /// <summary>The helper's per-connection state, created on first use.</summary>
    public readonly T GetState<T>()
        where T : class, new()
    {
        var extras = Connection.EnsureExtras();
        if (extras.HelperState is T state)
        {
            return state;
        }

        state = new T();
        extras.HelperState = state;
        return state;
    }

    /// <summary>
    /// Registers an expectation with this connection as master. When the master is translated the expected
    /// connection follows its NAT, and the engine looks for a free port from the announced one up; the port
    /// it chose is written back to <paramref name="request"/>.
    /// </summary>
    public readonly ExpectResult Expect(ref ExpectationRequest request) => _engine.Expect(Connection, Direction, ref request);

    /// <summary>
    /// Asks for <paramref name="length"/> payload bytes at <paramref name="payloadOffset"/> to be replaced by
    /// <paramref name="replacement"/> (of any length). Rewrites must come in increasing, non-overlapping order;
    /// the engine applies them after the helper returns and fixes lengths, checksums and TCP sequence numbers.
    /// </summary>
    /// <returns>False when the request is out of bounds, out of order, or too large (nothing is changed then).</returns>
    public readonly bool Rewrite(int payloadOffset, int length, ReadOnlySpan<byte> replacement) =>
        _engine.QueueRewrite(_info.PayloadLength, payloadOffset, length, replacement);

    /// <summary>Counts a helper-specific event (e.g. a malformed command) in the engine's statistics.</summary>
    public readonly void Count(HelperEvent helperEvent) => _engine.CountHelperEvent(helperEvent);
}

/// <summary>Events helpers report, counted per kind.</summary>
public enum HelperEvent : byte
{
    /// <summary>A command matched but its argument was malformed.</summary>
    MalformedCommand,

    /// <summary>A command announced an address other than the sender's, and loose mode is off.</summary>
    ForeignAddressRefused,

    /// <summary>A command was split across segments and not parsed.</summary>
    PartialCommand,

    /// <summary>An expectation could not be registered.</summary>
    ExpectationFailed,

    /// <summary>A rewrite could not be applied.</summary>
    RewriteFailed,
}
