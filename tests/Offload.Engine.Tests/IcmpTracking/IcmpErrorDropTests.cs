using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Offload.Engine.Conntrack;
using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Offload.Sdk.Testing;
using Offload.Engine.Tests.Packets;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.IcmpTracking;

/// <summary>
/// ICMP errors the kernel's conntrack does not find related (nf_conntrack_inet_error returns -NF_ACCEPT: the packet
/// passes untracked, and so untranslated). For a flow whose NAT lives in the daemon that would leak it, so each is a
/// drop counted under DroppedIcmpUnrelated, never an exception, and leaves the table as it was: a quote of garbage,
/// one cut inside the first 8 bytes of its transport header, one of the other family, one of no tracked flow, one
/// that is itself an ICMP error, and one of a tracked flow whose error is sent elsewhere than where that direction's
/// packets go (the kernel's "outer daddr != inner" check). A flood of them allocates nothing.
/// </summary>
public class IcmpErrorDropTests
{
    public enum Bad
    {
        Garbage,
        CutQuote,
        OtherFamily,
        UnknownFlow,
        QuotedError,
        ToAnotherHost,
        FromTheWrongSide,
    }

    private static RouterRig NatRig() => new([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan, Family = 4, Range = Ports(61000, 65535) }]);

    [Fact]
    public void Errors_that_relate_to_no_flow_in_their_direction_are_counted_drops_that_leave_the_table_alone()
    {
        var cases =
            from bad in Gen.Elements(Enum.GetValues<Bad>())
            from v6 in Gen.Elements(false, true)
            from seed in Gen.Choose(0, int.MaxValue)
            select (bad, v6, seed);
        Check.One(Deterministic.Runs(700, 0xd20b), Prop.ForAll(cases.ToArbitrary(), c => Run(c.bad, c.v6, c.seed)));
    }

    [Theory]
    [InlineData(Bad.Garbage, false)]
    [InlineData(Bad.CutQuote, false)]
    [InlineData(Bad.CutQuote, true)]
    [InlineData(Bad.OtherFamily, false)]
    [InlineData(Bad.OtherFamily, true)]
    [InlineData(Bad.UnknownFlow, true)]
    [InlineData(Bad.QuotedError, false)]
    [InlineData(Bad.QuotedError, true)]
    [InlineData(Bad.ToAnotherHost, false)]
    [InlineData(Bad.FromTheWrongSide, false)]
    [InlineData(Bad.FromTheWrongSide, true)]
    public void Each_kind_of_unrelated_error_is_dropped(Bad bad, bool v6)
    {
        for (int seed = 0; seed < 20; seed++)
        {
            Run(bad, v6, seed);
        }
    }

    [Fact]
    public void Icmp_of_one_family_inside_the_other_is_dropped_and_counted()
    {
        var rig = new RouterRig();
        var echo6InV4 = IpPacket(Client, Server, ProtoIcmpV6, IcmpQueryBody(128, 1));
        var echoInV6 = IpPacket(Client6, Server6, ProtoIcmp, IcmpQueryBody(8, 1));

        Assert.Equal(Verdict.Drop, rig.Out(echo6InV4).Verdict);
        Assert.Equal(Verdict.Drop, rig.Out(echoInV6).Verdict);
        Assert.Equal(2, rig[EngineCounter.DroppedIcmpOtherFamily]);
        Assert.Equal(0, rig.Engine.Connections.Count);
    }

    [Fact]
    public void A_flood_of_errors_quoting_random_tuples_allocates_nothing_and_changes_nothing()
    {
        const int flood = 100_000;
        var rig = NatRig();
        var sent = rig.PassOut(UdpPacket(Client, 5000, Server, 53, Ascii("q")));
        rig.PassOut(UdpPacket(Client6, 5000, Server6, 53, Ascii("q")));
        var before = Snapshot(rig);

        // Templates: an error from beyond quoting a datagram; the quoted addresses and ports are rewritten at random.
        var v4 = WithRoom(IcmpErrorPacket(FarRouter, WanAddress, IcmpDestinationUnreachable, IcmpCodePortUnreachable, sent), 0);
        var v6 = WithRoom(IcmpErrorPacket(FarRouter6, Client6, Icmp6DestinationUnreachable, Icmp6CodePortUnreachable, UdpPacket(Client6, 5000, Server6, 53, Ascii("q"))), 0);
        var buffer = new byte[2048];
        ulong random = 0x9E3779B97F4A7C15UL;

        Flood(1000);
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        Flood(flood);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;

        // Less than a byte per error: nothing per packet. (Not zero: under a loaded test run the runtime itself has been
        // seen to allocate a few bytes on this thread once, e.g. while replacing the loop's code with optimized code.)
        Assert.True(allocated < flood, $"{allocated} bytes allocated for {flood} errors");
        Assert.Equal(flood + 1000, rig[EngineCounter.DroppedIcmpUnrelated]);
        Assert.Equal(flood + 1000, rig[EngineCounter.PacketsDropped]);
        Assert.Equal(before, Snapshot(rig));

        void Flood(int count)
        {
            for (int i = 0; i < count; i++)
            {
                byte[] template = (i & 1) == 0 ? v4 : v6;
                var packet = buffer.AsSpan(0, template.Length);
                template.CopyTo(packet);
                bool isV6 = (i & 1) != 0;
                int quote = isV6 ? 48 : 28;
                int addresses = quote + (isV6 ? 8 : 12);
                int addressBytes = isV6 ? 32 : 8;
                for (int b = 0; b < addressBytes; b += 8)
                {
                    random ^= random << 13;
                    random ^= random >> 7;
                    random ^= random << 17;
                    BinaryPrimitives.WriteUInt64LittleEndian(packet.Slice(addresses + b), random);
                }

                int ports = quote + (isV6 ? 40 : 20);
                BinaryPrimitives.WriteUInt32LittleEndian(packet.Slice(ports), (uint)(random >> 32));
                FixChecksums(packet);
                var ctx = new PacketContext(buffer, template.Length, Wan);
                if (rig.Engine.Process(ref ctx) != Verdict.Drop)
                {
                    Assert.Fail("an error quoting a random tuple was accepted");
                }
            }
        }
    }

    /// <summary>Builds one unrelated error, sends it, and checks it was dropped, counted once, and changed nothing.</summary>
    internal static void Run(Bad bad, bool v6, int seed)
    {
        var r = new System.Random(seed);
        var rig = NatRig();
        string client = v6 ? Client6 : Client;
        string server = v6 ? Server6 : Server;
        string far = v6 ? FarRouter6 : FarRouter;
        byte unreachable = v6 ? Icmp6DestinationUnreachable : IcmpDestinationUnreachable;
        byte portCode = v6 ? Icmp6CodePortUnreachable : IcmpCodePortUnreachable;
        ushort clientPort = (ushort)r.Next(1024, 60000);

        // A tracked flow (masqueraded for IPv4, routed for IPv6), answered once.
        var sent = rig.PassOut(UdpPacket(client, clientPort, server, 53, Ascii("question")));
        string outside = Source(sent).ToString();
        var reply = UdpPacket(server, 53, outside, SourcePort(sent), Ascii("answer"));
        rig.PassIn(reply);
        var before = Snapshot(rig);

        (byte[] error, int inInterface, int outInterface) = bad switch
        {
            Bad.Garbage => (IcmpErrorPacket(far, outside, unreachable, portCode, Garbage(r, v6)), Wan, Lan),
            Bad.CutQuote => (IcmpErrorPacket(server, outside, unreachable, portCode, sent, quoteLength: (v6 ? 40 : 20) + r.Next(0, 8)), Wan, Lan),
            Bad.OtherFamily => (IcmpErrorPacket(v6 ? Server : Server6, v6 ? WanAddress : WanAddress6, v6 ? IcmpDestinationUnreachable : Icmp6DestinationUnreachable, portCode, sent), Wan, Lan),
            Bad.UnknownFlow => (IcmpErrorPacket(server, outside, unreachable, portCode, UdpPacket(outside, (ushort)(SourcePort(sent) ^ (1 + r.Next(0xFFFE))), server, 53, Ascii("question"))), Wan, Lan),
            Bad.QuotedError => (IcmpErrorPacket(far, outside, unreachable, portCode, IcmpErrorPacket(outside, server, unreachable, portCode, reply)), Wan, Lan),

            // B->X: the server reports the packet it got from the router to some other host.
            Bad.ToAnotherHost => (IcmpErrorPacket(server, v6 ? "2001:db8:5::77" : Remote, unreachable, portCode, sent), Wan, Lan),

            // The client reports the packet as it left the router, as if it had received it (that packet's answer goes
            // to the router's outside address, not to the server); or the server reports its own answer as if it had
            // received it. Routed, each of these quotes matches a tuple, in the direction opposite to the error's.
            _ => r.Next(2) == 0
                ? (IcmpErrorPacket(client, server, unreachable, portCode, sent), Lan, Wan)
                : (IcmpErrorPacket(server, outside, unreachable, portCode, reply), Wan, Lan),
        };

        var hop = rig.Forward(error, inInterface, outInterface);

        Assert.True(Verdict.Drop == hop.Verdict, $"{bad} v{(v6 ? 6 : 4)} seed {seed}: accepted");
        Assert.Equal(1, rig[EngineCounter.DroppedIcmpUnrelated]);
        Assert.Equal(1, rig[EngineCounter.PacketsDropped]);
        Assert.Equal(before, Snapshot(rig));
    }

    private static byte[] Garbage(System.Random r, bool v6)
    {
        var bytes = new byte[r.Next(0, 80)];
        r.NextBytes(bytes);
        if (bytes.Length > 0 && r.Next(2) == 0)
        {
            bytes[0] = (byte)((v6 ? 0x60 : 0x45) | (bytes[0] & 0x0F));
        }

        return bytes;
    }

    private static byte[] IcmpQueryBody(byte type, ushort id)
    {
        var icmp = new byte[8];
        icmp[0] = type;
        BinaryPrimitives.WriteUInt16BigEndian(icmp.AsSpan(4), id);
        return icmp;
    }

    /// <summary>Every entry's tuples, status and timeout, in table order: what an unrelated error must not change.</summary>
    private static string Snapshot(RouterRig rig) =>
        string.Join("\n", rig.Engine.Connections.Entries().Select(c => $"{c.Original} | {c.Reply} | {c.Status} | {c.ExpiresAtNanoseconds}"));
}
