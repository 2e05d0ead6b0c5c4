using Offload.Engine.Conntrack;
using Offload.Engine.Packets;

namespace Offload.Engine.Nat;

/// <summary>
/// Chooses translations for new connections, as the kernel's nf_nat_core does: a unique tuple per
/// connection, the original port kept when it is free, otherwise a search of the range.
/// </summary>
internal sealed class NatCore
{
    /// <summary>Ports tried per round before giving up, like the kernel's NF_NAT_MAX_ATTEMPTS.</summary>
    internal const int MaxAttempts = 128;

    private readonly ConnectionTable _table;
    private readonly IClock _clock;
    private readonly Action<Connection> _collectExpired;
    private ulong _random;

    // The last port search that found its whole range taken (for an unconfirmed connection), the table's count of
    // released tuples then and the clock: until an entry lets go of a tuple or time moves on (an entry may expire), the
    // same search is answered without a scan. A live daemon's clock moves once per burst, so a flood into a full range
    // costs one scan per burst or release, not one per packet.
    private long _exhaustedAt;
    private ConnTuple _exhaustedTuple;
    private bool _exhaustedSource;
    private uint _exhaustedMin;
    private uint _exhaustedSize;
    private uint _exhaustedReleases;

    /// <param name="table">The connection table whose tuples a translation must not take.</param>
    /// <param name="clock">The engine's clock: an entry past its time holds no tuple.</param>
    /// <param name="collectExpired">Removes an expired entry the search came across (the engine's destroy, counted as expired).</param>
    /// <param name="seed">The port search's seed.</param>
    public NatCore(ConnectionTable table, IClock clock, Action<Connection> collectExpired, ulong seed)
    {
        _table = table;
        _clock = clock;
        _collectExpired = collectExpired;
        _random = seed | 1;
    }

    /// <summary>
    /// Decides one manip of a connection (the kernel's nf_nat_setup_info): picks a unique tuple within
    /// <paramref name="range"/>, stores it as the new reply tuple, and marks the manip done.
    /// </summary>
    /// <returns>False when no unique tuple was found in the range (the packet is dropped).</returns>
    public bool SetupInfo(Connection connection, in NatRange range, ManipType manip)
    {
        // What the original packet looks like after the manips decided so far.
        var current = connection.ReplyTuple.Invert();
        var candidate = current;
        if (!GetUniqueTuple(ref candidate, current, range, connection, manip))
        {
            return false;
        }

        if (!candidate.Equals(current))
        {
            var reply = candidate.Invert();
            if (connection.Slot >= 0)
            {
                _table.Rehash(connection, reply);
            }
            else
            {
                connection.ReplyTuple = reply;
            }

            connection.StatusBits |= manip == ManipType.Source ? ConnStatus.SrcNat : ConnStatus.DstNat;
        }

        connection.StatusBits |= manip == ManipType.Source ? ConnStatus.SrcNatDone : ConnStatus.DstNatDone;
        return true;
    }

    /// <summary>
    /// The mapping a connection gets when no rule translates it: its own address, so that it still
    /// reserves its tuple and a later translation cannot collide with it (the kernel's null binding).
    /// </summary>
    public bool SetupNullBinding(Connection connection, ManipType manip)
    {
        var current = connection.ReplyTuple.Invert();
        var address = manip == ManipType.Source ? current.Source : current.Destination;
        return SetupInfo(connection, NatRange.ToAddress(address), manip);
    }

    public static bool IsDone(Connection connection, ManipType manip) =>
        (connection.StatusBits & (manip == ManipType.Source ? ConnStatus.SrcNatDone : ConnStatus.DstNatDone)) != 0;

    /// <summary>
    /// True when some other live connection already answers to the reply of <paramref name="tuple"/>. An expired entry
    /// that still holds it is collected instead, as the kernel's nf_conntrack_tuple_taken does (nf_ct_gc_expired): a
    /// connection killed by a RST or timed out waits for the collector, and its port must not stay taken meanwhile
    /// (issue 14: under a SYN flood answered by resets, most of a range was held by such entries).
    /// </summary>
    private bool IsUsed(in ConnTuple tuple, Connection connection)
    {
        var reply = tuple.Invert();
        while (_table.FindTaker(reply, connection) is { } taker)
        {
            if (taker.ExpiresAt > _clock.NowNanoseconds)
            {
                return true;
            }

            _collectExpired(taker);
        }

        return false;
    }

    private bool GetUniqueTuple(ref ConnTuple tuple, in ConnTuple original, in NatRange range, Connection connection, ManipType manip)
    {
        bool randomAll = (range.Flags & NatRangeFlags.ProtoRandomAll) != 0;

        if (manip == ManipType.Source && !randomAll)
        {
            // Keep the tuple as it is when it already fits the range and nobody else uses it.
            if (InRange(original, range, manip, connection))
            {
                if (!IsUsed(original, connection))
                {
                    tuple = original;
                    return true;
                }
            }
            else if (TryExistingMapping(original, range, connection, out var mapped) && !IsUsed(mapped, connection))
            {
                // The same source endpoint keeps the mapping it already has, towards every destination
                // (endpoint-independent mapping, what STUN and hole punching rely on).
                tuple = mapped;
                return true;
            }

            tuple = original;
        }

        PickAddress(ref tuple, range, manip);

        if (!randomAll)
        {
            if (range.SpecifiesPorts)
            {
                if (PortInRange(tuple, manip, range, connection) && (range.MinPort == range.MaxPort || !IsUsed(tuple, connection)))
                {
                    return true;
                }
            }
            else if (!IsUsed(tuple, connection))
            {
                return true;
            }
        }

        return PickPort(ref tuple, range, connection, manip);
    }

    /// <summary>
    /// The mapping an existing connection from the same source endpoint has, applied to <paramref name="original"/>,
    /// if it lies in <paramref name="range"/> (the kernel's find_appropriate_src).
    /// </summary>
    private bool TryExistingMapping(in ConnTuple original, in NatRange range, Connection connection, out ConnTuple mapped)
    {
        for (int slot = _table.SourceChainHead(original); slot != -1;)
        {
            var entry = _table.BySourceAt(slot, out slot);
            var o = entry.OriginalTuple;
            if (o.Family != original.Family || o.Protocol != original.Protocol || o.Source != original.Source || o.SourcePort != original.SourcePort)
            {
                continue;
            }

            // Its source as translated: the inverse of its reply tuple.
            var translated = entry.ReplyTuple.Invert();
            mapped = original;
            mapped.Source = translated.Source;
            mapped.SourcePort = translated.SourcePort;
            if (InRange(mapped, range, ManipType.Source, connection))
            {
                return true;
            }
        }

        mapped = default;
        return false;
    }

    private static bool InRange(in ConnTuple tuple, in NatRange range, ManipType manip, Connection connection)
    {
        if (range.MapsAddresses)
        {
            var address = manip == ManipType.Source ? tuple.Source : tuple.Destination;
            if (InetAddress.Compare(address, range.MinAddress) < 0 || InetAddress.Compare(address, range.MaxAddress) > 0)
            {
                return false;
            }
        }

        return !range.SpecifiesPorts || PortInRange(tuple, manip, range, connection);
    }

    private static bool PortInRange(in ConnTuple tuple, ManipType manip, in NatRange range, Connection connection)
    {
        if (!HasPorts(tuple.Protocol, connection) && !tuple.IsIcmp)
        {
            return true;
        }

        ushort port = tuple.IsIcmp || manip == ManipType.Source ? tuple.SourcePort : tuple.DestinationPort;
        return port >= range.MinPort && port <= range.MaxPort;
    }

    /// <summary>
    /// Whether the tuple's ports can be chosen. GRE's keys are PPTP's call IDs: only a call's data channel, which has a
    /// master, has them translated (the kernel's nf_nat_l4proto_unique_tuple leaves GRE without master alone).
    /// </summary>
    private static bool HasPorts(byte protocol, Connection connection) =>
        protocol is IpProtocol.Tcp or IpProtocol.Udp or IpProtocol.UdpLite or IpProtocol.Sctp
        || (protocol == IpProtocol.Gre && connection.Extras?.Master is not null);

    /// <summary>
    /// Picks the address for the manip. Within a range, a hash of the source (and, unless persistent,
    /// the destination) keeps the choice stable, so a client keeps the same public address.
    /// </summary>
    private static void PickAddress(ref ConnTuple tuple, in NatRange range, ManipType manip)
    {
        if (!range.MapsAddresses)
        {
            return;
        }

        ref var address = ref manip == ManipType.Source ? ref tuple.Source : ref tuple.Destination;
        if (range.MinAddress == range.MaxAddress)
        {
            address = range.MinAddress;
            return;
        }

        ulong distance = range.MinAddress.DistanceTo(tuple.Family, range.MaxAddress);
        ulong spread = distance == ulong.MaxValue ? ulong.MaxValue : distance + 1;
        ulong hash = tuple.Source.High ^ (tuple.Source.Low * 31);
        if ((range.Flags & NatRangeFlags.Persistent) == 0)
        {
            hash = (hash * 0x9E3779B97F4A7C15UL) ^ tuple.Destination.High ^ (tuple.Destination.Low * 17) ^ tuple.Protocol;
        }

        hash ^= hash >> 31;
        hash *= 0xBF58476D1CE4E5B9UL;
        hash ^= hash >> 29;
        address = range.MinAddress.Add(tuple.Family, spread == ulong.MaxValue ? hash : hash % spread);
    }

    /// <summary>
    /// Searches the port (or ICMP id) space, starting at a random offset, for a tuple nobody uses: in rounds of
    /// shrinking length like the kernel, then, where the kernel gives up, over the whole range, so the search fails
    /// only when every port of the range is taken.
    /// </summary>
    private bool PickPort(ref ConnTuple tuple, in NatRange range, Connection connection, ManipType manip)
    {
        uint min;
        uint size;
        bool icmp = tuple.IsIcmp;
        if (!icmp && !HasPorts(tuple.Protocol, connection))
        {
            // Nothing to vary; a clash that remains is caught when the connection is confirmed.
            return true;
        }

        ushort current = icmp || manip == ManipType.Source ? tuple.SourcePort : tuple.DestinationPort;
        if (range.SpecifiesPorts)
        {
            min = range.MinPort;
            size = (uint)(range.MaxPort - range.MinPort) + 1;
        }
        else if (icmp)
        {
            min = 0;
            size = 65536;
        }
        else
        {
            if (manip == ManipType.Destination)
            {
                // A destination port is a service: without a configured range it is never changed.
                // A clash that remains is resolved by the source manip, or caught at confirmation.
                return true;
            }

            // Keep ports in the class they came from (the old convention that privileged ports stay privileged).
            if (current < 512)
            {
                min = 1;
                size = 511;
            }
            else if (current < 1024)
            {
                min = 600;
                size = 424;
            }
            else
            {
                min = 1024;
                size = 65536 - 1024;
            }
        }

        bool source = icmp || manip == ManipType.Source;
        bool unconfirmed = connection.Slot < 0;
        if (unconfirmed && _exhaustedReleases == _table.TupleReleases && _exhaustedAt == _clock.NowNanoseconds
            && IsExhaustedSearch(tuple, source, min, size))
        {
            // The same search found every port taken, and no entry has let go of a tuple since.
            return false;
        }

        uint offset = (uint)NextRandom();
        int attempts = (int)Math.Min(size, MaxAttempts);
        while (true)
        {
            for (int i = 0; i < attempts; i++, offset++)
            {
                if (IsFree(ref tuple, source, (ushort)(min + (offset % size)), connection))
                {
                    return true;
                }
            }

            if (attempts >= size)
            {
                // The round covered the whole range.
                break;
            }

            if (attempts < 16)
            {
                // Not the kernel's: it gives up here and drops the packet at confirmation, although a range 90% used
                // (4,096 connections in 4,536 ports) has runs of taken ports longer than these probes (issue 14). A
                // scan of the whole range from a random start finds a free port whenever there is one; its cost (at
                // most the range's size in lookups) is paid only at such occupancy, and once per release of a tuple
                // when the range is full (the memo of an exhausted search). The port a connection let go of last
                // comes first: under a flood into a full range, early drop has just freed it.
                if (!icmp && IsReleasedPortFree(ref tuple, source, min, size, connection))
                {
                    return true;
                }

                offset = (uint)NextRandom();
                for (uint i = 0; i < size; i++, offset++)
                {
                    if (IsFree(ref tuple, source, (ushort)(min + (offset % size)), connection))
                    {
                        return true;
                    }
                }

                break;
            }

            attempts /= 2;
            offset = (uint)NextRandom();
        }

        if (unconfirmed)
        {
            _exhaustedReleases = _table.TupleReleases;
            _exhaustedAt = _clock.NowNanoseconds;
            _exhaustedTuple = tuple;
            _exhaustedSource = source;
            _exhaustedMin = min;
            _exhaustedSize = size;
        }

        return false;
    }

    /// <summary>Sets the port (or ICMP id) the search varies and tells whether nobody uses the tuple then.</summary>
    private bool IsFree(ref ConnTuple tuple, bool source, ushort port, Connection connection)
    {
        if (source)
        {
            tuple.SourcePort = port;
        }
        else
        {
            tuple.DestinationPort = port;
        }

        return !IsUsed(tuple, connection);
    }

    /// <summary>Whether the tuple, with the port of the reply tuple the table let go of last, is in the range and free.</summary>
    private bool IsReleasedPortFree(ref ConnTuple tuple, bool source, uint min, uint size, Connection connection)
    {
        ref readonly var released = ref _table.LastReleasedReply;
        ushort port = source ? released.DestinationPort : released.SourcePort;
        if (port < min || port - min >= size)
        {
            return false;
        }

        var candidate = tuple;
        if (source)
        {
            candidate.SourcePort = port;
        }
        else
        {
            candidate.DestinationPort = port;
        }

        if (!candidate.Invert().Equals(released) || IsUsed(candidate, connection))
        {
            return false;
        }

        tuple = candidate;
        return true;
    }

    /// <summary>Whether this search, but for the port it varies, is the one that last found its whole range taken.</summary>
    private bool IsExhaustedSearch(in ConnTuple tuple, bool source, uint min, uint size)
    {
        if (_exhaustedSize == 0 || source != _exhaustedSource || min != _exhaustedMin || size != _exhaustedSize)
        {
            return false;
        }

        var probe = tuple;
        if (source)
        {
            probe.SourcePort = _exhaustedTuple.SourcePort;
        }
        else
        {
            probe.DestinationPort = _exhaustedTuple.DestinationPort;
        }

        return probe.Equals(_exhaustedTuple);
    }

    private ulong NextRandom()
    {
        // xorshift64*: deterministic for a given seed, so a replay gives the same ports every time.
        _random ^= _random >> 12;
        _random ^= _random << 25;
        _random ^= _random >> 27;
        return (_random * 0x2545F4914F6CDD1DUL) >> 16;
    }
}
