using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Offload.Engine.Conntrack;

/// <summary>
/// The table of connections: every entry stored by value (<see cref="ConnEntry"/>) in chunks of slots that hold no
/// references, one hash index over both tuples of every entry chained through the entries themselves, and a queue of
/// free slots. It allocates nothing per connection, and the garbage collector has nothing in it to trace.
/// </summary>
/// <remarks>
/// <para>
/// A chain link is <c>slot * 2 + direction</c>: walking a bucket tells which of the entry's two tuples (and which of
/// its two next-links) this bucket holds.
/// </para>
/// <para>
/// A slot's life: taken for a new connection (unconfirmed, in no chain), linked when the connection is confirmed,
/// unlinked when it ends, then released: its generation moves on, so that handles kept past the end tell it is gone.
/// Released slots are reused oldest first, so a stale handle keeps reading its own connection's last state for as long
/// as possible. Chunks of slots are allocated as the table fills and never move: they are pinned, so that each entry
/// stays on its two cache lines. IPv6 addresses live beside the entries, in <see cref="AddressBlocks"/>.
/// </para>
/// </remarks>
public sealed class ConnectionTable
{
    /// <summary>Slots beyond <see cref="Capacity"/> for new connections whose first packet is on its way.</summary>
    internal const int UnconfirmedSlots = 64;

    private const int NoLink = -1;
    private const int ChunkShift = 12;
    private const int ChunkSize = 1 << ChunkShift;
    private const int ChunkMask = ChunkSize - 1;

    private readonly int[] _buckets;
    private readonly int _bucketMask;

    // Connections whose source NAT is decided, by original source endpoint (the kernel's nf_nat_bysource), so a
    // client endpoint can keep the mapping it already has.
    private readonly int[] _sourceBuckets;
    private readonly int _sourceMask;

    private readonly EntryChunk[] _chunks;
    private readonly int _slotCount;
    private int _highWater;
    private long _allocatedSlots;

    // Released slots, oldest first: a queue linked through the free entries' first chain link, which a free entry
    // does not use (a stale handle reads tuples, status and state, never links).
    private int _freeHead = NoLink;
    private int _freeTail = NoLink;
    private int _freeCount;

    // The out-of-line parts, reused: an entry names its object by ExtrasIndex.
    private ConnectionExtras?[] _extras = new ConnectionExtras?[16];
    private readonly Stack<int> _freeExtras = new();
    private int _extrasHighWater;

    // The addresses of the entries whose tuples do not fit their IPv4 form.
    private readonly AddressBlocks _addressBlocks = new();

    private readonly ulong _hashKey;
    private int _count;

    /// <summary>A chunk of entries: pinned bytes, the first entry at an offset that aligns it on a cache line.</summary>
    private struct EntryChunk
    {
        public byte[]? Bytes;
        public int Offset;
    }

    /// <param name="capacity">The most connections the table holds (the kernel's nf_conntrack_max).</param>
    /// <param name="hashKey">Key of the tuple hash: random in a live daemon, fixed in a replay.</param>
    public ConnectionTable(int capacity, ulong hashKey)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, int.MaxValue / 4);
        Capacity = capacity;
        _hashKey = hashKey;

        // Two tuples per entry; one bucket per tuple keeps chains at about one link.
        int buckets = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, capacity * 2));
        _buckets = new int[buckets];
        _buckets.AsSpan().Fill(NoLink);
        _bucketMask = buckets - 1;
        _sourceBuckets = new int[buckets / 2];
        _sourceBuckets.AsSpan().Fill(NoLink);
        _sourceMask = (buckets / 2) - 1;

        _slotCount = capacity + UnconfirmedSlots;
        _chunks = new EntryChunk[(_slotCount + ChunkMask) >> ChunkShift];
    }

    public int Capacity { get; }

    /// <summary>The source keys of PPTP's enhanced GRE, kept in step with the entries (and the expectations) that hold them.</summary>
    public Gre.GreKeymap GreKeys { get; } = new();

    /// <summary>Connections in the table (confirmed, not yet removed).</summary>
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

    public bool IsFull => _count >= Capacity;

    /// <summary>True when a slot is free for a new connection (<see cref="Create"/>).</summary>
    public bool CanCreate => _freeCount > 0 || _highWater < _slotCount;

    /// <summary>The number of buckets in the hash index.</summary>
    public int BucketCount => _buckets.Length;

    /// <summary>The memory of the entries' chunks (and IPv6 address blocks) allocated so far (they are kept once allocated), for the statistics.</summary>
    public long EntryBytes => (_allocatedSlots * ConnEntry.Size) + _addressBlocks.Bytes;

    /// <summary>Address blocks held by slots: those of IPv6 entries, and of released slots until their reuse (a stale handle still reads its tuples).</summary>
    internal int AddressBlocksInUse => _addressBlocks.InUse;

    /// <summary>Slots taken at least once: what a scan of the slots need look at.</summary>
    internal int SlotsInUse => _highWater;

    /// <summary>Slots holding a connection: those in the table, and new ones not yet confirmed or released.</summary>
    internal int SlotsHeld => _highWater - _freeCount;

    /// <summary>Every slot the table may ever use: its capacity and the room for unconfirmed connections.</summary>
    internal int SlotCount => _slotCount;

    internal int BucketOf(in ConnTuple tuple) => (int)(tuple.Hash(_hashKey) & (uint)_bucketMask);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ref ConnEntry EntryAt(int slot)
    {
        // Every slot handed out lies in an allocated chunk: no bounds to check twice on the packet path.
        ref var chunk = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_chunks), slot >> ChunkShift);
        ref byte at = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(chunk.Bytes!), chunk.Offset + ((slot & ChunkMask) * ConnEntry.Size));
        return ref Unsafe.As<byte, ConnEntry>(ref at);
    }

    private void AllocateChunk(int chunk)
    {
        // One entry more than the slots, so that the first can start on a cache line wherever the array lies: an
        // entry is then exactly its two lines. Pinned, so that the alignment holds (and the chunk never moves).
        int slots = Math.Min(ChunkSize, _slotCount - (chunk << ChunkShift));
        var bytes = GC.AllocateArray<byte>((slots + 1) * ConnEntry.Size, pinned: true);
        long address = Marshal.UnsafeAddrOfPinnedArrayElement(bytes, 0);
        _chunks[chunk] = new EntryChunk { Bytes = bytes, Offset = (int)((64 - (address & 63)) & 63) };
        _allocatedSlots += slots;
    }

    /// <summary>The tuple of one direction of an entry.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ConnTuple TupleOf(ref ConnEntry entry, bool reply)
    {
        ref var tuple = ref reply ? ref entry.Reply : ref entry.Original;
        if (!entry.HasAddressBlock)
        {
            return new ConnTuple(entry.Family, entry.Protocol, InetAddress.FromIPv4(tuple.Source), tuple.SourcePort, InetAddress.FromIPv4(tuple.Destination), tuple.DestinationPort);
        }

        ref var block = ref _addressBlocks.At(entry.Original.Source);
        return reply
            ? new ConnTuple(entry.Family, entry.Protocol, block.ReplySource, tuple.SourcePort, block.ReplyDestination, tuple.DestinationPort)
            : new ConnTuple(entry.Family, entry.Protocol, block.OriginalSource, tuple.SourcePort, block.OriginalDestination, tuple.DestinationPort);
    }

    /// <summary>True when one direction of an entry has this tuple (what a lookup compares).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Matches(ref ConnEntry entry, bool reply, in ConnTuple tuple)
    {
        ref var mine = ref reply ? ref entry.Reply : ref entry.Original;
        if (mine.SourcePort != tuple.SourcePort || mine.DestinationPort != tuple.DestinationPort
            || entry.Protocol != tuple.Protocol || entry.Family != tuple.Family)
        {
            return false;
        }

        if (!entry.HasAddressBlock)
        {
            return IsIPv4Form(tuple.Source) && IsIPv4Form(tuple.Destination)
                && mine.Source == tuple.Source.IPv4Value && mine.Destination == tuple.Destination.IPv4Value;
        }

        ref var block = ref _addressBlocks.At(entry.Original.Source);
        return reply
            ? block.ReplySource == tuple.Source && block.ReplyDestination == tuple.Destination
            : block.OriginalSource == tuple.Source && block.OriginalDestination == tuple.Destination;
    }

    /// <summary>An address an entry can hold in 4 bytes: an IPv4 address as <see cref="InetAddress.FromIPv4(uint)"/> makes it.</summary>
    private static bool IsIPv4Form(InetAddress address) => (address.High & 0xFFFF_FFFF) == 0 && address.Low == 0;

    private static bool FitsIPv4Form(in ConnTuple tuple) => tuple.Family == 4 && IsIPv4Form(tuple.Source) && IsIPv4Form(tuple.Destination);

    private const uint NoBlock = uint.MaxValue;

    /// <summary>
    /// Sets both tuples of an entry that holds no address block, or of a slot being reused that still holds its last
    /// connection's (<paramref name="heldBlock"/>): taken over if the new tuples need one, given back if not.
    /// </summary>
    private void SetTuples(ref ConnEntry entry, in ConnTuple original, in ConnTuple reply, uint heldBlock = NoBlock)
    {
        entry.Family = original.Family;
        entry.Protocol = original.Protocol;
        entry.Original.SourcePort = original.SourcePort;
        entry.Original.DestinationPort = original.DestinationPort;
        entry.Reply.SourcePort = reply.SourcePort;
        entry.Reply.DestinationPort = reply.DestinationPort;
        if (FitsIPv4Form(original) && FitsIPv4Form(reply))
        {
            if (heldBlock != NoBlock)
            {
                _addressBlocks.Give(heldBlock);
            }

            entry.HasAddressBlock = false;
            entry.Original.Source = original.Source.IPv4Value;
            entry.Original.Destination = original.Destination.IPv4Value;
            entry.Reply.Source = reply.Source.IPv4Value;
            entry.Reply.Destination = reply.Destination.IPv4Value;
            return;
        }

        uint index = heldBlock != NoBlock ? heldBlock : _addressBlocks.Take();
        ref var block = ref _addressBlocks.At(index);
        block.OriginalSource = original.Source;
        block.OriginalDestination = original.Destination;
        block.ReplySource = reply.Source;
        block.ReplyDestination = reply.Destination;
        entry.HasAddressBlock = true;
        entry.Original.Source = index;
        entry.Original.Destination = 0;
        entry.Reply.Source = 0;
        entry.Reply.Destination = 0;
    }

    private static void CheckReply(ref ConnEntry entry, in ConnTuple reply)
    {
        if (reply.Family != entry.Family || reply.Protocol != entry.Protocol)
        {
            throw new ArgumentException($"The reply tuple {reply} differs from its connection in family or protocol.", nameof(reply));
        }
    }

    /// <summary>Changes the reply tuple of an entry (NAT), whether it is indexed or not: the caller re-links it.</summary>
    private void SetReply(ref ConnEntry entry, in ConnTuple reply)
    {
        CheckReply(ref entry, reply);
        if (entry.HasAddressBlock)
        {
            ref var block = ref _addressBlocks.At(entry.Original.Source);
            block.ReplySource = reply.Source;
            block.ReplyDestination = reply.Destination;
            entry.Reply.SourcePort = reply.SourcePort;
            entry.Reply.DestinationPort = reply.DestinationPort;
            return;
        }

        var original = TupleOf(ref entry, reply: false);
        SetTuples(ref entry, original, reply);
    }

    /// <summary>The tuple of one direction of the connection in a slot.</summary>
    internal ConnTuple TupleAt(int slot, bool reply) => TupleOf(ref EntryAt(slot), reply);

    /// <summary>Sets the reply tuple of a connection not in the index (use <see cref="Rehash"/> for one that is).</summary>
    internal void SetReplyOfUnlinked(Connection connection, in ConnTuple reply)
    {
        if (connection.IsInTable)
        {
            throw new InvalidOperationException("The connection is in the index: rehash it.");
        }

        SetReply(ref connection.Entry, reply);
    }

    internal uint GenerationAt(int slot) => slot >= 0 && slot < _highWater ? EntryAt(slot).Generation : 0;

    private Connection HandleOf(int slot) => new(this, slot, EntryAt(slot).Generation);

    /// <summary>
    /// Takes a slot for a new connection with these tuples: unconfirmed, in no chain, until <see cref="Insert"/>. The
    /// caller has checked <see cref="CanCreate"/>; a connection never inserted is given back with <see cref="Release"/>.
    /// </summary>
    public Connection Create(in ConnTuple original, in ConnTuple reply)
    {
        // Both tuples share the entry's family and protocol; checked before a slot is taken, so that nothing leaks.
        if (original.Family != reply.Family || original.Protocol != reply.Protocol)
        {
            throw new ArgumentException($"The tuples {original} and {reply} differ in family or protocol.", nameof(reply));
        }

        int slot;
        if (_freeCount > 0)
        {
            slot = _freeHead;
            _freeHead = EntryAt(slot).NextInOriginalChain;
            if (_freeHead == NoLink)
            {
                _freeTail = NoLink;
            }

            _freeCount--;
        }
        else if (_highWater < _slotCount)
        {
            slot = _highWater;
            int chunk = slot >> ChunkShift;
            if (_chunks[chunk].Bytes is null)
            {
                AllocateChunk(chunk);
            }

            EntryAt(slot).Generation = 1;
            _highWater++;
        }
        else
        {
            throw new InvalidOperationException("The connection table has no free slot.");
        }

        ref var entry = ref EntryAt(slot);
        uint generation = entry.Generation;
        uint heldBlock = entry.HasAddressBlock ? entry.Original.Source : NoBlock;
        entry = default;
        entry.Generation = generation;
        SetTuples(ref entry, original, reply, heldBlock);
        entry.NextInOriginalChain = NoLink;
        entry.NextInReplyChain = NoLink;
        entry.NextBySource = -2;
        entry.Use = EntryUse.Unconfirmed;
        return new Connection(this, slot, generation);
    }

    /// <summary>
    /// The second and third stages of a burst's lookups (see <see cref="ConntrackEngine.PrepareLookups"/>): each
    /// bucket's head read, then each first entry, then each second entry of a chain, so that the misses of a burst
    /// overlap (the loads are independent) instead of following one another. <paramref name="buckets"/> holds the buckets (-1: none) and is
    /// overwritten. Returns what it read, for the caller to keep (a read nobody keeps could be left out).
    /// </summary>
    internal int Touch(Span<int> buckets)
    {
        for (int i = 0; i < buckets.Length; i++)
        {
            buckets[i] = buckets[i] < 0 ? NoLink : _buckets[buckets[i]];
        }

        int sum = TouchEntries(buckets);

        // Then the second entry of each chain that has one: with a bucket per tuple, the entry looked for is not the
        // first of its chain in about a third of lookups.
        for (int i = 0; i < buckets.Length; i++)
        {
            buckets[i] = buckets[i] == NoLink ? NoLink : NextLink(ref EntryAt(buckets[i] >> 1), buckets[i]);
        }

        return sum + TouchEntries(buckets);
    }

    /// <summary>Reads both cache lines of each linked entry (the lookup's, the protocol state's) and an IPv6 one's addresses.</summary>
    private int TouchEntries(ReadOnlySpan<int> links)
    {
        int sum = 0;
        foreach (int link in links)
        {
            if (link != NoLink)
            {
                ref var entry = ref EntryAt(link >> 1);
                sum += entry.Original.SourcePort + entry.MasqueradeInterface;
                if (entry.HasAddressBlock)
                {
                    sum += (int)_addressBlocks.At(entry.Original.Source).OriginalSource.Low;
                }
            }
        }

        return sum;
    }

    /// <summary>Finds the entry with <paramref name="tuple"/> in either direction.</summary>
    public bool TryFind(in ConnTuple tuple, out Connection connection, out ConnDirection direction)
    {
        int link = _buckets[BucketOf(tuple)];
        while (link != NoLink)
        {
            ref var entry = ref EntryAt(link >> 1);
            if ((link & 1) == 0)
            {
                if (Matches(ref entry, reply: false, tuple))
                {
                    connection = HandleOf(link >> 1);
                    direction = ConnDirection.Original;
                    return true;
                }

                link = entry.NextInOriginalChain;
            }
            else
            {
                if (Matches(ref entry, reply: true, tuple))
                {
                    connection = HandleOf(link >> 1);
                    direction = ConnDirection.Reply;
                    return true;
                }

                link = entry.NextInReplyChain;
            }
        }

        connection = default;
        direction = default;
        return false;
    }

    /// <summary>True when some entry other than <paramref name="except"/> has <paramref name="tuple"/> in either direction (the kernel's nf_conntrack_tuple_taken).</summary>
    public bool IsTaken(in ConnTuple tuple, Connection? except) => FindTaker(tuple, except) is not null;

    /// <summary>The entry other than <paramref name="except"/> that has <paramref name="tuple"/> in either direction, or null.</summary>
    internal Connection? FindTaker(in ConnTuple tuple, Connection? except)
    {
        int exceptSlot = except is { } e && ReferenceEquals(e.Table, this) && e.IsAlive ? e.Index : -1;
        int link = _buckets[BucketOf(tuple)];
        while (link != NoLink)
        {
            ref var entry = ref EntryAt(link >> 1);
            bool reply = (link & 1) != 0;
            if ((link >> 1) != exceptSlot && Matches(ref entry, reply, tuple))
            {
                return HandleOf(link >> 1);
            }

            link = reply ? entry.NextInReplyChain : entry.NextInOriginalChain;
        }

        return null;
    }

    /// <summary>Adds a new connection under both its tuples. The caller has checked <see cref="IsFull"/>.</summary>
    public void Insert(Connection connection)
    {
        if (!connection.IsAlive || !ReferenceEquals(connection.Table, this) || connection.Entry.Use != EntryUse.Unconfirmed)
        {
            throw new InvalidOperationException("The connection is not a new one of this table.");
        }

        if (IsFull)
        {
            throw new InvalidOperationException("The connection table is full.");
        }

        int slot = connection.Index;
        ref var entry = ref connection.Entry;
        entry.Use = EntryUse.InTable;
        LinkChains(slot, ref entry);
        if ((entry.StatusBits & ConnStatus.Expected) != 0)
        {
            // Only an expected connection can be a PPTP call's: its keys are the call's.
            GreKeys.AddConnection(TupleOf(ref entry, reply: false), TupleOf(ref entry, reply: true));
            if (entry.Protocol == IpProtocol.Gre && connection.Master is { } master)
            {
                (master.EnsureExtras().GreCalls ??= []).Add(connection);
            }
        }

        if ((entry.StatusBits & ConnStatus.SrcNatDone) != 0)
        {
            int bucket = SourceBucketOf(TupleOf(ref entry, reply: false));
            entry.NextBySource = _sourceBuckets[bucket];
            _sourceBuckets[bucket] = slot;
        }

        _count++;
    }

    private int SourceBucketOf(in ConnTuple original) =>
        (int)(new ConnTuple(original.Family, original.Protocol, original.Source, original.SourcePort, default, 0).Hash(_hashKey) & (uint)_sourceMask);

    /// <summary>
    /// The first slot of the by-source chain <paramref name="original"/>'s source endpoint hashes to (-1: empty). The
    /// chain holds the source-translated connections; follow it with <see cref="BySourceAt"/> and compare the
    /// endpoints, since other endpoints share chains.
    /// </summary>
    internal int SourceChainHead(in ConnTuple original) => _sourceBuckets[SourceBucketOf(original)];

    /// <summary>The entry in a slot of a by-source chain, and the slot of the next one (-1: the end).</summary>
    internal Connection BySourceAt(int slot, out int next)
    {
        next = EntryAt(slot).NextBySource;
        return HandleOf(slot);
    }

    /// <summary>Removes a connection from the table and gives its slot back. Returns false if it was not in the table.</summary>
    public bool Remove(Connection connection)
    {
        bool removed = Unlink(connection);
        Release(connection);
        return removed;
    }

    /// <summary>
    /// Takes a connection out of the index (lookups no longer find it) but keeps its slot, so that what hangs off it can
    /// still be read until <see cref="Release"/>. Returns false if it was not in the table.
    /// </summary>
    internal bool Unlink(Connection connection)
    {
        if (!connection.IsInTable || !ReferenceEquals(connection.Table, this))
        {
            return false;
        }

        int slot = connection.Index;
        ref var entry = ref connection.Entry;
        UnlinkChains(slot, ref entry);
        if ((entry.StatusBits & ConnStatus.Expected) != 0)
        {
            GreKeys.RemoveConnection(TupleOf(ref entry, reply: false), TupleOf(ref entry, reply: true));
            connection.Master?.Extras?.GreCalls?.Remove(connection);
        }

        if (entry.NextBySource != -2)
        {
            UnlinkBySource(slot, ref entry);
        }

        entry.Use = EntryUse.Unlinked;
        _count--;
        TupleReleases++;
        LastReleasedReply = TupleOf(ref entry, reply: true);
        return true;
    }

    /// <summary>
    /// Gives a connection's slot (and its out-of-line parts) back, taking it out of the index first if it is still
    /// there: every handle on it is stale from now on. Nothing happens for a handle already stale.
    /// </summary>
    public void Release(Connection connection)
    {
        if (!connection.IsAlive || !ReferenceEquals(connection.Table, this))
        {
            return;
        }

        Unlink(connection);
        int slot = connection.Index;
        ref var entry = ref connection.Entry;
        if (entry.ExtrasIndex != 0)
        {
            _extras[entry.ExtrasIndex - 1]!.Clear();
            _freeExtras.Push(entry.ExtrasIndex - 1);
            entry.ExtrasIndex = 0;
        }

        entry.Use = EntryUse.Free;
        entry.Generation = entry.Generation == uint.MaxValue ? 1 : entry.Generation + 1;
        entry.NextInOriginalChain = NoLink;
        if (_freeTail == NoLink)
        {
            _freeHead = slot;
        }
        else
        {
            EntryAt(_freeTail).NextInOriginalChain = slot;
        }

        _freeTail = slot;
        _freeCount++;
    }

    /// <summary>Re-indexes an entry after its reply tuple changed (NAT decided after the entry was inserted).</summary>
    public void Rehash(Connection connection, in ConnTuple newReplyTuple)
    {
        ref var entry = ref connection.Entry;
        if (!connection.IsInTable)
        {
            SetReply(ref entry, newReplyTuple);
            return;
        }

        CheckReply(ref entry, newReplyTuple); // before the entry leaves its chains
        int slot = connection.Index;
        UnlinkChains(slot, ref entry);
        TupleReleases++;
        LastReleasedReply = TupleOf(ref entry, reply: true);
        bool expected = (entry.StatusBits & ConnStatus.Expected) != 0;
        if (expected)
        {
            GreKeys.RemoveConnection(TupleOf(ref entry, reply: false), LastReleasedReply);
        }

        SetReply(ref entry, newReplyTuple);
        if (expected)
        {
            GreKeys.AddConnection(TupleOf(ref entry, reply: false), newReplyTuple);
        }

        LinkChains(slot, ref entry);
    }

    /// <summary>The entry in a slot, if the slot holds one in the table, for incremental scans (garbage collection, early drop, listings).</summary>
    public Connection? AtSlot(int slot) =>
        slot >= 0 && slot < _highWater && EntryAt(slot).Use == EntryUse.InTable ? HandleOf(slot) : null;

    /// <summary>Visits the entries chained in a bucket (early drop looks at a few buckets near a new tuple's).</summary>
    internal int FirstLinkOfBucket(int bucket) => _buckets[bucket & _bucketMask];

    internal Connection EntryOfLink(int link) => HandleOf(link >> 1);

    internal static int NextLink(Connection entry, int link) => NextLink(ref entry.Entry, link);

    private static int NextLink(ref ConnEntry entry, int link) => (link & 1) == 0 ? entry.NextInOriginalChain : entry.NextInReplyChain;

    /// <summary>Enumerates every entry in the table (not for the packet path).</summary>
    public IEnumerable<Connection> Entries()
    {
        for (int slot = 0; slot < _highWater; slot++)
        {
            if (EntryAt(slot).Use == EntryUse.InTable)
            {
                yield return HandleOf(slot);
            }
        }
    }

    internal ConnectionExtras? ExtrasOf(int extrasIndex) => extrasIndex == 0 ? null : _extras[extrasIndex - 1];

    internal ConnectionExtras EnsureExtras(int slot)
    {
        ref var entry = ref EntryAt(slot);
        if (entry.ExtrasIndex != 0)
        {
            return _extras[entry.ExtrasIndex - 1]!;
        }

        if (!_freeExtras.TryPop(out int index))
        {
            index = _extrasHighWater++;
            if (index == _extras.Length)
            {
                Array.Resize(ref _extras, _extras.Length * 2);
            }
        }

        var extras = _extras[index] ??= new ConnectionExtras();
        entry.ExtrasIndex = index + 1;
        return extras;
    }

    private void LinkChains(int slot, ref ConnEntry entry)
    {
        int original = BucketOf(TupleOf(ref entry, reply: false));
        entry.NextInOriginalChain = _buckets[original];
        _buckets[original] = slot * 2;

        int reply = BucketOf(TupleOf(ref entry, reply: true));
        entry.NextInReplyChain = _buckets[reply];
        _buckets[reply] = (slot * 2) + 1;
    }

    private void UnlinkChains(int slot, ref ConnEntry entry)
    {
        UnlinkOne(BucketOf(TupleOf(ref entry, reply: false)), slot * 2);
        UnlinkOne(BucketOf(TupleOf(ref entry, reply: true)), (slot * 2) + 1);
    }

    private void UnlinkBySource(int slot, ref ConnEntry entry)
    {
        int bucket = SourceBucketOf(TupleOf(ref entry, reply: false));
        if (_sourceBuckets[bucket] == slot)
        {
            _sourceBuckets[bucket] = entry.NextBySource;
        }
        else
        {
            for (int at = _sourceBuckets[bucket]; at != NoLink; at = EntryAt(at).NextBySource)
            {
                ref var previous = ref EntryAt(at);
                if (previous.NextBySource == slot)
                {
                    previous.NextBySource = entry.NextBySource;
                    break;
                }
            }
        }

        entry.NextBySource = -2;
    }

    private void UnlinkOne(int bucket, int target)
    {
        int link = _buckets[bucket];
        if (link == target)
        {
            _buckets[bucket] = NextLink(ref EntryAt(target >> 1), target);
            return;
        }

        while (link != NoLink)
        {
            ref var entry = ref EntryAt(link >> 1);
            int next = NextLink(ref entry, link);
            if (next == target)
            {
                int after = NextLink(ref EntryAt(target >> 1), target);
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
