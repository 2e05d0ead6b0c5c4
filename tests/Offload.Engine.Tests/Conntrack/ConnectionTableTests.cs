using System.Runtime.CompilerServices;
using Offload.Engine.Conntrack;
using Offload.Engine.Packets;
using Xunit;

namespace Offload.Engine.Tests.Conntrack;

public class ConnectionTableTests
{
    private const ulong Key = 0x0123_4567_89AB_CDEF;

    private static ConnTuple Udp(uint source, ushort sourcePort, uint destination = 0x0A00_0001, ushort destinationPort = 53) =>
        new(4, IpProtocol.Udp, InetAddress.FromIPv4(source), sourcePort, InetAddress.FromIPv4(destination), destinationPort);

    private static Connection Conn(ConnectionTable table, ConnTuple original) => table.Create(original, original.Invert());

    private static Connection Conn(ConnectionTable table, ConnTuple original, ConnTuple reply) => table.Create(original, reply);

    private static void AssertFound(ConnectionTable table, Connection conn)
    {
        Assert.True(table.TryFind(conn.Original, out var found, out var dir));
        Assert.Equal(conn, found);
        Assert.Equal(ConnDirection.Original, dir);
        Assert.True(table.TryFind(conn.Reply, out found, out dir));
        Assert.Equal(conn, found);
        Assert.Equal(ConnDirection.Reply, dir);
    }

    /// <summary>Tuples whose hash lands in <paramref name="bucket"/>, found by trying source ports.</summary>
    private static List<ConnTuple> TuplesInBucket(ConnectionTable table, int bucket, int count, uint source = 0xC0A8_0001)
    {
        var found = new List<ConnTuple>();
        for (int port = 1; found.Count < count; port++)
        {
            var t = Udp(source, (ushort)port);
            if (table.BucketOf(t) == bucket)
            {
                found.Add(t);
            }
        }

        return found;
    }

    [Fact]
    public void Finds_an_entry_by_either_tuple()
    {
        var table = new ConnectionTable(100, Key);
        var c = Conn(table, Udp(1, 1000));
        table.Insert(c);
        AssertFound(table, c);
        Assert.Equal(1, table.Count);
        Assert.False(table.TryFind(Udp(1, 1001), out _, out _));
        Assert.False(table.TryFind(Udp(2, 1000), out _, out _));
        Assert.Equal(c, table.AtSlot(c.Slot));
        Assert.Single(table.Entries(), c);
    }

    [Fact]
    public void Removing_from_the_middle_of_a_chain_keeps_the_rest_reachable()
    {
        var table = new ConnectionTable(8, Key);
        Assert.Equal(16, table.BucketCount);
        var tuples = TuplesInBucket(table, 5, 4);
        var conns = tuples.Select(t => Conn(table, t)).ToList();
        foreach (var c in conns)
        {
            table.Insert(c);
        }

        // Newest first in the chain: removing conns[2] unlinks a middle element, conns[0] the tail, conns[3] the head.
        foreach (int victim in new[] { 2, 0, 3 })
        {
            Assert.True(table.Remove(conns[victim]));
            Assert.False(table.TryFind(conns[victim].Original, out _, out _));
            Assert.False(table.TryFind(conns[victim].Reply, out _, out _));
            Assert.False(table.Remove(conns[victim])); // already gone
            foreach (var c in conns.Where(c => c.Slot >= 0))
            {
                AssertFound(table, c);
            }
        }

        Assert.Equal(1, table.Count);
    }

    [Fact]
    public void A_chain_mixing_original_and_reply_links_unlinks_the_right_one()
    {
        var table = new ConnectionTable(8, Key);
        // Three entries: one whose original tuple, one whose reply tuple, and one with both in bucket 9.
        var inBucket = TuplesInBucket(table, 9, 4);
        var a = Conn(table, inBucket[0], Udp(0x0B00_0001, 1));
        var b = Conn(table, Udp(0x0B00_0002, 2), inBucket[1]);
        var c = Conn(table, inBucket[2], inBucket[3]);
        table.Insert(a);
        table.Insert(b);
        table.Insert(c);
        AssertFound(table, a);
        AssertFound(table, b);
        AssertFound(table, c);

        Assert.True(table.Remove(b));
        AssertFound(table, a);
        AssertFound(table, c);
        Assert.True(table.Remove(c));
        AssertFound(table, a);
        Assert.False(table.TryFind(inBucket[3], out _, out _));
    }

    [Fact]
    public void Rehash_moves_the_reply_tuple_to_its_new_bucket()
    {
        var table = new ConnectionTable(8, Key);
        var original = Udp(0xC0A8_0002, 40000, 0x0808_0808, 53);
        var c = Conn(table, original);
        table.Insert(c);
        var others = TuplesInBucket(table, table.BucketOf(c.Reply), 2, 0x0A0A_0A0A).Select(t => Conn(table, t)).ToList();
        others.ForEach(table.Insert);

        var oldReply = c.Reply;
        var translated = new ConnTuple(4, IpProtocol.Udp, InetAddress.FromIPv4(0x0808_0808), 53, InetAddress.FromIPv4(0xCB00_7101), 61000);
        table.Rehash(c, translated);
        Assert.Equal(translated, c.Reply);
        AssertFound(table, c);
        Assert.False(table.TryFind(oldReply, out _, out _));
        others.ForEach(o => AssertFound(table, o));
        Assert.Equal(3, table.Count);

        // An entry not in the table just takes the new tuple.
        var loose = Conn(table, Udp(9, 9));
        table.Rehash(loose, translated with { DestinationPort = 1 });
        Assert.Equal(1, loose.Reply.DestinationPort);
        Assert.False(table.TryFind(loose.Reply, out _, out _));
    }

    [Fact]
    public void IsTaken_sees_both_directions_and_skips_the_asker()
    {
        var table = new ConnectionTable(8, Key);
        var c = Conn(table, Udp(1, 1));
        table.Insert(c);
        Assert.True(table.IsTaken(c.Original, null));
        Assert.True(table.IsTaken(c.Reply, null));
        Assert.False(table.IsTaken(c.Original, c));
        Assert.False(table.IsTaken(c.Reply, c));
        Assert.True(table.IsTaken(c.Reply, Conn(table, Udp(2, 2))));
        Assert.False(table.IsTaken(Udp(1, 2), null));
    }

    [Fact]
    public void Capacity_is_enforced()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ConnectionTable(0, Key));
        var table = new ConnectionTable(3, Key);
        var conns = Enumerable.Range(1, 3).Select(i => Conn(table, Udp((uint)i, 1))).ToList();
        foreach (var c in conns)
        {
            Assert.False(table.IsFull);
            table.Insert(c);
        }

        Assert.True(table.IsFull);
        Assert.Equal(3, table.Count);
        Assert.Throws<InvalidOperationException>(() => table.Insert(Conn(table, Udp(4, 1))));
        Assert.Throws<InvalidOperationException>(() => table.Insert(conns[0])); // already in

        table.Remove(conns[1]);
        Assert.False(table.IsFull);
        var again = Conn(table, Udp(5, 1));
        table.Insert(again);
        AssertFound(table, again);
        Assert.Equal(3, table.Entries().Count());

        // Bucket count: a power of two, at least 16, about two per entry.
        Assert.Equal(16, new ConnectionTable(1, Key).BucketCount);
        Assert.Equal(2048, new ConnectionTable(1000, Key).BucketCount);
        Assert.Equal(1024, new ConnectionTable(512, Key).BucketCount);
    }

    [Fact]
    public void A_removed_entry_is_gone_for_good_and_its_slot_serves_a_new_one()
    {
        var table = new ConnectionTable(1, Key);
        var c = Conn(table, Udp(1, 1));
        table.Insert(c);
        int slot = c.Slot;
        Assert.True(table.Remove(c));
        Assert.False(c.IsAlive);
        Assert.Equal(-1, c.Slot);
        Assert.Throws<InvalidOperationException>(() => table.Insert(c));

        // A released slot is taken again before a new one (the table stays compact), under a new generation.
        var taken = new List<Connection>();
        for (int i = 0; i <= ConnectionTable.UnconfirmedSlots; i++)
        {
            taken.Add(Conn(table, Udp(2, (ushort)(i + 1))));
        }

        var reused = taken.Single(t => t.Index == slot);
        Assert.Equal(0, taken.IndexOf(reused));
        Assert.NotEqual(c, reused);
        Assert.True(reused.IsAlive);
        Assert.False(c.IsAlive);
        Assert.False(table.CanCreate);
        Assert.Throws<InvalidOperationException>(() => table.Create(Udp(3, 1), Udp(3, 1).Invert()));

        // A stale handle changes nothing of the slot's new connection.
        table.Insert(reused);
        Assert.False(table.Remove(c));
        table.Release(c);
        AssertFound(table, reused);
        Assert.Equal(1, table.Count);
        foreach (var t in taken.Where(t => t != reused))
        {
            Assert.False(t.IsInTable);
            table.Release(t);
        }

        Assert.True(table.CanCreate);
        AssertFound(table, reused);
    }

    [Fact]
    public void Out_of_line_parts_are_reused_cleared()
    {
        var table = new ConnectionTable(4, Key);
        Assert.Equal(0, table.EntryBytes); // no chunk before the first connection
        var a = Conn(table, Udp(1, 1));
        var extras = a.EnsureExtras();
        extras.ExpectationCount = 3;
        extras.SeqAdjOriginal.OffsetAfter = 5;
        Assert.Same(extras, a.Extras);
        table.Release(a);

        var b = Conn(table, Udp(2, 2));
        Assert.Null(b.Extras);
        var again = b.EnsureExtras();
        Assert.Same(extras, again);
        Assert.Equal(0, again.ExpectationCount);
        Assert.True(again.SeqAdjOriginal.IsIdentity);
    }

    [Fact]
    public void Entries_across_several_chunks_are_found_removed_and_replaced()
    {
        const int capacity = 10_000;
        var table = new ConnectionTable(capacity, Key);
        var conns = new List<Connection>();
        for (int i = 0; i < capacity; i++)
        {
            var c = Conn(table, Udp(0x0A00_0000u + (uint)i, (ushort)(1024 + (i % 60000))));
            table.Insert(c);
            conns.Add(c);
        }

        Assert.True(table.IsFull);
        Assert.True(table.SlotsInUse >= capacity);

        // Three chunks (4,096 + 4,096 + the rest of the slots), allocated as the table filled.
        Assert.Equal(table.SlotCount * (long)System.Runtime.CompilerServices.Unsafe.SizeOf<ConnEntry>(), table.EntryBytes);
        for (int i = 0; i < capacity; i += 2)
        {
            Assert.True(table.Remove(conns[i]));
        }

        for (int i = 0; i < capacity; i += 2)
        {
            var c = Conn(table, Udp(0x0B00_0000u + (uint)i, 7));
            table.Insert(c);
            conns[i] = c;
        }

        Assert.Equal(capacity, table.Count);
        Assert.True(table.SlotsInUse <= table.SlotCount);
        foreach (var c in conns)
        {
            AssertFound(table, c);
        }

        Assert.Equal(conns.ToHashSet(), table.Entries().ToHashSet());
    }

    [Theory]
    [InlineData(1, 6)]
    [InlineData(2, 8)]
    [InlineData(3, 40)]
    [InlineData(4, 200)]
    public void Random_operations_agree_with_a_dictionary_model(int seed, int capacity)
    {
        var random = new System.Random(seed);
        var table = new ConnectionTable(capacity, (ulong)seed * 0x9E3779B97F4A7C15UL);
        var model = new Dictionary<ConnTuple, (Connection Conn, ConnDirection Dir)>();
        var live = new List<Connection>();
        var dead = new List<Connection>();

        // A small universe of tuples, so inserts clash with live ones and tuples come back after removal.
        // A reply tuple shares its original's family and protocol: the table refuses any other pair.
        ConnTuple RandomTuple(ConnTuple? like = null)
        {
            bool v6 = like is { } l ? l.Family == 6 : random.Next(4) == 0;
            var src = v6 ? new InetAddress(0xFD00_0000_0000_0000UL, (ulong)random.Next(4)) : InetAddress.FromIPv4(0x0A00_0000u + (uint)random.Next(4));
            var dst = v6 ? new InetAddress(0x2001_0DB8_0000_0000UL, (ulong)random.Next(3)) : InetAddress.FromIPv4(0xC633_6400u + (uint)random.Next(3));
            byte proto = like?.Protocol ?? random.Next(3) switch { 0 => IpProtocol.Tcp, 1 => IpProtocol.Udp, _ => IpProtocol.Icmp };
            return new ConnTuple(v6 ? (byte)6 : (byte)4, proto, src, (ushort)random.Next(1, 12), dst, (ushort)random.Next(1, 4));
        }

        for (int step = 0; step < 6000; step++)
        {
            int op = random.Next(10);
            if (op < 5)
            {
                var original = RandomTuple();
                var reply = random.Next(3) == 0 ? RandomTuple(original) : original.Invert();
                bool clash = model.ContainsKey(original) || model.ContainsKey(reply) || original.Equals(reply);
                Assert.Equal(model.ContainsKey(original), table.IsTaken(original, null));
                Assert.Equal(model.ContainsKey(reply), table.IsTaken(reply, null));
                if (clash)
                {
                    continue;
                }

                var c = Conn(table, original, reply);
                if (table.IsFull)
                {
                    Assert.Equal(capacity, live.Count);
                    Assert.Throws<InvalidOperationException>(() => table.Insert(c));
                    table.Release(c);
                    continue;
                }

                table.Insert(c);
                model[original] = (c, ConnDirection.Original);
                model[reply] = (c, ConnDirection.Reply);
                live.Add(c);
            }
            else if (op < 8 && live.Count > 0)
            {
                var c = live[random.Next(live.Count)];
                Assert.True(table.Remove(c));
                model.Remove(c.Original);
                model.Remove(c.Reply);
                live.Remove(c);
                dead.Add(c);
            }
            else if (op < 9 && live.Count > 0)
            {
                var c = live[random.Next(live.Count)];
                var newReply = RandomTuple(c.Original);
                if (model.ContainsKey(newReply) || newReply.Equals(c.Original))
                {
                    continue;
                }

                model.Remove(c.Reply);
                table.Rehash(c, newReply);
                model[newReply] = (c, ConnDirection.Reply);
            }
            else if (dead.Count > 0)
            {
                Assert.False(table.Remove(dead[random.Next(dead.Count)]));
            }

            Assert.Equal(live.Count, table.Count);
            Assert.Equal(live.Count == capacity, table.IsFull);

            // Every few steps, the whole table against the model; otherwise a few random probes.
            if (step % 50 == 0)
            {
                foreach (var (tuple, expected) in model)
                {
                    Assert.True(table.TryFind(tuple, out var found, out var dir));
                    Assert.Equal(expected.Conn, found);
                    Assert.Equal(expected.Dir, dir);
                    Assert.False(table.IsTaken(tuple, expected.Conn));
                }

                Assert.Equal(live.ToHashSet(), table.Entries().ToHashSet());
            }

            for (int probe = 0; probe < 3; probe++)
            {
                var t = RandomTuple();
                bool present = table.TryFind(t, out var found, out var dir);
                Assert.Equal(model.TryGetValue(t, out var expected), present);
                if (present)
                {
                    Assert.Equal(expected.Conn, found);
                    Assert.Equal(expected.Dir, dir);
                }
            }
        }
    }

    private static ConnTuple Tcp6(ulong sourceLow, ushort sourcePort, ulong destinationLow = 2, ushort destinationPort = 443) =>
        new(6, IpProtocol.Tcp, new InetAddress(0xFD00_0000_0000_0000UL, sourceLow), sourcePort, new InetAddress(0x2001_0DB8_0000_0000UL, destinationLow), destinationPort);

    [Fact]
    public void An_entry_is_two_cache_lines_aligned_on_a_line()
    {
        Assert.Equal(128, Unsafe.SizeOf<ConnEntry>());
        var table = new ConnectionTable(10_000, Key);
        for (int i = 0; i < 9_000; i++)
        {
            table.Insert(Conn(table, Udp((uint)i, 1000)));
        }

        // Every chunk (three here) starts its first entry on a cache line, wherever the runtime put its array.
        foreach (int slot in new[] { 0, 1, 4095, 4096, 4097, 8191, 8192, 8999 })
        {
            nint address = Unsafe.ByteOffset(ref Unsafe.NullRef<ConnEntry>(), ref table.EntryAt(slot));
            Assert.Equal(0, address % 64);
        }
    }

    [Fact]
    public void IPv4_entries_hold_their_addresses_and_IPv6_ones_take_a_block_given_back_with_the_slot()
    {
        var table = new ConnectionTable(100, Key);
        var v4 = Conn(table, Udp(0xC0A8_0001, 1000), Udp(0xC633_6401, 53, 0xCB00_7101, 40000));
        var v6 = Conn(table, Tcp6(2, 50000));
        table.Insert(v4);
        table.Insert(v6);
        Assert.Equal(1, table.AddressBlocksInUse);
        AssertFound(table, v4);
        AssertFound(table, v6);
        Assert.Equal(Udp(0xC633_6401, 53, 0xCB00_7101, 40000), v4.Reply);
        Assert.Equal(Tcp6(2, 50000), v6.Original);
        Assert.Equal(Tcp6(2, 50000).Invert(), v6.Reply);

        // Another address with the same first 8 bytes, or the same ports and no more, is another tuple.
        Assert.False(table.TryFind(Tcp6(3, 50000), out _, out _));
        Assert.False(table.TryFind(Tcp6(2, 50000, destinationLow: 7), out _, out _));

        // A released slot keeps its block (a stale handle still reads its tuples) until the slot is reused.
        table.Remove(v6);
        Assert.Equal(Tcp6(2, 50000), v6.Original);
        Assert.Equal(1, table.AddressBlocksInUse);
        var small = new ConnectionTable(2, Key);
        var first = Conn(small, Tcp6(4, 1));
        small.Insert(first);
        small.Remove(first);
        var reused = Conn(small, Tcp6(5, 2));
        small.Insert(reused);
        Assert.Equal(1, small.AddressBlocksInUse);
        AssertFound(small, reused);
        small.Remove(reused);
        for (int i = 0; i < ConnectionTable.UnconfirmedSlots + 2; i++)
        {
            small.Remove(Conn(small, Udp((uint)i, 1)));
        }

        Assert.Equal(0, small.AddressBlocksInUse);
        AssertFound(table, v4);
    }

    [Fact]
    public void An_IPv4_tuple_whose_address_has_other_bits_is_kept_exactly()
    {
        // InetAddress.FromIPv4 sets the first 4 bytes only; an address made otherwise must not be cut to them.
        var odd = new ConnTuple(4, IpProtocol.Udp, new InetAddress(0xC0A8_0001_0000_0005UL, 0), 1000, InetAddress.FromIPv4(0x0A00_0001), 53);
        var plain = new ConnTuple(4, IpProtocol.Udp, InetAddress.FromIPv4(0xC0A8_0001), 1000, InetAddress.FromIPv4(0x0A00_0001), 53);
        var table = new ConnectionTable(100, Key);
        var c = Conn(table, odd);
        table.Insert(c);
        Assert.Equal(odd, c.Original);
        AssertFound(table, c);
        Assert.False(table.TryFind(plain, out _, out _));

        var p = Conn(table, plain);
        table.Insert(p);
        Assert.True(table.TryFind(plain, out var found, out _));
        Assert.Equal(p, found);
    }

    [Fact]
    public void A_reply_tuple_changed_by_NAT_is_found_in_both_forms()
    {
        var table = new ConnectionTable(100, Key);
        var v4 = Conn(table, Udp(0xC0A8_0001, 1000));
        var v6 = Conn(table, Tcp6(2, 50000));
        table.Insert(v4);
        table.Insert(v6);

        var v4Reply = Udp(0x0A00_0001, 53, 0xCB00_7101, 61000);
        var v6Reply = new ConnTuple(6, IpProtocol.Tcp, new InetAddress(0x2001_0DB8_0000_0000UL, 2), 443, new InetAddress(0x2001_0DB8_0000_0001UL, 1), 61001);
        table.Rehash(v4, v4Reply);
        table.Rehash(v6, v6Reply);
        Assert.Equal(v4Reply, v4.Reply);
        Assert.Equal(v6Reply, v6.Reply);
        AssertFound(table, v4);
        AssertFound(table, v6);
        Assert.False(table.TryFind(Udp(0xC0A8_0001, 1000).Invert(), out _, out _));
        Assert.False(table.TryFind(Tcp6(2, 50000).Invert(), out _, out _));

        // A reply tuple of another family or protocol is refused rather than stored half.
        Assert.Throws<ArgumentException>(() => table.Rehash(v6, v4Reply));
        int held = table.SlotsHeld;
        Assert.Throws<ArgumentException>(() => table.Create(Udp(1, 1), Tcp6(1, 1)));
        Assert.Equal(held, table.SlotsHeld); // no slot taken for the refused pair
    }

    [Fact]
    public void Released_slots_are_taken_again_oldest_first()
    {
        var table = new ConnectionTable(8, Key);
        var conns = Enumerable.Range(0, 8).Select(i => Conn(table, Udp((uint)i, 1))).ToList();
        conns.ForEach(table.Insert);
        foreach (int i in new[] { 5, 2, 7, 0 })
        {
            table.Remove(conns[i]);
        }

        var slots = Enumerable.Range(0, 4).Select(i => Conn(table, Udp(100 + (uint)i, 1)).Index).ToList();
        Assert.Equal(new[] { conns[5].Index, conns[2].Index, conns[7].Index, conns[0].Index }, slots);
        Assert.Equal(8, table.SlotsHeld); // four in the table, four new ones unconfirmed

        // With the queue empty, the next slot is a new one; one released then is the next taken.
        int fresh = Conn(table, Udp(200, 1)).Index;
        Assert.Equal(8, fresh);
        table.Release(table.AtSlot(conns[1].Index)!.Value);
        Assert.Equal(conns[1].Index, Conn(table, Udp(201, 1)).Index);
    }

    [Fact]
    public void Staging_reads_chains_of_both_families_and_changes_nothing()
    {
        var table = new ConnectionTable(64, Key);
        var conns = new List<Connection>();
        for (int i = 0; i < 40; i++)
        {
            var c = Conn(table, i % 2 == 0 ? Udp((uint)i, 1000) : Tcp6((ulong)i, 1000));
            table.Insert(c);
            conns.Add(c);
        }

        // Every bucket of the index, empty ones and chains of two or more among them, and "none" (-1).
        var buckets = Enumerable.Range(-1, table.BucketCount + 1).ToArray();
        table.Touch(buckets);
        Assert.Equal(40, table.Count);
        conns.ForEach(c => AssertFound(table, c));
    }
}
