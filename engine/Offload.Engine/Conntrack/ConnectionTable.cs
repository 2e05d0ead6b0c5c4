using System.Numerics;

namespace Offload.Engine.Conntrack;

/// <summary>
/// The table of confirmed connections: one hash index over both tuples of every entry, chained
/// through the entries themselves (no node objects), and a slot array with a free list, so the
/// table allocates nothing after it is created.
/// </summary>
/// <remarks>
/// A chain link is <c>slot * 2 + direction</c>: walking a bucket tells which of the entry's two
/// tuples (and which of its two next-links) this bucket holds.
/// </remarks>
public sealed class ConnectionTable
{
    private const int NoLink = -1;

    private readonly int[] _buckets;
    private readonly int _bucketMask;

    // Connections whose source NAT is decided, by original source endpoint (the kernel's nf_nat_bysource), so a
    // client endpoint can keep the mapping it already has.
    private readonly int[] _sourceBuckets;
    private readonly int _sourceMask;
    private readonly Connection?[] _slots;
    private readonly int[] _freeSlots;
    private readonly ulong _hashKey;
    private int _freeCount;
    private int _count;

    /// <param name="capacity">The most connections the table holds (the kernel's nf_conntrack_max).</param>
    /// <param name="hashKey">Key of the tuple hash: random in a live daemon, fixed in a replay.</param>
    public ConnectionTable(int capacity, ulong hashKey)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        _hashKey = hashKey;

        // Two tuples per entry; one bucket per tuple keeps chains at about one link.
        int buckets = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, capacity * 2L > int.MaxValue / 2 ? int.MaxValue / 2 : capacity * 2));
        _buckets = new int[buckets];
        _buckets.AsSpan().Fill(NoLink);
        _bucketMask = buckets - 1;
        _sourceBuckets = new int[buckets / 2];
        _sourceBuckets.AsSpan().Fill(NoLink);
        _sourceMask = (buckets / 2) - 1;
        _slots = new Connection?[capacity];
        _freeSlots = new int[capacity];
        for (int i = 0; i < capacity; i++)
        {
            _freeSlots[i] = capacity - 1 - i;
        }

        _freeCount = capacity;
    }

    public int Capacity { get; }

    /// <summary>The source keys of PPTP's enhanced GRE, kept in step with the entries (and the expectations) that hold them.</summary>
    public Gre.GreKeymap GreKeys { get; } = new();

    public int Count => _count;

    /// <summary>
    /// Counts the changes that can free a tuple (a removal, a reply tuple re-indexed); an insertion only takes one.
    /// While it stands still, a tuple search that found everything taken would find the same again.
    /// </summary>
    internal uint TupleReleases { get; private set; }

    /// <summary>Counts a release that leaves the entry in place: a connection killed, whose tuples the NAT may take back at once.</summary>
    internal void NoteRelease() => TupleReleases++;

    /// <summary>
    /// The reply tuple an entry let go of last: under a flood into a full NAT range, the one port early drop has just
    /// freed, which the port search tries before it scans the range.
    /// </summary>
    internal ConnTuple LastReleasedReply;

    public bool IsFull => _freeCount == 0;

    /// <summary>The number of buckets in the hash index.</summary>
    public int BucketCount => _buckets.Length;

    internal int BucketOf(in ConnTuple tuple) => (int)(tuple.Hash(_hashKey) & (uint)_bucketMask);

    /// <summary>Finds the entry with <paramref name="tuple"/> in either direction.</summary>
    public bool TryFind(in ConnTuple tuple, out Connection connection, out ConnDirection direction)
    {
        int link = _buckets[BucketOf(tuple)];
        while (link != NoLink)
        {
            var entry = _slots[link >> 1]!;
            if ((link & 1) == 0)
            {
                if (entry.OriginalTuple.Equals(tuple))
                {
                    connection = entry;
                    direction = ConnDirection.Original;
                    return true;
                }

                link = entry.NextInOriginalChain;
            }
            else
            {
                if (entry.ReplyTuple.Equals(tuple))
                {
                    connection = entry;
                    direction = ConnDirection.Reply;
                    return true;
                }

                link = entry.NextInReplyChain;
            }
        }

        connection = null!;
        direction = default;
        return false;
    }

    /// <summary>True when some entry other than <paramref name="except"/> has <paramref name="tuple"/> in either direction (the kernel's nf_conntrack_tuple_taken).</summary>
    public bool IsTaken(in ConnTuple tuple, Connection? except) => FindTaker(tuple, except) is not null;

    /// <summary>The entry other than <paramref name="except"/> that has <paramref name="tuple"/> in either direction, or null.</summary>
    internal Connection? FindTaker(in ConnTuple tuple, Connection? except)
    {
        int link = _buckets[BucketOf(tuple)];
        while (link != NoLink)
        {
            var entry = _slots[link >> 1]!;
            bool reply = (link & 1) != 0;
            if (!ReferenceEquals(entry, except) && (reply ? entry.ReplyTuple : entry.OriginalTuple).Equals(tuple))
            {
                return entry;
            }

            link = reply ? entry.NextInReplyChain : entry.NextInOriginalChain;
        }

        return null;
    }

    /// <summary>Adds an entry under both its tuples. The caller has checked <see cref="IsFull"/>.</summary>
    public void Insert(Connection connection)
    {
        if (connection.Slot != -1)
        {
            throw new InvalidOperationException("The connection is already in the table.");
        }

        if (_freeCount == 0)
        {
            throw new InvalidOperationException("The connection table is full.");
        }

        int slot = _freeSlots[--_freeCount];
        _slots[slot] = connection;
        connection.Slot = slot;
        Link(connection);
        if ((connection.StatusBits & ConnStatus.Expected) != 0)
        {
            // Only an expected connection can be a PPTP call's: its keys are the call's.
            GreKeys.AddConnection(connection.OriginalTuple, connection.ReplyTuple);
            if (connection.OriginalTuple.Protocol == IpProtocol.Gre && connection.Extras?.Master is { } master)
            {
                (master.EnsureExtras().GreCalls ??= []).Add(connection);
            }
        }

        if ((connection.StatusBits & ConnStatus.SrcNatDone) != 0)
        {
            int bucket = SourceBucketOf(connection.OriginalTuple);
            connection.NextBySource = _sourceBuckets[bucket];
            _sourceBuckets[bucket] = slot;
        }

        _count++;
    }

    private int SourceBucketOf(in ConnTuple original) =>
        (int)(new ConnTuple(original.Family, original.Protocol, original.Source, original.SourcePort, default, 0).Hash(_hashKey) & (uint)_sourceMask);

    /// <summary>
    /// The first slot of the by-source chain <paramref name="original"/>'s source endpoint hashes to (-1: empty). The
    /// chain holds the source-translated connections; follow it with <see cref="Connection.NextBySource"/> and compare
    /// the endpoints, since other endpoints share chains.
    /// </summary>
    internal int SourceChainHead(in ConnTuple original) => _sourceBuckets[SourceBucketOf(original)];

    /// <summary>Removes an entry. Returns false if it was not in the table.</summary>
    public bool Remove(Connection connection)
    {
        int slot = connection.Slot;
        if (slot < 0 || !ReferenceEquals(_slots[slot], connection))
        {
            return false;
        }

        Unlink(connection);
        if ((connection.StatusBits & ConnStatus.Expected) != 0)
        {
            GreKeys.RemoveConnection(connection.OriginalTuple, connection.ReplyTuple);
            connection.Extras?.Master?.Extras?.GreCalls?.Remove(connection);
        }

        if (connection.NextBySource != -2)
        {
            UnlinkBySource(connection);
        }

        _slots[slot] = null;
        _freeSlots[_freeCount++] = slot;
        connection.Slot = -1;
        _count--;
        TupleReleases++;
        LastReleasedReply = connection.ReplyTuple;
        return true;
    }

    /// <summary>Re-indexes an entry after its reply tuple changed (NAT decided after the entry was inserted).</summary>
    public void Rehash(Connection connection, in ConnTuple newReplyTuple)
    {
        if (connection.Slot < 0)
        {
            connection.ReplyTuple = newReplyTuple;
            return;
        }

        Unlink(connection);
        TupleReleases++;
        LastReleasedReply = connection.ReplyTuple;
        bool expected = (connection.StatusBits & ConnStatus.Expected) != 0;
        if (expected)
        {
            GreKeys.RemoveConnection(connection.OriginalTuple, connection.ReplyTuple);
        }

        connection.ReplyTuple = newReplyTuple;
        if (expected)
        {
            GreKeys.AddConnection(connection.OriginalTuple, connection.ReplyTuple);
        }

        Link(connection);
    }

    /// <summary>The entry in a slot, for incremental scans (garbage collection, early drop, listings).</summary>
    public Connection? AtSlot(int slot) => _slots[slot];

    /// <summary>Visits the entries chained in a bucket (early drop looks at a few buckets near a new tuple's).</summary>
    internal int FirstLinkOfBucket(int bucket) => _buckets[bucket & _bucketMask];

    internal Connection EntryOfLink(int link) => _slots[link >> 1]!;

    internal static int NextLink(Connection entry, int link) => (link & 1) == 0 ? entry.NextInOriginalChain : entry.NextInReplyChain;

    /// <summary>Enumerates every entry (allocation-free enumerator; not for the packet path).</summary>
    public IEnumerable<Connection> Entries()
    {
        for (int i = 0; i < _slots.Length; i++)
        {
            var c = _slots[i];
            if (c is not null)
            {
                yield return c;
            }
        }
    }

    private void Link(Connection connection)
    {
        int original = BucketOf(connection.OriginalTuple);
        connection.NextInOriginalChain = _buckets[original];
        _buckets[original] = connection.Slot * 2;

        int reply = BucketOf(connection.ReplyTuple);
        connection.NextInReplyChain = _buckets[reply];
        _buckets[reply] = (connection.Slot * 2) + 1;
    }

    private void Unlink(Connection connection)
    {
        UnlinkOne(BucketOf(connection.OriginalTuple), connection.Slot * 2);
        UnlinkOne(BucketOf(connection.ReplyTuple), (connection.Slot * 2) + 1);
    }

    private void UnlinkBySource(Connection connection)
    {
        int bucket = SourceBucketOf(connection.OriginalTuple);
        int slot = connection.Slot;
        if (_sourceBuckets[bucket] == slot)
        {
            _sourceBuckets[bucket] = connection.NextBySource;
        }
        else
        {
            for (int at = _sourceBuckets[bucket]; at != NoLink; at = _slots[at]!.NextBySource)
            {
                var entry = _slots[at]!;
                if (entry.NextBySource == slot)
                {
                    entry.NextBySource = connection.NextBySource;
                    break;
                }
            }
        }

        connection.NextBySource = -2;
    }

    private void UnlinkOne(int bucket, int target)
    {
        int link = _buckets[bucket];
        if (link == target)
        {
            _buckets[bucket] = NextLink(_slots[target >> 1]!, target);
            return;
        }

        while (link != NoLink)
        {
            var entry = _slots[link >> 1]!;
            int next = NextLink(entry, link);
            if (next == target)
            {
                int after = NextLink(_slots[target >> 1]!, target);
                if ((link & 1) == 0)
                {
                    entry.NextInOriginalChain = after;
                }
                else
                {
                    entry.NextInReplyChain = after;
                }

                return;
            }

            link = next;
        }

        throw new InvalidOperationException("Connection table chain is corrupt: an entry was not found in its bucket.");
    }
}
