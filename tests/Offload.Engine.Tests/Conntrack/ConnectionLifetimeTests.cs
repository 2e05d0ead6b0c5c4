using Offload.Engine.Conntrack;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Conntrack;

/// <summary>
/// The slots of the by-value table over a connection's life: a new connection takes one and allocates nothing, a
/// packet that never confirms its connection gives its slot back, and handles kept past a connection's end say so.
/// </summary>
public class ConnectionLifetimeTests
{
    private static readonly NatRule Masquerade = new() { Action = NatAction.Masquerade, OutInterface = Wan };

    private static byte[][] Syns(int count, int firstPort) =>
        [.. Enumerable.Range(firstPort, count).Select(port => TcpPacket(Client, (ushort)port, Server, 80, Syn, seq: 1))];

    [Fact]
    public void New_masqueraded_connections_allocate_nothing()
    {
        var rig = new RouterRig([Masquerade], maxConnections: 8192);
        var buffer = new byte[2048];
        int refused = 0;
        void Send(byte[] packet)
        {
            packet.CopyTo(buffer, 0);
            var ctx = new PacketContext(buffer, packet.Length, Lan) { OutInterface = Wan };
            if (rig.Engine.Process(ref ctx) != Verdict.Accept)
            {
                refused++;
            }
        }

        // Warm-up: the code reaches its last tier, and the table's first chunk of slots is there.
        foreach (var syn in Syns(300, 10_000))
        {
            Send(syn);
        }

        long least = long.MaxValue;
        for (int round = 0; round < 3; round++)
        {
            var syns = Syns(500, 20_000 + (round * 500));
            long before = GC.GetAllocatedBytesForCurrentThread();
            foreach (var syn in syns)
            {
                Send(syn);
            }

            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }

        Assert.Equal(0, refused);
        Assert.Equal(1800, rig.Engine.Connections.Count);
        Assert.Equal(0, least);
    }

    [Fact]
    public void A_new_connection_whose_packet_never_reaches_postrouting_gives_its_slot_back()
    {
        var rig = new RouterRig([Masquerade]);
        var table = rig.Engine.Connections;
        var first = TcpPacket(Client, 40000, Server, 80, Syn, seq: 1);
        var ctx = new PacketContext(first, first.Length, Lan);
        Assert.Equal(Verdict.Accept, rig.Engine.PreRouting(ref ctx));
        var abandoned = ctx.Connection!.Value;
        Assert.True(abandoned.IsAlive);
        Assert.False(abandoned.IsInTable);
        Assert.Equal(1, table.SlotsHeld);

        // The next new connection finds the last one's packet gone (the kernel frees an unconfirmed entry with its skb).
        Assert.True(rig.Out(TcpPacket(Client, 40001, Server, 80, Syn, seq: 1)).Accepted);
        Assert.False(abandoned.IsAlive);
        Assert.Equal(1, table.Count);
        Assert.Equal(1, table.SlotsHeld);
    }

    [Fact]
    public void A_handle_kept_past_its_connection_names_nothing_in_the_slot_taken_since()
    {
        var rig = new RouterRig([Masquerade], maxConnections: 1);
        var first = rig.Out(TcpPacket(Client, 40000, Server, 80, Syn, seq: 1)).Connection!.Value;
        rig.Engine.Destroy(first);
        Assert.False(first.IsAlive);
        Assert.False(first.IsInTable);

        var second = rig.Out(TcpPacket(Client, 40001, Server, 80, Syn, seq: 1)).Connection!.Value;
        Assert.Equal(first.Index, second.Index);
        Assert.NotEqual(first, second);

        // Destroying through the stale handle, or keeping it, leaves the slot's new connection alone.
        long expires = second.ExpiresAtNanoseconds;
        rig.Engine.KeepUntil(first, long.MaxValue);
        rig.Engine.Destroy(first);
        Assert.True(second.IsInTable);
        Assert.Equal(expires, second.ExpiresAtNanoseconds);
        Assert.Equal(1, rig.Engine.Connections.Count);
    }

    [Fact]
    public void Staged_lookups_find_the_buckets_lookups_use_and_change_nothing()
    {
        var rig = new RouterRig([Masquerade]);
        var syns = Syns(64, 30_000);
        foreach (var syn in syns)
        {
            Assert.True(rig.Out(syn).Accepted);
        }

        var table = rig.Engine.Connections;
        var buckets = new int[syns.Length + 2];
        for (int i = 0; i < syns.Length; i++)
        {
            buckets[i] = rig.Engine.LookupBucketOf(syns[i]);
            var tuple = new ConnTuple(4, IpProtocol.Tcp, InetAddress.From(System.Net.IPAddress.Parse(Client)), (ushort)(30_000 + i), InetAddress.From(System.Net.IPAddress.Parse(Server)), 80);
            Assert.Equal(table.BucketOf(tuple), buckets[i]);
        }

        // Nothing to stage for an ICMP error (its lookup is by the flow it quotes) or a packet cut short.
        buckets[^2] = rig.Engine.LookupBucketOf(IcmpErrorPacket(Server, Client, 3, 3, syns[0]));
        buckets[^1] = rig.Engine.LookupBucketOf(syns[0].AsSpan(0, 10));
        Assert.Equal(-1, buckets[^2]);
        Assert.Equal(-1, buckets[^1]);

        var before = table.Entries().Select(c => (c, c.Original, c.Reply, c.Status, c.ExpiresAtNanoseconds)).ToList();
        rig.Engine.PrepareLookups(buckets);
        Assert.Equal(before, table.Entries().Select(c => (c, c.Original, c.Reply, c.Status, c.ExpiresAtNanoseconds)).ToList());
        Assert.False(rig.Engine.StagesLookups);
        Assert.True(rig.Out(syns[5]).Accepted);
    }
}
