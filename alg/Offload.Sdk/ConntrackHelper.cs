using System.Buffers;

namespace Offload.Sdk;

/// <summary>
/// A protocol helper (ALG): it reads the payloads of the connections bound to it, announces the related
/// connections they negotiate as expectations, and rewrites addresses in payloads when the connection is
/// translated. The engine calls <see cref="Help"/> for each packet of a bound connection after NAT, as the
/// kernel calls a helper at the end of POSTROUTING.
/// </summary>
/// <remarks>
/// <para>A helper is one object shared by all the connections bound to it; what it must remember per connection
/// goes in <see cref="HelperContext.GetState{T}"/>. Calls for one engine never overlap, so a helper needs no locks
/// for its own state; it must not block, sleep or do I/O, because the packet waits for it.</para>
/// <para>A helper that throws, or (when loaded as a plugin) runs or allocates past its budget, is disabled: its
/// connections fall back to plain tracking and the daemon logs why.</para>
/// </remarks>
public abstract class ConntrackHelper
{
    /// <summary>A helper with its name and its expectation policy. Set <see cref="Protocol"/> and <see cref="Ports"/> in the constructor.</summary>
    /// <param name="name">The name the configuration and listings use (as in <c>-j CT --helper NAME</c>).</param>
    /// <param name="policy">How many expectations one connection may keep outstanding, and for how long.</param>
    protected ConntrackHelper(string name, ExpectationPolicy policy)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (policy.MaxExpected < 1 || policy.Timeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(policy), policy, "a helper needs room for one expectation and a positive timeout");
        }

        Name = name;
        Policy = policy;
    }

    /// <summary>
    /// (1.1) A helper whose expectations fall into classes, each with its own limit and timeout (the kernel's
    /// <c>expect_policy</c> table, as SIP's signalling, audio, video and image). An expectation's
    /// <see cref="ExpectationRequest.Class"/> is the index of its class in <paramref name="classes"/>; the engine holds
    /// each master to each class's <see cref="ExpectationClass.MaxExpected"/> (a new one evicts the master's oldest of
    /// that class) and gives each expectation its class's <see cref="ExpectationClass.Timeout"/>. <see cref="Policy"/>
    /// is then the first class's.
    /// </summary>
    /// <param name="name">The name the configuration and listings use (as in <c>-j CT --helper NAME</c>).</param>
    /// <param name="classes">One class or more (at most <see cref="MaxExpectationClasses"/>), each with a name, room for one expectation and a positive timeout.</param>
    protected ConntrackHelper(string name, IReadOnlyList<ExpectationClass> classes)
        : this(name, FirstPolicy(classes))
    {
        var list = new ExpectationClass[classes.Count];
        for (int i = 0; i < list.Length; i++)
        {
            var c = classes[i];
            if (string.IsNullOrEmpty(c.Name) || c.MaxExpected < 1 || c.Timeout <= TimeSpan.Zero)
            {
                throw new ArgumentOutOfRangeException(nameof(classes), c, $"expectation class {i} needs a name, room for one expectation and a positive timeout");
            }

            list[i] = c;
        }

        ExpectationClasses = list;
    }

    /// <summary>(1.1) The most expectation classes a helper may declare.</summary>
    public const int MaxExpectationClasses = 16;

    private static ExpectationPolicy FirstPolicy(IReadOnlyList<ExpectationClass> classes)
    {
        ArgumentNullException.ThrowIfNull(classes);
        if (classes.Count is < 1 or > MaxExpectationClasses)
        {
            throw new ArgumentOutOfRangeException(nameof(classes), classes.Count, $"a helper declares 1 to {MaxExpectationClasses} expectation classes");
        }

        return classes[0].Policy;
    }

    /// <summary>
    /// (1.1) The expectation classes the helper declared, by index (<see cref="ExpectationRequest.Class"/>); empty for a
    /// helper made with one <see cref="ExpectationPolicy"/>, whose every class number shares <see cref="Policy"/>.
    /// </summary>
    public IReadOnlyList<ExpectationClass> ExpectationClasses { get; } = [];

    /// <summary>
    /// (1.1) The limit and timeout of one class: the declared class's, or <see cref="Policy"/> for a helper that declared
    /// none (and for a class number it did not declare, which <see cref="HelperContext.Expect"/> refuses).
    /// </summary>
    /// <param name="expectationClass">An <see cref="ExpectationRequest.Class"/>.</param>
    public ExpectationPolicy PolicyOf(int expectationClass) =>
        (uint)expectationClass < (uint)ExpectationClasses.Count ? ExpectationClasses[expectationClass].Policy : Policy;

    /// <summary>(1.1) The name of one class for listings: the declared class's name, or its number.</summary>
    /// <param name="expectationClass">An <see cref="ExpectationRequest.Class"/>.</param>
    public string ClassName(int expectationClass) =>
        (uint)expectationClass < (uint)ExpectationClasses.Count
            ? ExpectationClasses[expectationClass].Name
            : expectationClass.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Throws when a helper that declared classes asks for an expectation of a class it did not declare.</summary>
    internal void CheckClass(int expectationClass)
    {
        if (ExpectationClasses.Count > 0 && (uint)expectationClass >= (uint)ExpectationClasses.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(expectationClass), expectationClass, $"helper '{Name}' declares expectation classes 0 to {ExpectationClasses.Count - 1}");
        }
    }

    /// <summary>The helper's name, as in <c>-j CT --helper NAME</c> and in listings.</summary>
    public string Name { get; }

    /// <summary>How many expectations a master may keep outstanding, and for how long (per class: see <see cref="PolicyOf"/>).</summary>
    public ExpectationPolicy Policy { get; }

    /// <summary>The transport protocol of the connections it helps (<see cref="IpProtocol.Tcp"/> unless set).</summary>
    public byte Protocol { get; protected init; } = IpProtocol.Tcp;

    /// <summary>The destination ports it is bound to when the configuration names none.</summary>
    public IReadOnlyList<ushort> Ports { get; protected init; } = [];

    /// <summary>
    /// The transport protocols of the connections it helps when the configuration names none: <see cref="Protocol"/>
    /// alone unless set. A helper that serves TCP and UDP (a portmapper, SIP) sets both; it is then bound at each of
    /// its <see cref="Ports"/> for each of them, and reads <see cref="HelperContext.Protocol"/> to tell them apart.
    /// </summary>
    public IReadOnlyList<byte> Protocols
    {
        get => _protocols ??= [Protocol];
        protected init => _protocols = value is { Count: > 0 } ? [.. value] : throw new ArgumentException("a helper serves at least one protocol", nameof(value));
    }

    private IReadOnlyList<byte>? _protocols;

    /// <summary>
    /// The protocols and ports the helper is bound to now, by the configuration or by its own <see cref="Ports"/> and
    /// <see cref="Protocols"/>, in the engine that runs it: empty before it is bound and after it is unbound. It changes
    /// between two packets when the configuration is reloaded; each read gives one consistent list.
    /// </summary>
    public IReadOnlyList<HelperPort> BoundPorts => BoundPortList;

    /// <summary>Set by the engine whenever its bindings change.</summary>
    internal volatile HelperPort[] BoundPortList = [];

    /// <summary>4 or 6 to serve one address family only; 0 (the default) for both.</summary>
    public byte Family { get; protected init; }

    /// <summary>Set by the engine when the helper failed; read by listings. Null while it is healthy.</summary>
    internal volatile string? DisabledReason;

    /// <summary>Where <see cref="Log"/> goes; set by the engine that runs the helper.</summary>
    internal volatile Action<ConntrackHelper, HelperLogLevel, string>? LogSink;

    /// <summary>
    /// Looks at one packet of a connection bound to this helper. Must not keep references to the context or its
    /// spans after returning.
    /// </summary>
    /// <param name="context">The packet, its connection, and what the helper may do about them.</param>
    /// <returns><see cref="HelperVerdict.Accept"/> to let the packet go on (with any rewrites asked for), or <see cref="HelperVerdict.Drop"/>.</returns>
    public abstract HelperVerdict Help(ref HelperContext context);

    /// <summary>
    /// Called when a connection this helper expected arrives, before its first packet goes on. The default accepts it.
    /// </summary>
    /// <param name="connection">The new connection, its master and the expectation's class.</param>
    /// <returns><see cref="HelperVerdict.Drop"/> refuses the connection (its first packet is dropped and counted).</returns>
    public virtual HelperVerdict OnExpectedConnection(in ExpectedConnection connection) => HelperVerdict.Accept;

    /// <summary>Called when a connection bound to this helper is destroyed, with the state it kept for it (if any).</summary>
    /// <param name="state">What <see cref="HelperContext.GetState{T}"/> created for the connection, or null.</param>
    public virtual void OnDestroy(object? state)
    {
    }

    /// <summary>
    /// The version of the per-connection state <see cref="SaveState"/> writes. 0 (the default): the helper carries no
    /// state across a restart of the daemon, and its connections come back with fresh state, as after a reload.
    /// Raise it whenever the layout of what <see cref="SaveState"/> writes changes.
    /// </summary>
    public virtual int StateVersion => 0;

    /// <summary>
    /// Writes the state this helper keeps for one connection, so that the daemon can restore it after a restart or an
    /// upgrade (see <see cref="RestoreState"/>). Called while the daemon saves its table (on stop and at checkpoints),
    /// never during <see cref="Help"/>; it must not keep a reference to <paramref name="writer"/>.
    /// </summary>
    /// <param name="state">What <see cref="HelperContext.GetState{T}"/> created for the connection.</param>
    /// <param name="writer">Where to write the bytes (a few dozen at most, as a rule).</param>
    /// <returns>True when written; false (the default) to let the connection start with fresh state after a restart.</returns>
    public virtual bool SaveState(object state, IBufferWriter<byte> writer) => false;

    /// <summary>
    /// Rebuilds the state of one connection from what <see cref="SaveState"/> wrote, possibly by an older build of this
    /// helper (<paramref name="version"/> is the <see cref="StateVersion"/> it had). Called before the daemon handles any
    /// packet. Throwing, or returning null, gives the connection fresh state (counted as reset).
    /// </summary>
    /// <param name="data">The bytes written.</param>
    /// <param name="version">The <see cref="StateVersion"/> of the helper that wrote them.</param>
    /// <returns>The state, as <see cref="HelperContext.GetState{T}"/> will return it; null when it cannot be restored.</returns>
    public virtual object? RestoreState(ReadOnlySpan<byte> data, int version) => null;

    /// <summary>
    /// (1.1) The helpers this one attaches to the connections it expects (<see cref="ExpectationRequest.Helper"/>) and
    /// that are not bound to ports of their own (H.323's H.245 helper). A connection or an expectation restored from a
    /// snapshot names its helper: the daemon looks for that name among the helpers configured, then among the helpers
    /// they attach (and those attach), so that the connection gets its helper, and its saved state, back. Each needs a
    /// name of its own, unlike any configuration name; the list must not change while the helper is loaded. Empty by
    /// default: a helper that attaches none, or attaches itself, need not override it.
    /// </summary>
    public virtual IReadOnlyList<ConntrackHelper> AttachedHelpers => [];

    /// <summary>
    /// Takes the options of the helper's configuration entry (its <c>options:</c> map, keys and values as written), before
    /// the helper is bound: when the daemon starts, when the helper is loaded, and on every configuration reload, with an
    /// empty map when the entry has none or no entry names the helper. A plugin is one instance: a reload may call this
    /// while it serves packets, so replace what it keeps at once (one field holding an immutable object), never piece
    /// by piece. The default takes no options and refuses any it is given.
    /// </summary>
    /// <param name="options">The options, by name.</param>
    /// <exception cref="ArgumentException">An option is unknown or its value invalid: the configuration (or the load) is refused with this message.</exception>
    public virtual void Configure(IReadOnlyDictionary<string, string> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Count > 0)
        {
            throw new ArgumentException($"helper '{Name}' takes no options (given: {string.Join(", ", options.Keys.Order(StringComparer.Ordinal))})", nameof(options));
        }
    }

    /// <summary>Writes a line to the daemon's log, marked with the helper's name. For rare events: it allocates.</summary>
    /// <param name="level">How important the line is.</param>
    /// <param name="message">The text.</param>
    protected void Log(HelperLogLevel level, string message) => LogSink?.Invoke(this, level, message);

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>A protocol and destination port a helper is bound to (see <see cref="ConntrackHelper.BoundPorts"/>).</summary>
/// <param name="Protocol">The transport protocol (<see cref="IpProtocol.Tcp"/>, <see cref="IpProtocol.Udp"/>...).</param>
/// <param name="Port">The destination port of the connections' original direction.</param>
public readonly record struct HelperPort(byte Protocol, ushort Port)
{
    /// <summary>As listings write it: <c>tcp/21</c>, <c>udp/69</c> (another protocol by its number).</summary>
    public override string ToString() => $"{IpProtocol.Name(Protocol)}/{Port}";
}

/// <summary>What a helper decides about the packet it was shown.</summary>
public enum HelperVerdict : byte
{
    /// <summary>Let the packet go on (with any rewrites the helper asked for).</summary>
    Accept,

    /// <summary>Drop the packet (counted); the sender will retransmit.</summary>
    Drop,
}

/// <summary>Events helpers report, counted per kind in the daemon's statistics.</summary>
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

/// <summary>How important a helper's log line is (mapped to the daemon's levels and the journal's priorities).</summary>
public enum HelperLogLevel : byte
{
    /// <summary>Detail for whoever debugs the helper.</summary>
    Debug,

    /// <summary>Something worth knowing happened.</summary>
    Information,

    /// <summary>Something went wrong with one connection (hostile or broken input).</summary>
    Warning,

    /// <summary>The helper cannot do its job.</summary>
    Error,
}

/// <summary>A connection a helper expected, as it arrives (see <see cref="ConntrackHelper.OnExpectedConnection"/>).</summary>
public readonly struct ExpectedConnection
{
    /// <summary>Describes an arriving expected connection.</summary>
    /// <param name="tuple">The new connection's original tuple.</param>
    /// <param name="masterTuple">The master's original tuple.</param>
    /// <param name="expectationClass">The class the expectation was registered with.</param>
    /// <param name="masterState">The helper's state for the master, or null.</param>
    public ExpectedConnection(in ConnTuple tuple, in ConnTuple masterTuple, int expectationClass, object? masterState)
    {
        Tuple = tuple;
        MasterTuple = masterTuple;
        Class = expectationClass;
        MasterState = masterState;
    }

    /// <summary>Describes an arriving expected connection whose NAT its helper may choose (the engine's).</summary>
    internal ExpectedConnection(in ConnTuple tuple, in ConnTuple masterTuple, int expectationClass, object? masterState, ExpectedNatChoice? choice)
        : this(tuple, masterTuple, expectationClass, masterState) => _choice = choice;

    private readonly ExpectedNatChoice? _choice;

    /// <summary>
    /// (1.1) With <see cref="ExpectationNat.OnArrival"/>: translates the arriving connection's source to
    /// <paramref name="address"/> and <paramref name="port"/> (0: its own port, or another if that one is taken), as
    /// SNAT would. Call it from <see cref="ConntrackHelper.OnExpectedConnection"/> and accept the connection.
    /// </summary>
    /// <param name="address">The new source address (same family).</param>
    /// <param name="port">The new source port, or 0.</param>
    /// <returns>False when the expectation did not leave its NAT to the helper (nothing is changed then).</returns>
    public bool TranslateSource(InetAddress address, ushort port) => _choice?.Set(source: true, address, port) ?? false;

    /// <summary>
    /// (1.1) With <see cref="ExpectationNat.OnArrival"/>: translates the arriving connection's destination to
    /// <paramref name="address"/> and <paramref name="port"/> (0: the port it arrived at), as DNAT would.
    /// </summary>
    /// <param name="address">The new destination address (same family).</param>
    /// <param name="port">The new destination port, or 0.</param>
    /// <returns>False when the expectation did not leave its NAT to the helper (nothing is changed then).</returns>
    public bool TranslateDestination(InetAddress address, ushort port) => _choice?.Set(source: false, address, port) ?? false;

    /// <summary>The new connection's original tuple (as its first packet arrived, before NAT).</summary>
    public ConnTuple Tuple { get; }

    /// <summary>The original tuple of the connection whose helper announced it.</summary>
    public ConnTuple MasterTuple { get; }

    /// <summary>The <see cref="ExpectationRequest.Class"/> it was announced with.</summary>
    public int Class { get; }

    /// <summary>The helper's state for the master connection, or null when it keeps none.</summary>
    public object? MasterState { get; }
}

/// <summary>What a helper chose for an arriving expected connection's NAT (<see cref="ExpectationNat.OnArrival"/>); one per engine, reused.</summary>
internal sealed class ExpectedNatChoice
{
    public bool Open;
    public object? For;
    public bool HasSource, HasDestination;
    public InetAddress SourceAddress, DestinationAddress;
    public ushort SourcePort, DestinationPort;

    public void Reset(object? expectation, bool open)
    {
        For = expectation;
        Open = open;
        HasSource = HasDestination = false;
    }

    public bool Set(bool source, InetAddress address, ushort port)
    {
        if (!Open)
        {
            return false;
        }

        if (source)
        {
            (HasSource, SourceAddress, SourcePort) = (true, address, port);
        }
        else
        {
            (HasDestination, DestinationAddress, DestinationPort) = (true, address, port);
        }

        return true;
    }
}
