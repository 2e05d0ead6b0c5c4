using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Sharding;
using Offload.Engine.Tests.Expectations;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Sharding;

/// <summary>
/// Several engine shards, one per queue, as VPP runs one NAT table per worker: each shard translates to ports of its
/// own slice, so that the replies the kernel queues by port come back to it; what the kernel queues elsewhere (the
/// replies of a port forward, an expected connection from another address, an ICMP error about another shard's flow)
/// is handed to the shard that owns it, found in the shard directory.
/// </summary>
public class ShardTests
{
    // As the daemon builds it: source NAT without ports of its own takes the NAT port range.
    private static readonly NatRule Masquerade = new() { Action = NatAction.Masquerade, OutInterface = Wan, Range = Ports(ShardRig.NatPortMin, ShardRig.NatPortMax) };

    [Fact]
    public void Port_slices_cover_the_range_once_and_name_their_owner()
    {
        var seen = new HashSet<int>();
        for (int shard = 0; shard < 3; shard++)
        {
            var (min, max) = PortSlice.Of(61000, 65535, shard, 3);
            for (int port = min; port <= max; port++)
            {
                Assert.True(seen.Add(port), $"port {port} in two slices");
                Assert.Equal(shard, PortSlice.OwnerOf((ushort)port, 61000, 65535, 3));
            }
        }

        Assert.Equal(65535 - 61000 + 1, seen.Count);
        Assert.Equal(-1, PortSlice.OwnerOf(60999, 61000, 65535, 3));
        Assert.Equal(((ushort)61000, (ushort)65535), PortSlice.Of(61000, 65535, 0, 1));
    }

    [Fact]
    public void Masqueraded_flows_are_answered_in_the_shard_that_chose_their_port_without_a_handover()
    {
        var rig = new ShardRig(4, [Masquerade]);
        var ports = new HashSet<ushort>();
        var used = new HashSet<int>();
        for (int host = 10; host < 90; host++)
        {
            string client = $"192.168.1.{host}";
            var syn = rig.Out(TcpPacket(client, 40000, Server, 80, Syn, seq: 100));
            Assert.Equal(Verdict.Accept, syn.Verdict);
            ushort port = SourcePort(syn.Packet);
            Assert.True(ports.Add(port), $"port {port} handed out twice");
            var (min, max) = PortSlice.Of(ShardRig.NatPortMin, ShardRig.NatPortMax, syn.Shard, 4);
            Assert.InRange(port, min, max);

            var synAck = rig.In(TcpPacket(Server, 80, WanAddress, port, Syn | Ack, seq: 900, ack: 101));
            Assert.Equal(Verdict.Accept, synAck.Verdict);
            Assert.Equal(syn.Shard, synAck.Shard);
            Assert.Equal(Ip(client), Destination(synAck.Packet));
            Assert.Equal((ushort)40000, DestinationPort(synAck.Packet));
            used.Add(syn.Shard);
        }

        Assert.Equal(0, rig.Handovers);
        Assert.Equal(4, used.Count); // 80 clients spread over every shard
        Assert.Equal(0, rig.Directory.PublishedTuples); // nothing to tell: every reply comes home by its port
        Assert.Equal(80, rig.Engines.Sum(e => e.Connections.Count));
    }

    [Fact]
    public void The_reply_of_a_port_forward_queued_to_another_shard_is_handed_to_the_owner_and_translated()
    {
        var forward = new NatRule { Action = NatAction.Dnat, InInterface = Wan, Protocol = 6, DestinationPortMin = 8080, DestinationPortMax = 8080, Range = Range(InternalServer, minPort: 80) };
        var rig = new ShardRig(4, [forward, Masquerade]);

        // A remote client whose two flows' address pairs hash to different shards, as most do.
        string remote = Enumerable.Range(2, 250).Select(i => $"198.51.100.{i}")
            .First(r => rig.AddressShard(r, WanAddress) != rig.AddressShard(InternalServer, r));

        var syn = rig.In(TcpPacket(remote, 50000, WanAddress, 8080, Syn, seq: 100));
        Assert.Equal(Verdict.Accept, syn.Verdict);
        Assert.Equal(Ip(InternalServer), Destination(syn.Packet));
        Assert.Equal(rig.AddressShard(remote, WanAddress), syn.Shard);

        var synAck = rig.Out(TcpPacket(InternalServer, 80, remote, 50000, Syn | Ack, seq: 900, ack: 101));
        Assert.Equal(Verdict.Accept, synAck.Verdict);
        Assert.Equal(syn.Shard, synAck.Shard);
        Assert.Equal(1, rig.Handovers);
        Assert.Equal(Ip(WanAddress), Source(synAck.Packet));
        Assert.Equal((ushort)8080, SourcePort(synAck.Packet));
        AssertValid(synAck.Packet);
        Assert.Equal(syn.Connection, synAck.Connection);
        Assert.Equal(1, rig.Holders(syn.Connection!.Value));

        // Gone from its shard, gone from the directory: a later flow with the same tuples starts afresh.
        rig.Engines[syn.Shard].Destroy(syn.Connection!.Value);
        Assert.Equal(-1, rig.Directory.ConnectionOwnerOf(syn.Connection!.Value.Reply));
        Assert.Equal(0, rig.Directory.PublishedTuples);
    }

    [Fact]
    public void An_expected_connection_queued_to_another_shard_joins_its_masters_shard_both_ways()
    {
        var helper = new AnnouncingHelper(new ExpectationPolicy(8, TimeSpan.FromSeconds(60))) { SourcePrefixLength = 0 };
        var rig = new ShardRig(4, [], [new HelperBinding(helper, 17, 5000)]);

        // Routed (no NAT): the announcement goes to Server; the connection comes from another host (a media relay, say).
        var control = rig.Out(UdpPacket(Client, 3000, Server, 5000, Ascii("EXPECT 6001")));
        Assert.Equal(Verdict.Accept, control.Verdict);
        int master = control.Shard;
        string relay = Enumerable.Range(2, 250).Select(i => $"192.0.2.{i}").First(r => rig.AddressShard(r, Client) != master);

        var syn = rig.In(TcpPacket(relay, 20, Client, 6001, Syn, seq: 777));
        Assert.Equal(Verdict.Accept, syn.Verdict);
        Assert.Equal(master, syn.Shard);
        Assert.True(syn.Connection!.Value.HasStatus(ConnStatus.Expected));
        Assert.Equal(control.Connection, syn.Connection!.Value.Master);
        Assert.Single(helper.Arrived);

        var synAck = rig.Out(TcpPacket(Client, 6001, relay, 20, Syn | Ack, seq: 5000, ack: 778));
        Assert.Equal(Verdict.Accept, synAck.Verdict);
        Assert.Equal(master, synAck.Shard);
        Assert.Equal(syn.Connection, synAck.Connection);
        Assert.Equal(2, rig.Handovers);
        Assert.Equal(0, rig.Directory.PublishedExpectations); // taken
    }

    [Fact]
    public void An_icmp_error_about_a_masqueraded_flow_reaches_its_shard_by_the_quoted_port()
    {
        var rig = new ShardRig(4, [Masquerade]);
        var syn = rig.Out(TcpPacket(Client, 40000, Server, 80, Syn, seq: 100));

        // A router on the way reports the flow's packet (PMTU): the quote's source port is of the shard's slice.
        string far = Enumerable.Range(2, 250).Select(i => $"192.0.2.{i}").First(r => rig.AddressShard(r, WanAddress) != syn.Shard);
        var error = rig.In(IcmpErrorPacket(far, WanAddress, 3, 4, syn.Packet, rest: 1400));

        Assert.Equal(Verdict.Accept, error.Verdict);
        Assert.Equal(syn.Shard, error.Shard);
        Assert.Equal(0, rig.Handovers);
        Assert.Equal(Ip(Client), Destination(error.Packet));
        AssertValid(error.Packet);
    }

    [Fact]
    public void An_icmp_error_about_another_shards_port_forward_is_handed_to_it_and_translated()
    {
        var forward = new NatRule { Action = NatAction.Dnat, InInterface = Wan, Protocol = 6, DestinationPortMin = 8080, DestinationPortMax = 8080, Range = Range(InternalServer, minPort: 80) };
        var rig = new ShardRig(4, [forward, Masquerade]);
        string remote = Enumerable.Range(2, 250).Select(i => $"198.51.100.{i}").First(r => rig.AddressShard(r, WanAddress) != rig.AddressShard(InternalServer, r));
        var syn = rig.In(TcpPacket(remote, 50000, WanAddress, 8080, Syn, seq: 100));
        var synAck = rig.Out(TcpPacket(InternalServer, 80, remote, 50000, Syn | Ack, seq: 900, ack: 101));

        // The answer from the server, as it left, reported by a router on the way back to the remote client.
        string far = Enumerable.Range(2, 250).Select(i => $"192.0.2.{i}").First(r => rig.AddressShard(r, WanAddress) != syn.Shard);
        var error = rig.In(IcmpErrorPacket(far, WanAddress, 3, 4, synAck.Packet, rest: 1400));

        Assert.Equal(Verdict.Accept, error.Verdict);
        Assert.Equal(syn.Shard, error.Shard);
        Assert.Equal(Ip(InternalServer), Destination(error.Packet));
        AssertValid(error.Packet);
    }

    [Fact]
    public void An_icmp_error_about_a_routed_flow_published_nowhere_is_found_in_the_shard_that_holds_it()
    {
        var rig = new ShardRig(4, []);
        var syn = rig.Out(TcpPacket(Client, 40000, Server, 80, Syn, seq: 100));
        Assert.Equal(0, rig.Directory.PublishedTuples);

        string far = Enumerable.Range(2, 250).Select(i => $"192.0.2.{i}").First(r => rig.AddressShard(r, Client) != syn.Shard);
        var error = rig.In(IcmpErrorPacket(far, Client, 3, 4, syn.Packet, rest: 1400));

        Assert.Equal(Verdict.Accept, error.Verdict);
        Assert.Equal(syn.Shard, error.Shard);
        Assert.Equal(1, rig.Handovers);

        // About a flow nobody tracks: dropped, counted once, in the shard it reached.
        var stray = rig.In(IcmpErrorPacket(far, Client, 3, 4, TcpPacket(Client, 40001, Server, 80, Syn), rest: 1400));
        Assert.Equal(Verdict.Drop, stray.Verdict);
        Assert.Equal(1, rig.Engines.Sum(e => e[EngineCounter.DroppedIcmpUnrelated]));
    }

    [Fact]
    public void A_packet_no_shard_knows_is_created_where_it_arrived_and_never_handed_over()
    {
        var rig = new ShardRig(3, [Masquerade]);
        for (int host = 10; host < 40; host++)
        {
            string client = $"192.168.1.{host}";
            var hop = rig.Out(UdpPacket(client, 5353, Server, 53, Ascii("q")));
            Assert.Equal(Verdict.Accept, hop.Verdict);
            Assert.Equal(rig.AddressShard(client, Server), hop.Shard);
        }

        Assert.Equal(0, rig.Handovers);
    }
}
