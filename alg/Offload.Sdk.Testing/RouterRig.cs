using System.Net;
using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Offload.Engine.Routing;
using Offload.Engine;

namespace Offload.Sdk.Testing;

/// <summary>What became of one packet sent through the router.</summary>
public sealed record Hop(
    Verdict Verdict,
    byte[] Packet,
    byte[] AfterPreRouting,
    Connection? Connection,
    CtInfo CtInfo,
    ConnDirection Direction)
{
    /// <summary>True when the packet went on (it was not dropped).</summary>
    public bool Accepted => Verdict == Verdict.Accept;
}

/// <summary>What a live queue's worker learns of one packet from <see cref="ConntrackEngine.Process"/>: the facts it turns into mark bits.</summary>
public sealed record LiveHop(
    Verdict Verdict,
    byte[] Packet,
    Connection? Connection,
    CtInfo CtInfo,
    ConnDirection Direction,
    ConnStatus Status,
    bool SourceNatted,
    bool DestinationNatted)
{
    /// <summary>True when the packet went on (it was not dropped).</summary>
    public bool Accepted => Verdict == Verdict.Accept;
}

/// <summary>
/// A router with three interfaces driving one engine as a forwarding path does: PreRouting, routing (the test
/// names the out interface), PostRouting. The clock is manual, the hash key and port-search seed fixed.
/// </summary>
public sealed class RouterRig
{
    /// <summary>The LAN interface's index (lan0: 192.168.1.1/24, fd00:1::1/64).</summary>
    public const int Lan = 1;
    /// <summary>The WAN interface's index (wan0: 203.0.113.1/24, 198.51.100.1/24, 2001:db8:ff::1/64).</summary>
    public const int Wan = 2;
    /// <summary>The DMZ interface's index (dmz0: 198.18.0.1/24, no IPv6).</summary>
    public const int Dmz = 3;

    /// <summary>The router's LAN address.</summary>
    public const string LanAddress = "192.168.1.1";
    /// <summary>The router's first WAN address (what MASQUERADE takes towards the servers).</summary>
    public const string WanAddress = "203.0.113.1";
    /// <summary>The router's second WAN address.</summary>
    public const string WanAddress2 = "198.51.100.1";
    /// <summary>The router's DMZ address.</summary>
    public const string DmzAddress = "198.18.0.1";
    /// <summary>The router's IPv6 LAN address.</summary>
    public const string LanAddress6 = "fd00:1::1";
    /// <summary>The router's IPv6 WAN address.</summary>
    public const string WanAddress6 = "2001:db8:ff::1";

    // Hosts around the router. The servers are off-link (no interface subnet holds them).
    /// <summary>A client on the LAN.</summary>
    public const string Client = "192.168.1.10";
    /// <summary>A second client on the LAN.</summary>
    public const string Client2 = "192.168.1.11";
    /// <summary>A server on the LAN (port forwards, hairpin).</summary>
    public const string InternalServer = "192.168.1.20";
    /// <summary>A server beyond the WAN.</summary>
    public const string Server = "192.0.2.80";
    /// <summary>A second server beyond the WAN.</summary>
    public const string Server2 = "192.0.2.81";
    /// <summary>Another host beyond the WAN.</summary>
    public const string Remote = "192.0.2.99";
    /// <summary>A router beyond the WAN (ICMP errors).</summary>
    public const string FarRouter = "192.0.2.254";
    /// <summary>An IPv6 client on the LAN.</summary>
    public const string Client6 = "fd00:1::10";
    /// <summary>A second IPv6 client on the LAN.</summary>
    public const string Client6b = "fd00:1::11";
    /// <summary>An IPv6 server beyond the WAN.</summary>
    public const string Server6 = "2001:db8:5::80";
    /// <summary>An IPv6 router beyond the WAN.</summary>
    public const string FarRouter6 = "2001:db8:5::fe";

    /// <summary>A router around a new engine with these NAT rules and helper bindings.</summary>
    /// <param name="rules">NAT rules (SNAT, DNAT, MASQUERADE, REDIRECT), in order; none by default.</param>
    /// <param name="helpers">Which connections which helper sees (<see cref="HelperBinding.Defaults"/> gives a helper's own ports and protocols).</param>
    /// <param name="seed">The port search's seed: the same seed, the same ports.</param>
    /// <param name="maxConnections">The connection table's size.</param>
    /// <param name="maxExpectations">The expectation table's size (0: the engine's default).</param>
    /// <param name="natPorts">The daemon's port range for translations (default: none, as a replay).</param>
    public RouterRig(IEnumerable<NatRule>? rules = null, IEnumerable<HelperBinding>? helpers = null, ulong seed = 0x5eed, int maxConnections = 4096, int maxExpectations = 0, (ushort Min, ushort Max) natPorts = default)
    {
        Interfaces = new StaticNetworkInterfaces();
        Check.Equal(Lan, Interfaces.Add("lan0", (A(LanAddress), 4, 24), (A(LanAddress6), 6, 64)), "interface index");

        // The WAN has two IPv4 subnets: MASQUERADE takes the one whose prefix holds the next hop.
        Check.Equal(Wan, Interfaces.Add("wan0", (A(WanAddress), 4, 24), (A(WanAddress2), 4, 24), (A(WanAddress6), 6, 64)), "interface index");

        // The DMZ has no IPv6 address at all.
        Check.Equal(Dmz, Interfaces.Add("dmz0", (A(DmzAddress), 4, 24)), "interface index");

        Engine = new ConntrackEngine(
            new EngineOptions
            {
                MaxConnections = maxConnections,
                MaxExpectations = maxExpectations,
                HashKey = 0x0123456789abcdefUL,
                RandomSeed = seed,
                NatRules = [.. rules ?? []],
                Helpers = [.. helpers ?? []],
                Interfaces = Interfaces,
                NatPortMin = natPorts.Min,
                NatPortMax = natPorts.Max,
            },
            Clock);
    }

    /// <summary>The engine's clock: advance NowNanoseconds to let timeouts pass.</summary>
    public ManualClock Clock { get; } = new() { NowNanoseconds = 1_000_000_000_000 };

    /// <summary>The router's interfaces and addresses.</summary>
    public StaticNetworkInterfaces Interfaces { get; }

    /// <summary>The engine behind the router.</summary>
    public ConntrackEngine Engine { get; }

    /// <summary>One of the engine's counters (drops by reason, expected connections...).</summary>
    /// <param name="counter">The counter.</param>
    public long this[EngineCounter counter] => Engine[counter];

    /// <summary>
    /// The usual router for a helper's test: the LAN masqueraded out of the WAN (as a home router), with the helpers
    /// bound at their own ports and protocols.
    /// </summary>
    /// <param name="helpers">The helpers under test.</param>
    public static RouterRig Masquerading(params ConntrackHelper[] helpers) =>
        new([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }], [.. helpers.SelectMany(HelperBinding.Defaults)]);

    /// <summary>The outstanding expectations, as the engine holds them now (a copy: it does not change as packets pass).</summary>
    public IReadOnlyList<Expectation> Expectations => [.. Engine.Expectations.Entries()];

    /// <summary>An address in the engine's form, from text.</summary>
    public static InetAddress A(string text) => InetAddress.From(IPAddress.Parse(text));

    /// <summary>An address, from text.</summary>
    public static IPAddress Ip(string text) => IPAddress.Parse(text);

    /// <summary>A range of addresses (and, when given, ports) for SNAT and DNAT rules.</summary>
    public static NatRange Range(string minAddress, string? maxAddress = null, ushort minPort = 0, ushort maxPort = 0, NatRangeFlags extra = NatRangeFlags.None)
    {
        var flags = NatRangeFlags.MapIps | extra;
        if (minPort != 0 || maxPort != 0)
        {
            flags |= NatRangeFlags.ProtoSpecified;
        }

        return new NatRange(flags, A(minAddress), A(maxAddress ?? minAddress), minPort, maxPort == 0 ? minPort : maxPort);
    }

    /// <summary>A port range alone (MASQUERADE, REDIRECT).</summary>
    public static NatRange Ports(ushort minPort, ushort maxPort) => new(NatRangeFlags.ProtoSpecified, default, default, minPort, maxPort);

    /// <summary>PreRouting, then (if accepted) PostRouting with <paramref name="outInterface"/> as the route's choice.</summary>
    public Hop Forward(byte[] packet, int inInterface, int outInterface, int room = 2048)
    {
        var buffer = TestPackets.WithRoom(packet, room);
        return ForwardInBuffer(buffer, packet.Length, inInterface, outInterface);
    }

    /// <summary>Forwards a packet already placed in <paramref name="buffer"/> (to control the room it has).</summary>
    public Hop ForwardInBuffer(byte[] buffer, int length, int inInterface, int outInterface)
    {
        var ctx = new PacketContext(buffer, length, inInterface);
        var verdict = Engine.PreRouting(ref ctx);
        var afterPre = ctx.Packet.ToArray();
        if (verdict != Verdict.Accept)
        {
            return new Hop(verdict, [], afterPre, ctx.Connection, ctx.CtInfo, ctx.Direction);
        }

        var connection = ctx.Connection;
        var ctInfo = ctx.CtInfo;
        var direction = ctx.Direction;
        ctx.OutInterface = outInterface;
        verdict = Engine.PostRouting(ref ctx);
        return new Hop(verdict, verdict == Verdict.Accept ? ctx.Packet.ToArray() : [], afterPre, connection, ctInfo, direction);
    }

    /// <summary>
    /// Both hooks in one <see cref="ConntrackEngine.Process"/> call, as the live daemon runs a queued packet:
    /// <paramref name="outInterface"/> is what the kernel reported (0 for a packet queued before routing).
    /// </summary>
    public LiveHop Live(byte[] packet, int inInterface, int outInterface = 0, int room = 2048)
    {
        var buffer = TestPackets.WithRoom(packet, room);
        var ctx = new PacketContext(buffer, packet.Length, inInterface) { OutInterface = outInterface };
        var verdict = Engine.Process(ref ctx);
        return new LiveHop(
            verdict, verdict == Verdict.Accept ? ctx.Packet.ToArray() : [], ctx.Connection, ctx.CtInfo, ctx.Direction,
            ctx.ConnectionStatus, ctx.IsSourceNatted, ctx.IsDestinationNatted);
    }

    /// <summary>PreRouting alone (a packet delivered to the router itself, e.g. after REDIRECT).</summary>
    public Hop Pre(byte[] packet, int inInterface, int room = 2048)
    {
        var buffer = TestPackets.WithRoom(packet, room);
        var ctx = new PacketContext(buffer, packet.Length, inInterface);
        var verdict = Engine.PreRouting(ref ctx);
        var after = ctx.Packet.ToArray();
        return new Hop(verdict, verdict == Verdict.Accept ? after : [], after, ctx.Connection, ctx.CtInfo, ctx.Direction);
    }

    /// <summary>From the LAN out to the WAN.</summary>
    public Hop Out(byte[] packet, int room = 2048) => Forward(packet, Lan, Wan, room);

    /// <summary>From the WAN in to the LAN.</summary>
    public Hop In(byte[] packet, int room = 2048) => Forward(packet, Wan, Lan, room);

    /// <summary>Forwards a packet that must be accepted, and checks the result's lengths and checksums from scratch.</summary>
    public byte[] Pass(byte[] packet, int inInterface, int outInterface)
    {
        var hop = Forward(packet, inInterface, outInterface);
        Check.That(hop.Accepted, $"packet was dropped; drops: {DropSummary()}");
        TestPackets.AssertValid(hop.Packet);
        return hop.Packet;
    }

    /// <summary>Forwards a packet from the LAN to the WAN that must be accepted, and checks it (see Pass).</summary>
    public byte[] PassOut(byte[] packet) => Pass(packet, Lan, Wan);

    /// <summary>Forwards a packet from the WAN to the LAN that must be accepted, and checks it (see Pass).</summary>
    public byte[] PassIn(byte[] packet) => Pass(packet, Wan, Lan);

    /// <summary>The non-zero drop counters, for failure messages.</summary>
    public string DropSummary() => string.Join(", ", Enum.GetValues<EngineCounter>()
        .Where(c => c.ToString().StartsWith("Dropped", StringComparison.Ordinal) || c.ToString().StartsWith("Malformed", StringComparison.Ordinal))
        .Where(c => Engine[c] != 0)
        .Select(c => $"{c}={Engine[c]}"));
}
