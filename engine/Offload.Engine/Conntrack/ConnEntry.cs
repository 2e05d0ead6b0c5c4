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
/// One tracked connection by value (the kernel's <c>nf_conn</c>), as the table stores it: no references, so the
/// garbage collector has nothing to trace however many there are. <see cref="Connection"/> is the handle the engine
/// passes around.
/// </summary>
/// <remarks>
/// A lookup compares a tuple and follows its chain link, so each tuple sits next to its link, and the original
/// direction's pair fills the first cache line. The rarer parts (helper, sequence adjustment, master, expectations)
/// live out of line in <see cref="ConnectionExtras"/>, reached by <see cref="ExtrasIndex"/>.
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
internal struct ConnEntry
{
    public ConnTuple OriginalTuple;

    // Hash-chain links of the two tuples, as "slot * 2 + direction" of the next entry, or -1.
    public int NextInOriginalChain;
    public int NextInReplyChain;

    public ConnTuple ReplyTuple;

    public long ExpiresAt;
    public ConnStatus StatusBits;
    public uint MarkValue;

    /// <summary>For UDP: when a replied flow counts as a stream. For others: unused.</summary>
    public long StreamAt;

    /// <summary>Link in the by-source index of source-translated connections (slot of the next, -1 for none, -2 when not linked).</summary>
    public int NextBySource;

    /// <summary>The interface whose address MASQUERADE chose (0: not masqueraded), so its flows can go when the address does.</summary>
    public int MasqueradeInterface;

    /// <summary>1 + the index of this entry's <see cref="ConnectionExtras"/> in the table's pool; 0 for none.</summary>
    public int ExtrasIndex;

    /// <summary>Counts the slot's reuses: a handle whose generation differs names a connection that is gone.</summary>
    public uint Generation;

    /// <summary>Which of its tuples this shard published in the shard directory (bit 0: original, bit 1: reply).</summary>
    public byte PublishedTuples;

    public EntryUse Use;

    public TcpTrackState Tcp;
}
