using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.NetbiosNs;
using Offload.Engine;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.NetbiosNs;

/// <summary>
/// The NetBIOS-NS helper through the engine (the kernel's nf_conntrack_netbios_ns): a name query a masqueraded LAN host
/// sends to a broadcast address beyond the router is answered by whichever hosts of that subnet hold the name, from
/// port 137, each answer let in as related and sent back to the querier; nothing else is let in, and a unicast query
/// expects nothing.
/// </summary>
public class NetbiosNsHelperTests
{
    private const string Broadcast = "203.0.113.255";
    private const string Holder = "203.0.113.7";
    private const string Holder2 = "203.0.113.8";
    private const ushort QueryPort = 40137;

    // A name query for WORKGROUP<00> (RFC 1002), as nmblookup sends it; the helper does not read it.
    private static readonly byte[] Query = [0x12, 0x34, 0x01, 0x10, 0, 1, 0, 0, 0, 0, 0, 0, 0x20, .. Ascii("FHEPFCELEHFCEPFFFACACACACACACAAA"), 0, 0, 0x20, 0, 1];
    private static readonly byte[] Answer = [0x12, 0x34, 0x85, 0x00, 0, 0, 0, 1, 0, 0, 0, 0];

    private static (RouterRig Rig, ushort Port) Queried(string destination)
    {
        var rig = Masquerading(new NetbiosNsHelper());
        var query = rig.Out(UdpPacket(Client, QueryPort, destination, 137, Query));
        Assert.True(query.Accepted, rig.DropSummary());
        Assert.Equal(Ip(WanAddress), Source(query.Packet));
        return (rig, SourcePort(query.Packet));
    }

    [Fact]
    public void Answers_from_every_holder_of_the_broadcast_subnet_reach_the_querier_as_related()
    {
        (var rig, ushort port) = Queried(Broadcast);
        var expectation = Assert.Single(rig.Expectations);
        // 203.0.113.255 ends in nine one bits: read as the broadcast of 203.0.112.0/23, a /24's neighbour included.
        Assert.Equal(A("203.0.112.0"), expectation.Tuple.Source);
        Assert.Equal(A(WanAddress), expectation.Tuple.Destination);
        Assert.Equal(port, expectation.Tuple.DestinationPort);

        foreach (string holder in new[] { Holder, Holder2 })
        {
            var answer = rig.In(UdpPacket(holder, 137, WanAddress, port, Answer));
            Assert.True(answer.Accepted, rig.DropSummary());
            Assert.Equal(CtInfo.Related, answer.CtInfo);
            AssertValid(answer.Packet);
            Assert.Equal((Ip(holder), Ip(Client), QueryPort), (Source(answer.Packet), Destination(answer.Packet), DestinationPort(answer.Packet)));
        }

        Assert.Equal(2, rig[EngineCounter.ConnectionsExpected]);
    }

    [Theory]
    [InlineData("198.51.100.7", 137)] // another subnet
    [InlineData(Holder, 138)]         // another port
    public void An_answer_from_outside_the_subnet_or_from_another_port_is_not_expected(string source, ushort sourcePort)
    {
        (var rig, ushort port) = Queried(Broadcast);
        var answer = rig.In(UdpPacket(source, sourcePort, WanAddress, port, Answer));
        Assert.NotEqual(CtInfo.Related, answer.CtInfo);
        Assert.False(answer.Accepted && Destination(answer.Packet).Equals(Ip(Client)));
    }

    [Fact]
    public void The_answers_are_expected_for_three_seconds()
    {
        (var rig, ushort port) = Queried(Broadcast);
        rig.Clock.NowNanoseconds += 3_100_000_000;
        var answer = rig.In(UdpPacket(Holder, 137, WanAddress, port, Answer));
        Assert.NotEqual(CtInfo.Related, answer.CtInfo);
    }

    [Fact]
    public void A_unicast_query_expects_nothing_and_its_answer_comes_on_the_flow()
    {
        (var rig, ushort port) = Queried(Server); // 192.0.2.80: ends in a zero bit
        Assert.Empty(rig.Expectations);
        var answer = rig.In(UdpPacket(Server, 137, WanAddress, port, Answer));
        Assert.True(answer.Accepted);
        Assert.Equal(CtInfo.EstablishedReply, answer.CtInfo);
    }

    [Theory]
    [InlineData("198.51.100.255", "198.51.100.0", 24)]
    [InlineData("10.255.255.255", "10.0.0.0", 8)]
    [InlineData("198.51.100.127", "198.51.100.0", 25)]
    [InlineData("198.51.100.3", "198.51.100.0", 30)]
    [InlineData("255.255.255.255", "0.0.0.0", 0)]
    public void The_subnet_is_read_from_the_broadcast_address(string destination, string network, int prefix)
    {
        Assert.True(BroadcastQuery.TryBroadcastSubnet(Value(destination), out uint n, out int p));
        Assert.Equal((Value(network), prefix), (n, p));
    }

    [Fact]
    public void The_subnet_read_always_holds_the_real_one_whose_broadcast_was_asked()
    {
        Check.One(FsCheck.Config.QuickThrowOnFailure.WithMaxTest(1000), Prop.ForAll(
            ArbMap.Default.ArbFor<uint>(), Gen.Choose(0, 30).ToArbitrary(), (address, prefix) =>
            {
                uint hostMask = prefix == 0 ? uint.MaxValue : (1u << (32 - prefix)) - 1;
                uint broadcast = address | hostMask;
                Assert.True(BroadcastQuery.TryBroadcastSubnet(broadcast, out uint network, out int readPrefix));
                Assert.True(readPrefix <= prefix);
                uint readMask = readPrefix == 0 ? 0 : uint.MaxValue << (32 - readPrefix);
                Assert.Equal(network, broadcast & readMask);
                Assert.Equal(network, (address & ~hostMask) & readMask); // the real subnet lies inside
            }));
    }

    [Fact]
    public void An_address_ending_in_fewer_than_two_one_bits_is_no_broadcast()
    {
        Assert.False(BroadcastQuery.TryBroadcastSubnet(Value("203.0.113.1"), out _, out _));
        Assert.False(BroadcastQuery.TryBroadcastSubnet(Value("203.0.113.254"), out _, out _));
    }

    [Fact]
    public void Its_name_port_and_family_are_the_kernels()
    {
        var helper = Assert.IsType<NetbiosNsHelper>(BuiltInHelpers.Create("netbios-ns", loose: false));
        Assert.Equal(("netbios-ns", (ushort)137, (byte)17, (byte)4), (helper.Name, Assert.Single(helper.Ports), helper.Protocol, helper.Family));
    }

    private static uint Value(string address) => BinaryPrimitives.ReadUInt32BigEndian(Ip(address).GetAddressBytes());
}
