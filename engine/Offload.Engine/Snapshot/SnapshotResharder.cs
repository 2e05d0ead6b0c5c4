using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using Offload.Engine.Conntrack;
using Offload.Engine.Sharding;

namespace Offload.Engine.Snapshot;

/// <summary>
/// Deals the snapshots the shards of one run saved out to the shards of the next, whatever the two numbers of shards:
/// each connection goes to the shard that will receive its packets, with its expected connections and expectations.
/// </summary>
/// <remarks>
/// <para>The placement (<see cref="ShardOf"/>): a connection whose replies come back to a port of the NAT range
/// (source NAT only, the steering rules queue each slice of that range to its shard) goes to the shard whose slice
/// holds that port now; any other (a port forward, a routed flow, a port outside every slice because the range
/// changed) to the shard that saved it, or when that shard is gone to its number modulo the shards now: the kernel may
/// queue such a connection anywhere, and the shard directory tells whoever receives it where it lives. An expected
/// connection and the expectations of a connection go where their master goes (the engine creates an expected
/// connection in its master's shard).</para>
/// <para>Works on the records as saved, never on connections: each record is copied whole, with only the slots that
/// link masters, children and expectations renumbered per new shard (two shards' slots may be equal) and the remaining
/// times taken against the newest snapshot's clock. Every snapshot is checked whole before anything is dealt; a
/// connection found in two snapshots (a reshuffle that was being saved when the daemon died) is taken from the newer
/// one only.</para>
/// </remarks>
public sealed class SnapshotResharder
{
    // The fixed parts of a record (SnapshotFormat; EngineSnapshot writes them): TCP tracking, two sequence
    // adjustments, and an expectation's fields between its tuple and its remaining time, then after it.
    private const int TcpLength = (2 * 18) + 12 + 2 + 7;
    private const int SeqAdjLength = 2 * 12;
    private const int ExpectationBeforeTime = 4 + 1 + 1 + 4;
    private const int ExpectationAfterTime = 1 + 1 + 1 + 2 + 1 + 16 + 2;

    private readonly int _shards;
    private readonly ushort _natPortMin;
    private readonly ushort _natPortMax;
    private readonly List<Saved> _saved = [];

    /// <param name="shards">The shards the snapshots are dealt to.</param>
    /// <param name="natPortMin">The NAT port range whose slices the shards translate to now (0 and 0: none).</param>
    /// <param name="natPortMax">Its last port.</param>
    public SnapshotResharder(int shards, ushort natPortMin, ushort natPortMax)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(shards, 1);
        _shards = shards;
        _natPortMin = natPortMin;
        _natPortMax = natPortMax;
    }

    /// <summary>Snapshots read.</summary>
    public int Snapshots => _saved.Count;

    /// <summary>Whether every snapshot read was written on a clean stop (the dealt ones are then exact too).</summary>
    public bool Final => _saved.TrueForAll(s => s.Final);

    /// <summary>After <see cref="Deal"/>: connections dealt to another shard than the one that saved them.</summary>
    public int Moved { get; private set; }

    /// <summary>
    /// After <see cref="Deal"/>: source-NAT connections (with their children) whose port lies outside the NAT range now;
    /// placed as those without a slice (the shard that saved them, modulo the shards).
    /// </summary>
    public int OutsideSlices { get; private set; }

    /// <summary>After <see cref="Deal"/>: connections left out because a newer snapshot holds them too.</summary>
    public int Duplicates { get; private set; }

    /// <summary>
    /// The shard a connection is restored into: for source NAT to a port of the NAT range, the owner of the port's slice;
    /// otherwise <paramref name="savedBy"/> modulo <paramref name="shards"/>. -1 (with <paramref name="outside"/> true)
    /// is never returned: a source-NAT port outside the range falls back the same way.
    /// </summary>
    public static int ShardOf(ConnStatus status, in ConnTuple reply, int savedBy, int shards, ushort natPortMin, ushort natPortMax, out bool outside)
    {
        outside = false;
        if ((status & ConnStatus.NatMask) == ConnStatus.SrcNat && (natPortMin != 0 || natPortMax != 0)
            && reply.Protocol is IpProtocol.Tcp or IpProtocol.Udp or IpProtocol.Icmp or IpProtocol.IcmpV6)
        {
            // The port the replies come back to (an ICMP query's identifier, in the same place both ways).
            ushort port = reply.IsIcmp ? reply.SourcePort : reply.DestinationPort;
            int owner = PortSlice.OwnerOf(port, natPortMin, natPortMax, shards);
            if (owner >= 0)
            {
                return owner;
            }

            outside = true;
        }

        return savedBy % shards;
    }

    /// <summary>
    /// Reads the snapshot old shard <paramref name="savedBy"/> wrote: whole, or (a <see cref="SnapshotException"/>)
    /// not at all.
    /// </summary>
    public void Add(int savedBy, Stream stream)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(savedBy);
        ArgumentNullException.ThrowIfNull(stream);
        Span<byte> headerBytes = stackalloc byte[SnapshotFormat.HeaderLength];
        int read = stream.ReadAtLeast(headerBytes, headerBytes.Length, throwOnEndOfStream: false);
        var header = SnapshotFormat.ReadHeader(headerBytes.Slice(0, read), stream.Length);
        if (header.BodyLength > Array.MaxLength)
        {
            throw new SnapshotException(SnapshotRefusal.TooLarge, $"a body of {header.BodyLength} bytes");
        }

        var body = new byte[header.BodyLength];
        if (stream.ReadAtLeast(body, body.Length, throwOnEndOfStream: false) != body.Length)
        {
            throw new SnapshotException(SnapshotRefusal.Truncated, "the file ends before its body");
        }

        if (!SHA256.HashData(body).AsSpan().SequenceEqual(header.Sha256))
        {
            throw new SnapshotException(SnapshotRefusal.Corrupt, "the body's checksum does not match its header");
        }

        var saved = new Saved(savedBy, body, header.WrittenAtUnixNanoseconds, (header.Flags & SnapshotFormat.FlagFinal) != 0);
        var reader = new SnapshotReader(new MemoryStream(body, writable: false), body.Length);
        var slots = new HashSet<int>();
        for (int i = 0; i < header.Connections; i++)
        {
            var connection = ReadConnection(reader, body.Length);
            if (connection.SlotAt >= 0 && !slots.Add(connection.Slot))
            {
                throw new SnapshotException(SnapshotRefusal.Corrupt, $"two connections with slot {connection.Slot}");
            }

            saved.Connections.Add(connection);
        }

        for (int i = 0; i < header.Expectations; i++)
        {
            int start = Position(reader, body.Length);
            reader.ReadInt32(); // the master's slot
            reader.ReadName();
            reader.ReadTuple();
            reader.ReadBytes(ExpectationBeforeTime);
            int time = Position(reader, body.Length);
            reader.ReadBytes(8 + ExpectationAfterTime);
            saved.Expectations.Add(new SavedExpectation(start, Position(reader, body.Length), time, BinaryPrimitives.ReadInt32LittleEndian(body.AsSpan(start))));
        }

        if (reader.Left != 0)
        {
            throw new SnapshotException(SnapshotRefusal.Corrupt, $"{reader.Left} bytes after the last record");
        }

        _saved.Add(saved);
    }

    private static int Position(SnapshotReader reader, int length) => length - (int)reader.Left;

    private static SavedConnection ReadConnection(SnapshotReader reader, int length)
    {
        int start = Position(reader, length);
        byte kind = reader.ReadByte();
        if ((kind & ~(SnapshotFormat.RecordTcp | SnapshotFormat.RecordExtras)) != 0)
        {
            throw new SnapshotException(SnapshotRefusal.Corrupt, $"a connection record of kind {kind}");
        }

        var original = reader.ReadTuple();
        var reply = reader.ReadTuple();
        var status = (ConnStatus)reader.ReadUInt32();
        reader.ReadUInt32(); // mark
        int time = Position(reader, length);
        reader.ReadBytes(8 + 8 + 4 + ((kind & SnapshotFormat.RecordTcp) != 0 ? TcpLength : 0));
        int slotAt = -1, slot = -1, master = -1;
        bool state = false;
        if ((kind & SnapshotFormat.RecordExtras) != 0)
        {
            slotAt = Position(reader, length);
            slot = reader.ReadInt32();
            master = reader.ReadInt32();
            reader.ReadBytes(1 + SeqAdjLength);
            reader.ReadName();
            if (reader.ReadInt32() != SnapshotFormat.NoState)
            {
                reader.ReadBytes(reader.ReadInt32());
                state = true;
            }
        }

        return new SavedConnection(start, Position(reader, length), time, slotAt, slot, master, status, original, reply, state);
    }

    /// <summary>
    /// Deals every connection and expectation read to the shards: one snapshot per shard (by index), with the newest
    /// snapshot's time and, when every one read was, written on a clean stop. Load each with <see cref="EngineSnapshot.Load"/>.
    /// </summary>
    public SnapshotImage[] Deal()
    {
        var started = Stopwatch.GetTimestamp();
        long newest = _saved.Count == 0 ? 0 : _saved.Max(s => s.WrittenAt);
        var dealt = new Dealt[_shards];
        for (int i = 0; i < dealt.Length; i++)
        {
            dealt[i] = new Dealt();
        }

        Moved = OutsideSlices = Duplicates = 0;
        var taken = new HashSet<ConnTuple>();
        var places = new List<Dictionary<int, (int Shard, int Slot)>>();
        var ordered = _saved.OrderByDescending(s => s.WrittenAt).ThenBy(s => s.SavedBy).ToList();
        foreach (var saved in ordered)
        {
            places.Add(DealConnections(saved, newest - saved.WrittenAt, dealt, taken));
        }

        for (int f = 0; f < ordered.Count; f++)
        {
            var saved = ordered[f];
            foreach (var e in saved.Expectations)
            {
                // An expectation whose master is not here (a copy left out, a master without a slot) admits nothing.
                if (!places[f].TryGetValue(e.Master, out var place))
                {
                    continue;
                }

                var to = dealt[place.Shard];
                to.Expectations.WriteInt32(place.Slot);
                to.Expectations.Write(saved.Body.AsSpan(e.Start + 4, e.Time - e.Start - 4));
                to.Expectations.WriteInt64(BinaryPrimitives.ReadInt64LittleEndian(saved.Body.AsSpan(e.Time)) - (newest - saved.WrittenAt));
                to.Expectations.Write(saved.Body.AsSpan(e.Time + 8, e.End - e.Time - 8));
                to.ExpectationCount++;
            }
        }

        var captureTime = Stopwatch.GetElapsedTime(started);
        return [.. dealt.Select(d => d.Image(newest, Final, captureTime))];
    }

    /// <summary>Deals one snapshot's connections; returns where each slot went (shard, new slot).</summary>
    private Dictionary<int, (int Shard, int Slot)> DealConnections(Saved saved, long shift, Dealt[] dealt, HashSet<ConnTuple> taken)
    {
        var kept = new List<SavedConnection>();
        var bySlot = new Dictionary<int, SavedConnection>();
        foreach (var c in saved.Connections)
        {
            if (taken.Contains(c.Original) || taken.Contains(c.Reply))
            {
                Duplicates++;
                continue;
            }

            taken.Add(c.Original);
            taken.Add(c.Reply);
            kept.Add(c);
            if (c.SlotAt >= 0)
            {
                bySlot.TryAdd(c.Slot, c);
            }
        }

        // The root of a family (a master's master: H.323's H.245 under Q.931) decides for every member.
        var places = new Dictionary<int, (int Shard, int Slot)>();
        var shards = new int[kept.Count];
        for (int i = 0; i < kept.Count; i++)
        {
            var root = kept[i];
            for (int depth = 0; depth < 8 && root.Master >= 0 && bySlot.TryGetValue(root.Master, out var up) && up.Slot != root.Slot; depth++)
            {
                root = up;
            }

            int shard = shards[i] = ShardOf(root.Status, root.Reply, saved.SavedBy, _shards, _natPortMin, _natPortMax, out bool outside);
            OutsideSlices += outside ? 1 : 0;
            Moved += shard != saved.SavedBy ? 1 : 0;
            if (kept[i].SlotAt >= 0)
            {
                places.TryAdd(kept[i].Slot, (shard, dealt[shard].NextSlot++));
            }
        }

        var body = saved.Body.AsSpan();
        for (int i = 0; i < kept.Count; i++)
        {
            var c = kept[i];
            var to = dealt[shards[i]];
            to.Connections.Write(body.Slice(c.Start, c.Time - c.Start));
            to.Connections.WriteInt64(BinaryPrimitives.ReadInt64LittleEndian(body.Slice(c.Time)) - shift);
            to.Connections.WriteInt64(BinaryPrimitives.ReadInt64LittleEndian(body.Slice(c.Time + 8)) - shift);
            if (c.SlotAt >= 0)
            {
                // Slots renumbered in the new shard; a master is always dealt with its children.
                to.Connections.Write(body.Slice(c.Time + 16, c.SlotAt - c.Time - 16));
                to.Connections.WriteInt32(places[c.Slot].Slot);
                to.Connections.WriteInt32(c.Master >= 0 && places.TryGetValue(c.Master, out var master) && master.Shard == shards[i] ? master.Slot : -1);
                to.Connections.Write(body.Slice(c.SlotAt + 8, c.End - c.SlotAt - 8));
            }
            else
            {
                to.Connections.Write(body.Slice(c.Time + 16, c.End - c.Time - 16));
            }

            to.ConnectionCount++;
            to.HelperStates += c.HasState ? 1 : 0;
        }

        return places;
    }

    private readonly record struct SavedConnection(int Start, int End, int Time, int SlotAt, int Slot, int Master, ConnStatus Status, ConnTuple Original, ConnTuple Reply, bool HasState);

    private readonly record struct SavedExpectation(int Start, int End, int Time, int Master);

    private sealed class Saved(int savedBy, byte[] body, long writtenAt, bool final)
    {
        public int SavedBy { get; } = savedBy;

        public byte[] Body { get; } = body;

        public long WrittenAt { get; } = writtenAt;

        public bool Final { get; } = final;

        public List<SavedConnection> Connections { get; } = [];

        public List<SavedExpectation> Expectations { get; } = [];
    }

    /// <summary>What one new shard receives: its connections, then its expectations, as the format orders them.</summary>
    private sealed class Dealt
    {
        public readonly SnapshotBuffer Connections = new();
        public readonly SnapshotBuffer Expectations = new();
        public int ConnectionCount;
        public int ExpectationCount;
        public int HelperStates;
        public int NextSlot;

        public SnapshotImage Image(long writtenAt, bool final, TimeSpan captureTime)
        {
            foreach (var segment in Expectations.Segments())
            {
                Connections.Write(segment.Span);
            }

            Expectations.Dispose();
            return new SnapshotImage(Connections, writtenAt, final, ConnectionCount, ExpectationCount, HelperStates, captureTime);
        }
    }
}
