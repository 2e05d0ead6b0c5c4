using Offload.Engine.Packets;

namespace Offload.Engine.Conntrack.Gre;

/// <summary>
/// The source keys of enhanced GRE (the kernel's GRE keymap, nf_conntrack_proto_gre.c): a PPTP GRE packet carries only
/// its receiver's call ID, so the sender's call ID, the other half of the tuple, is looked up by addresses and that
/// call ID. Entries come from what the PPTP helper negotiated: its GRE expectations and the connections that fulfil
/// them (a call ID may be 0: pptpd's first call has it), each entry counted by its holders and gone with the last one.
/// </summary>
/// <remarks>
/// The tables keep it in step themselves (an expectation linked or removed, a connection inserted, removed or
/// re-tupled), so a snapshot restore and a replicated standby rebuild it with no record of its own. A lookup
/// allocates nothing.
/// </remarks>
public sealed class GreKeymap
{
    private readonly Dictionary<Key, Entry> _entries = [];

    /// <summary>Entries held now (tests, statistics).</summary>
    public int Count => _entries.Count;

    /// <summary>
    /// The source key of a GRE tuple read from a packet (its destination key is the packet's call ID), or 0 when no
    /// call announced it, as the kernel's lookup answers.
    /// </summary>
    public ushort SourceKeyOf(in ConnTuple tuple) =>
        _entries.Count != 0 && _entries.TryGetValue(new Key(tuple), out var entry) ? entry.SourceKey : (ushort)0;

    /// <summary>
    /// Holds a connection's keys: both tuples, and both as translated (the inverse of the other direction's), so that an
    /// ICMP error quoting a call's GRE as it left the router finds the call too (the kernel's keymap holds only the
    /// expectations' tuples, and such an error finds nothing there).
    /// </summary>
    internal void AddConnection(in ConnTuple original, in ConnTuple reply)
    {
        if (original.Protocol != IpProtocol.Gre)
        {
            return;
        }

        Add(original);
        Add(reply);
        Add(reply.Invert());
        Add(original.Invert());
    }

    /// <summary>Lets go of what <see cref="AddConnection"/> held.</summary>
    internal void RemoveConnection(in ConnTuple original, in ConnTuple reply)
    {
        if (original.Protocol != IpProtocol.Gre)
        {
            return;
        }

        Remove(original);
        Remove(reply);
        Remove(reply.Invert());
        Remove(original.Invert());
    }

    internal void Add(in ConnTuple tuple)
    {
        if (tuple.Protocol != IpProtocol.Gre)
        {
            return;
        }

        var key = new Key(tuple);
        _entries[key] = _entries.TryGetValue(key, out var entry) && entry.SourceKey == tuple.SourcePort
            ? entry with { Holders = entry.Holders + 1 }
            : new Entry(tuple.SourcePort, 1);
    }

    internal void Remove(in ConnTuple tuple)
    {
        if (tuple.Protocol != IpProtocol.Gre)
        {
            return;
        }

        var key = new Key(tuple);
        if (!_entries.TryGetValue(key, out var entry) || entry.SourceKey != tuple.SourcePort)
        {
            return; // A later call took the entry over; it is that call's now.
        }

        if (entry.Holders <= 1)
        {
            _entries.Remove(key);
        }
        else
        {
            _entries[key] = entry with { Holders = entry.Holders - 1 };
        }
    }

    private readonly record struct Key(byte Family, InetAddress Source, InetAddress Destination, ushort DestinationKey)
    {
        public Key(in ConnTuple tuple)
            : this(tuple.Family, tuple.Source, tuple.Destination, tuple.DestinationPort)
        {
        }
    }

    private readonly record struct Entry(ushort SourceKey, int Holders);
}
