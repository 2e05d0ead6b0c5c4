using System.Net;
using Offload.Engine.Conntrack;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Offload.Engine.Routing;
using Xunit;

namespace Offload.Engine.Tests.Conntrack;

/// <summary>What one packet's trip through PreRouting (and, when accepted, PostRouting) gave.</summary>
internal sealed record Outcome(Verdict Pre, Verdict? Post, Connection? Connection, CtInfo CtInfo, ConnDirection Direction, byte[] Output)
{
    public bool Accepted => Pre == Verdict.Accept && Post == Verdict.Accept;
}

/// <summary>
/// An engine on a manual clock with a LAN (interface 1) and a WAN (interface 2), and a way to push one
/// packet through both hooks. After every packet it checks the counter invariants that hold whatever the packet was.
/// </summary>
internal sealed class EngineRig
{
    /// <summary>The clock starts well away from zero, so "expires at 0" can never pass for a real time.</summary>
    public const long StartNanoseconds = 1_000L * 1_000_000_000L;

    public const int Lan = 1;
    public const int Wan = 2;

    public EngineRig(
        int maxConnections = 1024,
        bool validateChecksums = true,
        IReadOnlyList<NatRule>? rules = null,
        IReadOnlyList<HelperBinding>? helpers = null,
        Action<TcpTrackerSettings>? tcp = null,
        ulong hashKey = 0x5EED_0000_0000_0001UL)
    {
        Interfaces = new StaticNetworkInterfaces();
        Interfaces.Add("lan0", (Addr("192.168.1.1"), 4, 24), (Addr("fd00::1"), 6, 64));
        Interfaces.Add("wan0", (Addr("203.0.113.1"), 4, 24), (Addr("2001:db8:ffff::1"), 6, 64));
        var tcpSettings = new TcpTrackerSettings();
        tcp?.Invoke(tcpSettings);
        Engine = new ConntrackEngine(
            new EngineOptions
            {
                MaxConnections = maxConnections,
                HashKey = hashKey,
                RandomSeed = 0xC0FFEE,
                ValidateChecksums = validateChecksums,
                NatRules = rules ?? [],
                Helpers = helpers ?? [],
                Interfaces = Interfaces,
                Tcp = tcpSettings,
            },
            Clock);
    }

    public ManualClock Clock { get; } = new() { NowNanoseconds = StartNanoseconds };

    public ConntrackEngine Engine { get; }

    public StaticNetworkInterfaces Interfaces { get; }

    public long this[EngineCounter counter] => Engine[counter];

    public static InetAddress Addr(string text) => InetAddress.From(IPAddress.Parse(text));

    public void Advance(double seconds) => Clock.NowNanoseconds += (long)Math.Round(seconds * 1e9);

    /// <summary>Seconds until <paramref name="connection"/> expires.</summary>
    public double SecondsLeft(Connection connection) => (connection.ExpiresAtNanoseconds - Clock.NowNanoseconds) / 1e9;

    /// <summary>A packet from the LAN to the WAN.</summary>
    public Outcome Out(byte[] packet) => Send(packet, Lan, Wan);

    /// <summary>A packet from the WAN to the LAN.</summary>
    public Outcome In(byte[] packet) => Send(packet, Wan, Lan);

    /// <summary>PreRouting, then (if it accepted) PostRouting with <paramref name="outInterface"/> as the route's choice.</summary>
    public Outcome Send(byte[] packet, int inInterface, int outInterface, int spare = 256)
    {
        var buffer = new byte[packet.Length + spare];
        packet.CopyTo(buffer, 0);
        var ctx = new PacketContext(buffer, packet.Length, inInterface);
        long droppedBefore = Engine[EngineCounter.PacketsDropped];
        long outBefore = Engine[EngineCounter.PacketsOut];

        var pre = Engine.PreRouting(ref ctx);
        var connection = ctx.Connection;
        var ct = ctx.CtInfo;
        var dir = ctx.Direction;
        Verdict? post = null;
        if (pre == Verdict.Accept)
        {
            ctx.OutInterface = outInterface;
            post = Engine.PostRouting(ref ctx);
        }

        // Each packet is either counted out or counted dropped, exactly once.
        bool accepted = pre == Verdict.Accept && post == Verdict.Accept;
        Assert.Equal(accepted ? 0 : 1, Engine[EngineCounter.PacketsDropped] - droppedBefore);
        Assert.Equal(accepted ? 1 : 0, Engine[EngineCounter.PacketsOut] - outBefore);
        AssertCounterInvariants(Engine);

        return new Outcome(pre, post, connection, ct, dir, ctx.Packet.ToArray());
    }

    /// <summary>
    /// Invariants of the counters when every accepted PreRouting is followed by PostRouting: every packet in is
    /// either out or dropped, and every drop is counted under exactly one reason.
    /// </summary>
    public static void AssertCounterInvariants(ConntrackEngine engine)
    {
        Assert.Equal(engine[EngineCounter.PacketsIn], engine[EngineCounter.PacketsOut] + engine[EngineCounter.PacketsDropped]);
        long reasons = 0;
        for (var c = EngineCounter.MalformedTruncated; c <= EngineCounter.DroppedRewriteFailed; c++)
        {
            reasons += engine[c];
        }

        Assert.Equal(engine[EngineCounter.PacketsDropped], reasons);
    }
}
