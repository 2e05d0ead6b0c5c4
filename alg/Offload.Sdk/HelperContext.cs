using System.Buffers.Binary;

namespace Offload.Sdk;

/// <summary>
/// One packet as a helper sees it: the connection's tuples, direction, ctinfo and payload, and the actions a
/// helper may take. Valid only during <see cref="ConntrackHelper.Help"/>.
/// </summary>
public ref struct HelperContext
{
    private readonly HelperHost _host;
    private readonly ConntrackHelper _helper;
    private readonly object _connection;
    private readonly ReadOnlySpan<byte> _packet;
    private readonly ref readonly ConnTuple _tuple;
    private readonly ref readonly ConnTuple _otherTuple;
    private readonly int _l4Offset;
    private readonly int _payloadOffset;
    private readonly int _payloadLength;

    internal HelperContext(
        HelperHost host,
        ConntrackHelper helper,
        object connection,
        ReadOnlySpan<byte> packet,
        in HelperPacketLayout layout,
        ref readonly ConnTuple tuple,
        ref readonly ConnTuple otherTuple)
    {
        _host = host;
        _helper = helper;
        _connection = connection;
        _packet = packet;
        _tuple = ref tuple;
        _otherTuple = ref otherTuple;
        _l4Offset = layout.L4Offset;
        _payloadOffset = layout.PayloadOffset;
        _payloadLength = layout.PayloadLength;
        Protocol = layout.Protocol;
        Direction = layout.Direction;
        CtInfo = layout.CtInfo;
        IsNatted = layout.IsNatted;
    }

    /// <summary>The direction the packet travels in.</summary>
    public ConnDirection Direction { get; }

    /// <summary>What the packet is to its connection (established, related, new; original or reply).</summary>
    public CtInfo CtInfo { get; }

    /// <summary>The IP protocol of the packet (<see cref="IpProtocol"/>).</summary>
    public byte Protocol { get; }

    /// <summary>True when the connection's source or destination is translated: announced endpoints must then be rewritten.</summary>
    public bool IsNatted { get; }

    /// <summary>4 or 6.</summary>
    public readonly byte Family => _tuple.Family;

    /// <summary>The transport payload (after the TCP or UDP header), as the sender sent it.</summary>
    public readonly ReadOnlySpan<byte> Payload => _packet.Slice(_payloadOffset, _payloadLength);

    /// <summary>The TCP sequence number of the payload's first byte, as the sender numbered it (before sequence adjustment); 0 for other protocols.</summary>
    public readonly uint TcpSequence => Protocol == IpProtocol.Tcp ? BinaryPrimitives.ReadUInt32BigEndian(_packet.Slice(_l4Offset + 4)) : 0;

    /// <summary>The tuple of the packet's direction, before NAT: who sent it and to whom, as the sender sees it.</summary>
    public readonly ref readonly ConnTuple Tuple => ref _tuple;

    /// <summary>
    /// The tuple of the other direction, after NAT: its destination is the sender as the peer sees it (the address and
    /// port to announce), its source is the peer as it sees itself.
    /// </summary>
    public readonly ref readonly ConnTuple OtherTuple => ref _otherTuple;

    /// <summary>The engine's monotonic clock, in nanoseconds (capture time in a replay).</summary>
    public readonly long NowNanoseconds => _host.NowNanoseconds;

    /// <summary>The helper's state for this connection, created on first use.</summary>
    /// <typeparam name="T">The helper's own state class.</typeparam>
    public readonly T GetState<T>()
        where T : class, new()
    {
        if (_host.GetState(_connection) is T state)
        {
            return state;
        }

        state = new T();
        _host.SetState(_connection, state);
        return state;
    }

    /// <summary>The helper's state for this connection, if it has one of that type; nothing is created.</summary>
    /// <typeparam name="T">The helper's own state class.</typeparam>
    /// <param name="state">The state, or null.</param>
    public readonly bool TryGetState<T>([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out T? state)
        where T : class
    {
        state = _host.GetState(_connection) as T;
        return state is not null;
    }

    /// <summary>
    /// Sets the connection to expire <paramref name="timeout"/> from now, whatever its protocol's timeout says (the
    /// kernel's <c>nf_ct_refresh</c>): for a control connection whose answers come late, as Amanda's. The next packet
    /// may set the protocol's timeout again, as in the kernel.
    /// </summary>
    /// <param name="timeout">How long the connection lives from now without packets; at most a day.</param>
    public readonly void RefreshTimeout(TimeSpan timeout) =>
        _host.RefreshTimeout(_connection, timeout < TimeSpan.Zero ? TimeSpan.Zero : timeout > TimeSpan.FromDays(1) ? TimeSpan.FromDays(1) : timeout);

    /// <summary>Replaces (or, with null, forgets) the helper's state for this connection.</summary>
    /// <param name="state">The new state.</param>
    public readonly void SetState(object? state) => _host.SetState(_connection, state);

    /// <summary>
    /// The request most announcements make: a connection the peer opens, from its own address and any port, to the
    /// packet's sender as the peer sees it (after NAT), on <paramref name="port"/>. An FTP PORT or 227 reply, a DCC
    /// offer, a TFTP request all mean this. Change any field before <see cref="Expect"/> (a wider
    /// <see cref="ExpectationRequest.SourcePrefixLength"/>, another <see cref="ExpectationRequest.Destination"/>...).
    /// </summary>
    /// <param name="protocol">The expected connection's transport protocol.</param>
    /// <param name="port">The port the peer will connect to, as announced.</param>
    public readonly ExpectationRequest FromPeer(byte protocol, ushort port) => new()
    {
        Protocol = protocol,
        Source = _otherTuple.Source,
        SourcePrefixLength = _otherTuple.Family == 4 ? 32 : 128,
        Destination = _otherTuple.Destination,
        DestinationPort = port,
    };

    /// <summary>
    /// Registers an expectation with this connection as master. Unless the request says otherwise, the expected
    /// connection follows the master's NAT, and the engine looks for a free port from the announced one up; the port
    /// it chose is written back to <paramref name="request"/>. If the packet is then dropped (the helper says so, or
    /// its rewrite cannot be applied), the expectation is withdrawn: the peer never heard of it.
    /// </summary>
    /// <param name="request">What is expected; its <see cref="ExpectationRequest.DestinationPort"/> may be changed.</param>
    /// <returns><see cref="ExpectResult.Added"/>, or why not.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The helper declared expectation classes and the request's <see cref="ExpectationRequest.Class"/> is not one of them.</exception>
    public readonly ExpectResult Expect(ref ExpectationRequest request)
    {
        _helper.CheckClass(request.Class);
        return _host.Expect(_connection, Direction, ref request);
    }

    /// <summary>The most bytes an announcement formatted by <see cref="ExpectAndAnnounce{TState}"/> may take.</summary>
    public const int MaxAnnouncementLength = 256;

    /// <summary>
    /// (1.1) The expect-then-rewrite step of a text protocol's helper (an FTP <c>PORT</c>, a DCC offer): registers
    /// <paramref name="request"/> as <see cref="Expect"/> does; then, when the connection is translated, has
    /// <paramref name="format"/> write the announcement of the endpoint as the peer must reach it (given the request as
    /// registered: with the port the engine chose) and replaces the <paramref name="length"/> payload bytes at
    /// <paramref name="payloadOffset"/> with it. Any failure is counted (<see cref="HelperEvent.ExpectationFailed"/>,
    /// <see cref="HelperEvent.RewriteFailed"/>) and answered with <see cref="HelperVerdict.Drop"/>, as the kernel's helpers
    /// drop the segment: a peer must not hear of an endpoint nobody expects, and the expectation is then withdrawn.
    /// </summary>
    /// <typeparam name="TState">What <paramref name="format"/> needs besides the request (a value tuple: nothing is allocated).</typeparam>
    /// <param name="request">What is expected; its <see cref="ExpectationRequest.DestinationPort"/> may be changed.</param>
    /// <param name="payloadOffset">Where the announced endpoint's text starts in <see cref="Payload"/>.</param>
    /// <param name="length">How long it is.</param>
    /// <param name="state">Passed to <paramref name="format"/>.</param>
    /// <param name="format">Writes the announcement (at most <see cref="MaxAnnouncementLength"/> bytes) and returns its length, or -1. Make it <c>static</c>.</param>
    /// <returns><see cref="HelperVerdict.Accept"/>, or <see cref="HelperVerdict.Drop"/> after a counted failure.</returns>
    public readonly HelperVerdict ExpectAndAnnounce<TState>(ref ExpectationRequest request, int payloadOffset, int length, TState state, AnnouncementFormatter<TState> format)
    {
        ArgumentNullException.ThrowIfNull(format);
        if (Expect(ref request) != ExpectResult.Added)
        {
            Count(HelperEvent.ExpectationFailed);
            return HelperVerdict.Drop;
        }

        if (!IsNatted)
        {
            return HelperVerdict.Accept;
        }

        Span<byte> text = stackalloc byte[MaxAnnouncementLength];
        int written = format(in request, state, text);
        if (written < 0 || written > text.Length || !Rewrite(payloadOffset, length, text[..written]))
        {
            Count(HelperEvent.RewriteFailed);
            return HelperVerdict.Drop;
        }

        return HelperVerdict.Accept;
    }

    /// <summary>
    /// (1.1) Registers two expectations on consecutive ports, both or neither (RTP and RTCP, as the kernel's
    /// <c>nf_nat_sdp_media</c> does): <paramref name="request"/>, and the same one port up (its
    /// <see cref="ExpectationRequest.NatPort"/> one up too with <see cref="ExpectationNat.Redirect"/> or
    /// <see cref="ExpectationNat.Source"/>, its <see cref="ExpectationRequest.SourcePort"/> one up when it matches the
    /// source port). When the engine may move the port (as <see cref="Expect"/>: it follows a translated master), it looks
    /// for two free consecutive ports, from the announced one upwards two at a time (or inside the daemon's
    /// <c>nat-ports</c>), and writes the first back to <see cref="ExpectationRequest.DestinationPort"/>; otherwise only
    /// the announced pair is tried. When the second cannot be registered the first is withdrawn. Each counts against
    /// its class's limit.
    /// </summary>
    /// <param name="request">The first of the pair; its <see cref="ExpectationRequest.DestinationPort"/> may be changed.</param>
    /// <returns><see cref="ExpectResult.Added"/> when both were registered, or why not (<see cref="ExpectResult.NoFreePort"/> for an announced port of 65535 that cannot move: no room for the second).</returns>
    /// <exception cref="ArgumentOutOfRangeException">As <see cref="Expect"/>.</exception>
    public readonly ExpectResult ExpectPair(ref ExpectationRequest request)
    {
        _helper.CheckClass(request.Class);
        return _host.ExpectPair(_connection, Direction, ref request);
    }

    /// <summary>
    /// (1.1) Withdraws this connection's outstanding expectation that <paramref name="request"/> describes (as
    /// <see cref="Expect"/> wrote it back, with the port the engine chose): same protocol, destination, port, class and
    /// source. A connection that already arrived is not touched.
    /// </summary>
    /// <param name="request">What was expected.</param>
    /// <returns>True when one was withdrawn.</returns>
    public readonly bool Unexpect(in ExpectationRequest request) => _host.Unexpect(_connection, in request);

    /// <summary>(1.1) How many expectations of one class this connection has outstanding now (lapsed ones not counted).</summary>
    /// <param name="expectationClass">An <see cref="ExpectationRequest.Class"/>.</param>
    public readonly int CountExpected(int expectationClass) => _host.CountExpected(_connection, expectationClass);

    /// <summary>
    /// (1.1) Withdraws this connection's outstanding expectations of one class (the kernel's per-class flush, as SIP's
    /// BYE withdraws a call's media): connections that already arrived are not touched.
    /// </summary>
    /// <param name="expectationClass">The <see cref="ExpectationRequest.Class"/> to withdraw.</param>
    /// <returns>How many were withdrawn.</returns>
    public readonly int Unexpect(int expectationClass) => _host.Unexpect(_connection, expectationClass);

    /// <summary>
    /// Asks for <paramref name="length"/> payload bytes at <paramref name="payloadOffset"/> to be replaced by
    /// <paramref name="replacement"/> (of any length). Rewrites must come in increasing, non-overlapping order;
    /// the engine applies them after the helper returns and fixes lengths, checksums and TCP sequence numbers.
    /// </summary>
    /// <param name="payloadOffset">Where the replaced bytes start in <see cref="Payload"/>.</param>
    /// <param name="length">How many bytes are replaced.</param>
    /// <param name="replacement">What goes there instead (copied at once).</param>
    /// <returns>False when the request is out of bounds, out of order, or too large (nothing is changed then).</returns>
    public readonly bool Rewrite(int payloadOffset, int length, ReadOnlySpan<byte> replacement) =>
        _host.QueueRewrite(_payloadLength, payloadOffset, length, replacement);

    /// <summary>Counts a helper event (e.g. a malformed command) in the daemon's statistics.</summary>
    /// <param name="helperEvent">What happened.</param>
    public readonly void Count(HelperEvent helperEvent) => _host.Count(helperEvent);

    /// <summary>Writes a line to the daemon's log, marked with the helper's name. For rare events: it allocates.</summary>
    /// <param name="level">How important the line is.</param>
    /// <param name="message">The text.</param>
    public readonly void Log(HelperLogLevel level, string message) => _helper.LogSink?.Invoke(_helper, level, message);
}

/// <summary>(1.1) Writes the announcement of an expected endpoint for <see cref="HelperContext.ExpectAndAnnounce{TState}"/>.</summary>
/// <typeparam name="TState">What the helper passed along.</typeparam>
/// <param name="registered">The request as registered (its <see cref="ExpectationRequest.DestinationPort"/> is the port the peer must use).</param>
/// <param name="state">What the helper passed along.</param>
/// <param name="destination">Where to write (<see cref="HelperContext.MaxAnnouncementLength"/> bytes).</param>
/// <returns>How many bytes were written, or -1 when it cannot be formatted.</returns>
public delegate int AnnouncementFormatter<TState>(in ExpectationRequest registered, TState state, Span<byte> destination);

/// <summary>Where the parts of a packet lie, and what it is to its connection (filled by the engine).</summary>
internal readonly record struct HelperPacketLayout(
    int L4Offset,
    int PayloadOffset,
    int PayloadLength,
    byte Protocol,
    ConnDirection Direction,
    CtInfo CtInfo,
    bool IsNatted);

/// <summary>The engine's side of <see cref="HelperContext"/>: what a helper's actions do.</summary>
internal abstract class HelperHost
{
    internal abstract long NowNanoseconds { get; }

    internal abstract object? GetState(object connection);

    internal abstract void SetState(object connection, object? state);

    internal abstract ExpectResult Expect(object connection, ConnDirection direction, ref ExpectationRequest request);

    internal abstract int Unexpect(object connection, int expectationClass);

    internal abstract ExpectResult ExpectPair(object connection, ConnDirection direction, ref ExpectationRequest request);

    internal abstract bool Unexpect(object connection, in ExpectationRequest request);

    internal abstract int CountExpected(object connection, int expectationClass);

    internal abstract bool QueueRewrite(int payloadLength, int payloadOffset, int length, ReadOnlySpan<byte> replacement);

    internal abstract void Count(HelperEvent helperEvent);

    internal abstract void RefreshTimeout(object connection, TimeSpan timeout);
}
