using Offload.Engine.Conntrack;
using Offload.Engine.Conntrack.Tcp;

namespace Offload.Engine;

// The connection's lifetime: how an entry leaves the table (expiry, early drop, a vanished address, an explicit
// destroy, a packet dropped before confirmation) and what goes with it (its expectations, its helper's state).
public sealed partial class ConntrackEngine
{
    /// <summary>Buckets scanned for an unassured entry to drop when the table is full (the kernel's eviction range).</summary>
    private const int EarlyDropBuckets = 8;

    /// <summary>
    /// Slots looked at, from a cursor that moves on, when the buckets near the new tuple hold no unassured entry.
    /// With 2 buckets per entry about e^-1 of the buckets are empty, so the kernel's 8-bucket scan finds nothing in
    /// about e^-8 of the tries even in a table full of unassured entries (45 drops in 100,000 SYNs at 4,096 entries).
    /// </summary>
    private const int EarlyDropSlots = 64;

    private int _earlyDropCursor;

    private int _gcCursor;

    /// <summary>The new connection the last packet created; unconfirmed until its packet leaves.</summary>
    private Connection _lastUnconfirmed;

    /// <summary>
    /// Moves every tracked connection and outstanding expectation from one helper to another (a plugin replaced by a
    /// new version), or, with <paramref name="replacement"/> null, detaches them (a plugin unloaded). The connections
    /// lose the old helper's per-connection state: its types belong to the old code. On removal, the expectations the
    /// helper's connections announced are withdrawn, as the kernel does when a helper is unregistered; on replacement
    /// they stay, since the new version would announce the same.
    /// </summary>
    /// <returns>How many connections were moved or detached.</returns>
    public int ReplaceHelper(ConntrackHelper old, ConntrackHelper? replacement)
    {
        ArgumentNullException.ThrowIfNull(old);
        int moved = 0;
        foreach (var conn in _table.Entries())
        {
            if (conn.Extras is not { } extras || !ReferenceEquals(extras.Helper, old))
            {
                continue;
            }

            extras.Helper = replacement;
            extras.HelperState = null;
            if (replacement is null)
            {
                conn.StatusBits &= ~ConnStatus.Helper;
                _expectations.RemoveAllOf(conn);
            }

            moved++;
        }

        _expectations.ReplaceHelper(old, replacement);
        return moved;
    }

    /// <summary>
    /// Publishes in the shard directory the tuples of a confirmed connection whose packets the kernel may queue to
    /// another shard (see <see cref="Sharding.ShardDirectory"/>): the reply tuple unless the reply comes back here by
    /// itself (no translation: the same two addresses hash to the same queue; source NAT only, to a port of this
    /// shard's slice of the NAT ports: its own steering rule), and of a connection created for a packet another shard's
    /// queue received.
    /// </summary>
    private void Publish(Connection conn, bool arrivedElsewhere)
    {
        if (_options.Directory is not { } directory)
        {
            return;
        }

        // Both tuples: an ICMP error is looked up by the inverse of what it quotes, which may be either.
        if (arrivedElsewhere || !RepliesComeHere(conn))
        {
            directory.Publish(conn.OriginalTuple, _options.Shard);
            directory.Publish(conn.ReplyTuple, _options.Shard);
            conn.PublishedTuples = 3;
        }
    }

    private bool RepliesComeHere(Connection conn)
    {
        var nat = conn.StatusBits & ConnStatus.NatMask;
        if (nat == 0)
        {
            return true;
        }

        if (nat != ConnStatus.SrcNat || !_options.HasNatPortRange)
        {
            return false;
        }

        // An ICMP query's identifier is its "port", in the same place both ways.
        var reply = conn.ReplyTuple;
        ushort port = reply.IsIcmp ? reply.SourcePort : reply.DestinationPort;
        var (min, max) = _options.SliceOf(_options.NatPortMin, _options.NatPortMax);
        return port >= min && port <= max && reply.Protocol is IpProtocol.Tcp or IpProtocol.Udp or IpProtocol.Icmp or IpProtocol.IcmpV6;
    }

    /// <summary>
    /// Publishes both tuples of every connection in the table (restored from a snapshot: the shard a connection was
    /// restored into need not be the one the kernel queues it to).
    /// </summary>
    public void PublishAll()
    {
        if (_options.Directory is not { } directory)
        {
            return;
        }

        foreach (var conn in _table.Entries())
        {
            directory.Publish(conn.OriginalTuple, _options.Shard);
            directory.Publish(conn.ReplyTuple, _options.Shard);
            conn.PublishedTuples = 3;
        }
    }

    private void Unpublish(Connection conn)
    {
        if (conn.PublishedTuples == 0 || _options.Directory is not { } directory)
        {
            return;
        }

        if ((conn.PublishedTuples & 1) != 0)
        {
            directory.Withdraw(conn.OriginalTuple, _options.Shard);
        }

        if ((conn.PublishedTuples & 2) != 0)
        {
            directory.Withdraw(conn.ReplyTuple, _options.Shard);
        }

        conn.PublishedTuples = 0;
    }

    /// <summary>Forgets a packet's new, unconfirmed connection (the packet is dropped before confirmation).</summary>
    private void Abandon(ref PacketContext ctx)
    {
        if (ctx.Unconfirmed && ctx.Conn is { } conn)
        {
            ForgetUnconfirmed(conn);
            ctx.Conn = null;
            ctx.Unconfirmed = false;
        }
    }

    /// <summary>
    /// Gives back the slot of a connection dropped before it was confirmed, with the expectations its packet's helper
    /// announced. An expected one's observer heard it fulfil its expectation, so it hears it go too (or it would keep,
    /// say, the connection's steering entry forever).
    /// </summary>
    private void ForgetUnconfirmed(Connection conn)
    {
        if (conn.Extras is not null)
        {
            _expectations.RemoveAllOf(conn);
        }

        if (conn.HasStatus(ConnStatus.Expected))
        {
            _observer?.ConnectionDestroyed(conn);
        }

        _table.Release(conn);
    }

    /// <summary>Forgets the connection the last packet created if that packet never confirmed it (nor abandoned it).</summary>
    private void ReclaimUnconfirmed()
    {
        var last = _lastUnconfirmed;
        _lastUnconfirmed = default;
        if (last.IsAlive && !last.IsInTable && !last.IsDying)
        {
            ForgetUnconfirmed(last);
        }
    }

    /// <summary>Removes a connection and everything that hangs off it; nothing happens for one already gone.</summary>
    public void Destroy(Connection conn) => Destroy(conn, null);

    /// <summary>
    /// Keeps a connection in the table at least until <paramref name="untilNanoseconds"/> (the engine's clock), whatever
    /// its protocol's timeouts say: a flow whose packets another tracker sees (handed back to the kernel's conntrack)
    /// keeps its entry, and its NAT binding, while that tracker has it. Its next packet here sets its timeout as usual.
    /// </summary>
    public void KeepUntil(Connection conn, long untilNanoseconds)
    {
        if (!conn.IsDying && conn.ExpiresAt < untilNanoseconds)
        {
            conn.ExpiresAt = untilNanoseconds;
        }
    }

    /// <summary>
    /// Relaxes the TCP window checks of a connection both ways (as a snapshot's load does): once another tracker sees
    /// most of its segments, this one's window history is stale, and a late segment that still comes here must be
    /// translated, not refused as out of window.
    /// </summary>
    public static void TrackLiberally(Connection conn)
    {
        if (!conn.IsAlive)
        {
            return; // a handle kept past its connection: the slot's next one is not this one
        }

        if (conn.Protocol != IpProtocol.Tcp)
        {
            return;
        }

        conn.Tcp.Original.Flags |= TcpTrackFlags.BeLiberal;
        conn.Tcp.Reply.Flags |= TcpTrackFlags.BeLiberal;
    }

    private void Destroy(Connection conn, EngineCounter? reason)
    {
        if (!conn.IsAlive)
        {
            return; // gone already: the handle outlived it
        }

        conn.StatusBits |= ConnStatus.Dying;
        if (_table.Unlink(conn))
        {
            Unpublish(conn);
            _observer?.ConnectionDestroyed(conn);
        }

        if (conn.Extras is { } extras)
        {
            _expectations.RemoveAllOf(conn);
            if (extras.GreCalls is { Count: > 0 } calls)
            {
                // The control connection of PPTP calls is gone: their GRE times out now (the kernel's
                // pptp_destroy_siblings); the next packet or the collector takes it.
                long now = Now;
                foreach (var call in calls)
                {
                    call.ExpiresAt = Math.Min(call.ExpiresAt, now);
                }
            }

            if (extras.Helper is { } helper)
            {
                _helpers.Destroyed(helper, extras.HelperState);
            }
        }

        if (reason is { } counter)
        {
            _counters.Count(counter);
        }

        _table.Release(conn);
    }

    /// <summary>
    /// Removes the connections masqueraded to an address their interface no longer has (the kernel does the same when
    /// an address goes away): their replies could never come back, and a new connection will get the new address.
    /// </summary>
    /// <param name="stillHas">Whether an interface (by index) still has an address (of a family).</param>
    /// <returns>How many connections were removed.</returns>
    public int ForgetMasqueradedToGoneAddresses(Func<int, byte, InetAddress, bool> stillHas)
    {
        ArgumentNullException.ThrowIfNull(stillHas);
        var gone = new List<Connection>();
        foreach (var connection in _table.Entries())
        {
            if (connection.MasqueradeInterface != 0
                && !stillHas(connection.MasqueradeInterface, connection.ReplyTuple.Family, connection.ReplyTuple.Destination))
            {
                gone.Add(connection);
            }
        }

        foreach (var connection in gone)
        {
            Destroy(connection, EngineCounter.ConnectionsMasqueradeGone);
        }

        return gone.Count;
    }

    /// <summary>
    /// Frees one unassured entry near <paramref name="tuple"/>'s bucket so a new connection fits (the kernel's early_drop).
    /// Assured connections are kept: they proved they are wanted.
    /// </summary>
    private bool EarlyDrop(in ConnTuple tuple)
    {
        int bucket = _table.BucketOf(tuple);
        for (int i = 0; i < EarlyDropBuckets; i++)
        {
            for (int link = _table.FirstLinkOfBucket(bucket + i); link != -1;)
            {
                var entry = _table.EntryOfLink(link);
                if (!entry.HasStatus(ConnStatus.Assured) && !entry.IsDying)
                {
                    Destroy(entry, EngineCounter.ConnectionsEarlyDropped);
                    return true;
                }

                link = ConnectionTable.NextLink(entry, link);
            }
        }

        // Not the kernel's: a bounded look at the slots, so a full table of unassured entries never refuses a new one.
        int slots = _table.SlotsInUse;
        for (int i = 0; i < EarlyDropSlots && i < slots; i++)
        {
            int slot = _earlyDropCursor >= slots ? 0 : _earlyDropCursor;
            _earlyDropCursor = slot + 1;
            if (_table.AtSlot(slot) is { } entry && !entry.HasStatus(ConnStatus.Assured) && !entry.IsDying)
            {
                Destroy(entry, EngineCounter.ConnectionsEarlyDropped);
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Removes expired connections and expectations, looking at up to <paramref name="budget"/> slots of the connection
    /// table and as many buckets of the expectations, each from where the last call stopped, so the work per call stays
    /// bounded. Returns the number of connections removed.
    /// </summary>
    public int CollectGarbage(int budget)
    {
        long now = Now;
        int removed = 0;
        int slots = _table.SlotsInUse;
        for (int i = 0; i < budget && i < slots; i++)
        {
            if (_gcCursor >= slots)
            {
                _gcCursor = 0;
            }

            var entry = _table.AtSlot(_gcCursor++);
            if (entry is { } e && e.ExpiresAt <= now)
            {
                Destroy(e, EngineCounter.ConnectionsExpired);
                removed++;
            }
        }

        _counters.Add(EngineCounter.ExpectationsExpired, _expectations.Expire(now, budget));
        return removed;
    }
}
