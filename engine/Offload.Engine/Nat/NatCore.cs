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
    private ulong _random;

    public NatCore(ConnectionTable table, ulong seed)
    {
        _table = table;
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

    /// <summary>True when some other connection already answers to the reply of <paramref name="tuple"/>.</summary>
    private bool IsUsed(in ConnTuple tuple, Connection connection) => _table.IsTaken(tuple.Invert(), connection);

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
            var entry = _table.AtSlot(slot)!;
            slot = entry.NextBySource;
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
    /// Searches the port (or ICMP id) space, starting at a random offset, for a tuple nobody uses,
    /// in rounds of shrinking length like the kernel, so a full range costs a bounded number of probes.
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

        uint offset = (uint)NextRandom();
        int attempts = (int)Math.Min(size, MaxAttempts);
        while (true)
        {
            for (int i = 0; i < attempts; i++, offset++)
            {
                ushort port = (ushort)(min + (offset % size));
                if (icmp || manip == ManipType.Source)
                {
                    tuple.SourcePort = port;
                }
                else
                {
                    tuple.DestinationPort = port;
                }

                if (!IsUsed(tuple, connection))
                {
                    return true;
                }
            }

            if (attempts >= size || attempts < 16)
            {
                return false;
            }

            attempts /= 2;
            offset = (uint)NextRandom();
        }
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
