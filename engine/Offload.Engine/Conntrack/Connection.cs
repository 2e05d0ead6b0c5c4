using System.Runtime.CompilerServices;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;

namespace Offload.Engine.Conntrack;

/// <summary>
/// A handle on one tracked connection (the kernel's <c>nf_conn</c>): its tuple in each direction, status, timeout,
/// protocol state, and, only when needed, the rarer parts (helper, sequence adjustment, master).
/// </summary>
/// <remarks>
/// <para>
/// The connection itself is a <see cref="ConnEntry"/> stored by value in its <see cref="ConnectionTable"/>; the handle
/// names its slot and the slot's generation. Copying a handle copies no state: every copy reads and writes the same
/// entry. A handle kept past its connection's end is told apart by <see cref="IsAlive"/> (the slot's generation moved
/// on); reading through it is a mistake the engine avoids by checking where it keeps handles (a master, a pending
/// change, a flow being handed back).
/// </para>
/// <para>
/// NAT needs no storage of its own: as in the kernel, the reply tuple is the inverse of what the original packet looks
/// like after translation, so every manip is derived from the two tuples.
/// </para>
/// </remarks>
public readonly struct Connection : IEquatable<Connection>
{
    private readonly ConnectionTable _table;
    private readonly int _slot;
    private readonly uint _generation;

    internal Connection(ConnectionTable table, int slot, uint generation)
    {
        _table = table;
        _slot = slot;
        _generation = generation;
    }

    internal ref ConnEntry Entry
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref _table.EntryAt(_slot);
    }

    internal ConnTuple OriginalTuple => _table.TupleAt(_slot, reply: false);

    /// <summary>The reply tuple; setting it is for a connection not yet in the index (<see cref="ConnectionTable.Rehash"/> re-indexes one that is).</summary>
    internal ConnTuple ReplyTuple
    {
        get => _table.TupleAt(_slot, reply: true);
        set => _table.SetReplyOfUnlinked(this, value);
    }

    internal ref long ExpiresAt => ref Entry.ExpiresAt;

    internal ref ConnStatus StatusBits => ref Entry.StatusBits;

    internal ref uint MarkValue => ref Entry.MarkValue;

    /// <summary>For UDP: when a replied flow counts as a stream. For TCP it shares its bytes with <see cref="Tcp"/>: not to be set.</summary>
    internal ref long StreamAt => ref Entry.StreamAt;

    /// <summary>TCP's window tracking, for a TCP connection only (other protocols keep their own state in its bytes).</summary>
    internal ref TcpTrackState Tcp => ref Entry.Tcp;

    /// <summary>The IP protocol of both tuples.</summary>
    internal byte Protocol => Entry.Protocol;

    /// <summary>The interface whose address MASQUERADE chose (0: not masqueraded), so its flows can go when the address does.</summary>
    internal ref int MasqueradeInterface => ref Entry.MasqueradeInterface;

    /// <summary>Which of its tuples this shard published in the shard directory (bit 0: original, bit 1: reply).</summary>
    internal ref byte PublishedTuples => ref Entry.PublishedTuples;

    /// <summary>The rarer parts, or null while none was needed.</summary>
    internal ConnectionExtras? Extras => _table.ExtrasOf(Entry.ExtrasIndex);

    /// <summary>The table this connection lives in.</summary>
    internal ConnectionTable Table => _table;

    /// <summary>The slot of a connection in the table's index; -1 for one that is not (unconfirmed, or gone).</summary>
    internal int Slot => IsInTable ? _slot : -1;

    /// <summary>The slot, whatever the connection's state: an index for per-slot arrays.</summary>
    internal int Index => _slot;

    /// <summary>
    /// True while the connection this handle was made for still holds its slot (unconfirmed, in the table, or on its
    /// way out); false once it is gone, whatever has taken the slot since.
    /// </summary>
    public bool IsAlive => _table is not null && _table.GenerationAt(_slot) == _generation;

    /// <summary>True while the connection is in the table (confirmed and not removed).</summary>
    public bool IsInTable => IsAlive && Entry.Use == EntryUse.InTable;

    /// <summary>The tuple of the original direction (what the first packet looked like before NAT).</summary>
    public ConnTuple Original => OriginalTuple;

    /// <summary>The tuple a reply carries before de-NAT (the inverse of the original packet after NAT).</summary>
    public ConnTuple Reply => ReplyTuple;

    /// <summary>The tuple of one direction.</summary>
    public ConnTuple TupleOf(ConnDirection direction) => _table.TupleAt(_slot, reply: direction == ConnDirection.Reply);

    public ConnStatus Status => Entry.StatusBits;

    public bool HasStatus(ConnStatus bits) => (Entry.StatusBits & bits) == bits;

    /// <summary>The connection mark (the kernel's ctmark).</summary>
    public uint Mark
    {
        get => Entry.MarkValue;
        set => Entry.MarkValue = value;
    }

    /// <summary>The TCP state, or <see cref="TcpConntrackState.None"/> for other protocols.</summary>
    public TcpConntrackState TcpState => Entry.Protocol == IpProtocol.Tcp ? Entry.Tcp.State : TcpConntrackState.None;

    /// <summary>What the TCP tracker knows of each direction (window scales, flags), for a TCP connection: read when the flow is handed to the kernel.</summary>
    public ref readonly TcpTrackState TcpTracking => ref Entry.Tcp;

    /// <summary>When this connection expires, on the engine's clock (nanoseconds).</summary>
    public long ExpiresAtNanoseconds => Entry.ExpiresAt;

    /// <summary>
    /// The connection that expected this one, while it lasts. The kernel's master outlives its children by reference
    /// count; here a child whose master has gone has none, and nothing of the engine needs it then.
    /// </summary>
    public Connection? Master => Extras?.Master is { IsAlive: true } master ? master : null;

    /// <summary>The helper attached, if any.</summary>
    public ConntrackHelper? Helper => Extras?.Helper;

    /// <summary>
    /// For an expected connection: it arrived at the address its master's helper announced (the expectation's
    /// <see cref="Expectation.AtTranslatedAddress"/>), so the LAN side sends its replies.
    /// </summary>
    public bool ArrivedAtAnnouncedAddress => Extras?.ExpectedAtTranslatedAddress ?? false;

    /// <summary>True when the source or destination is translated.</summary>
    public bool IsNatted => (Entry.StatusBits & ConnStatus.NatMask) != 0;

    internal ConnectionExtras EnsureExtras() => _table.EnsureExtras(_slot);

    /// <summary>This handle as an object, boxed once per connection (see <see cref="ConnectionExtras.BoxedHandle"/>).</summary>
    internal object Boxed() => EnsureExtras().BoxedHandle ??= this;

    /// <summary>True for a connection on its way out, and for one already gone (a stale handle).</summary>
    internal bool IsDying => !IsAlive || (Entry.StatusBits & ConnStatus.Dying) != 0;

    public bool Equals(Connection other) => ReferenceEquals(_table, other._table) && _slot == other._slot && _generation == other._generation;

    public override bool Equals(object? obj) => obj is Connection other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(_slot, _generation);

    public static bool operator ==(Connection left, Connection right) => left.Equals(right);

    public static bool operator !=(Connection left, Connection right) => !left.Equals(right);
}
