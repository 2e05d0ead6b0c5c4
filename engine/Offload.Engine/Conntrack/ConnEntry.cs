using System.Runtime.InteropServices;
using Offload.Engine.Conntrack.Tcp;

namespace Offload.Engine.Conntrack;

/// <summary>Where a slot of the connection table is in its life.</summary>
internal enum EntryUse : byte
{
    /// <summary>Holds nothing.</summary>
    Free,

    /// <summary>A new connection whose first packet is still on its way (the kernel's unconfirmed conntrack): in no chain.</summary>
    Unconfirmed,

    /// <summary>In the hash index under both tuples.</summary>
    InTable,

    /// <summary>Taken out of the index, its parts being let go: freed when that is done.</summary>
    Unlinked,
}

/// <summary>
/// One direction's tuple as an entry stores it: an IPv4 tuple whole, in 12 bytes. An entry whose addresses do not fit
/// (IPv6) keeps only its ports here and its four addresses in the table's <see cref="AddressBlocks"/>; the family and
/// protocol, which both tuples share, are the entry's.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
internal struct EntryTuple
{
    /// <summary>The source address (IPv4, host order); in an entry with an address block, the original tuple's holds the block's index.</summary>
    public uint Source;

    /// <summary>The destination address (IPv4, host order); unused in an entry with an address block.</summary>
    public uint Destination;

    public ushort SourcePort;

    public ushort DestinationPort;
}

/// <summary>
/// One tracked connection by value (the kernel's <c>nf_conn</c>), as the table stores it: no references, so the
/// garbage collector has nothing to trace however many there are. <see cref="Connection"/> is the handle the engine
/// passes around.
/// </summary>
/// <remarks>
/// <para>
/// 128 bytes, two cache lines, and the table aligns them: the first holds what a lookup reads (both tuples beside their
/// chain links, family and protocol, the slot's state and generation) and what every packet of the connection updates
/// (timeout, status); the second holds the protocol's state. An IPv4 entry pays nothing for IPv6 addresses: those live
/// out of line, in an <see cref="AddressBlocks"/> block, for the entries that need one (<see cref="HasAddressBlock"/>).
/// </para>
/// <para>
/// The rarer parts (helper, sequence adjustment, master, expectations) live out of line in
/// <see cref="ConnectionExtras"/>, reached by <see cref="ExtrasIndex"/>. UDP's stream time shares its bytes with TCP's
/// window tracking: a connection has one protocol.
/// </para>
/// </remarks>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct ConnEntry
{
    /// <summary>The size of an entry: two cache lines.</summary>
    public const int Size = 128;

    [FieldOffset(0)]
    public EntryTuple Original;

    // Hash-chain links of the two tuples, as "slot * 2 + direction" of the next entry, or -1.
    [FieldOffset(12)]
    public int NextInOriginalChain;

    [FieldOffset(16)]
    public EntryTuple Reply;

    [FieldOffset(28)]
    public int NextInReplyChain;

    /// <summary>4 or 6, for both tuples.</summary>
    [FieldOffset(32)]
    public byte Family;

    /// <summary>The IP protocol of both tuples.</summary>
    [FieldOffset(33)]
    public byte Protocol;

    [FieldOffset(34)]
    public EntryUse Use;

    /// <summary>Which of its tuples this shard published in the shard directory (bit 0: original, bit 1: reply).</summary>
    [FieldOffset(35)]
    public byte PublishedTuples;

    /// <summary>Counts the slot's reuses: a handle whose generation differs names a connection that is gone.</summary>
    [FieldOffset(36)]
    public uint Generation;

    [FieldOffset(40)]
    public long ExpiresAt;

    [FieldOffset(48)]
    public ConnStatus StatusBits;

    [FieldOffset(52)]
    public uint MarkValue;

    /// <summary>1 + the index of this entry's <see cref="ConnectionExtras"/> in the table's pool; 0 for none.</summary>
    [FieldOffset(56)]
    public int ExtrasIndex;

    /// <summary>Link in the by-source index of source-translated connections (slot of the next, -1 for none, -2 when not linked).</summary>
    [FieldOffset(60)]
    public int NextBySource;

    /// <summary>The interface whose address MASQUERADE chose (0: not masqueraded), so its flows can go when the address does.</summary>
    [FieldOffset(64)]
    public int MasqueradeInterface;

    /// <summary>TCP's window tracking (58 bytes); for other protocols, unused but for <see cref="StreamAt"/>.</summary>
    [FieldOffset(68)]
    public TcpTrackState Tcp;

    /// <summary>For UDP and the other protocols without TCP's tracking: when a replied flow counts as a stream.</summary>
    [FieldOffset(72)]
    public long StreamAt;

    /// <summary>The addresses live in an <see cref="AddressBlocks"/> block, whose index <see cref="Original"/>'s source holds.</summary>
    [FieldOffset(126)]
    public bool HasAddressBlock;
}
