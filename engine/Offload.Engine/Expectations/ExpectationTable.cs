using Offload.Engine.Conntrack;

namespace Offload.Engine.Expectations;

/// <summary>
/// Outstanding expectations, indexed by the exact part of their tuple (destination, protocol) so a new
/// connection finds its expectation in one bucket, and chained per master so they die with it.
/// </summary>
public sealed class ExpectationTable
{
    private readonly Expectation?[] _buckets;
    private readonly ulong _hashKey;
    private int _expireCursor;

    public ExpectationTable(int maxExpectations, ulong hashKey)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxExpectations, 1);
        MaxExpectations = maxExpectations;
        _hashKey = hashKey;
        _buckets = new Expectation?[(int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Clamp(maxExpectations, 16, 1 << 20))];
    }

    public int MaxExpectations { get; }

    /// <summary>Told when an expectation is added or removed.</summary>
    internal IConntrackObserver? Observer { get; set; }

    public int Count { get; private set; }

    /// <summary>Where the GRE expectations of PPTP calls register their source keys (the connection table's keymap).</summary>
    internal Conntrack.Gre.GreKeymap? GreKeys { get; set; }

    /// <summary>Where this shard's expectations are published for the other shards (null: an engine alone).</summary>
    internal Sharding.ShardDirectory? Directory { get; set; }

    internal int Shard { get; set; }

    private int BucketOf(in ConnTuple tuple)
    {
        var key = new ConnTuple(tuple.Family, tuple.Protocol, default, 0, tuple.Destination, tuple.DestinationPort);
        return (int)(key.Hash(_hashKey) & (ulong)(_buckets.Length - 1));
    }

    /// <summary>Registers an expectation, replacing an identical one and evicting the master's oldest when its policy is exceeded.</summary>
    /// <param name="expectation">The new expectation.</param>
    /// <param name="policy">Its helper's limits.</param>
    /// <param name="now">The engine's clock.</param>
    /// <param name="replaceSame">False: an identical expectation of the same master counts as a clash instead.</param>
    public ExpectResult Add(Expectation expectation, in ExpectationPolicy policy, long now, bool replaceSame = true)
    {
        int bucket = BucketOf(expectation.Tuple);
        for (var existing = _buckets[bucket]; existing is not null; existing = existing.NextInBucket)
        {
            if (existing.ExpiresAt <= now)
            {
                continue; // Lapsed: it will be collected, and must not block a new one.
            }

            if (existing.SameAs(expectation))
            {
                if (!replaceSame)
                {
                    return ExpectResult.Clash;
                }

                Remove(existing);
                break;
            }

            if (existing.ClashesWith(expectation))
            {
                return ExpectResult.Clash;
            }
        }

        if (policy.MaxExpected > 0 && CountOf(expectation.Master, expectation.Class) >= policy.MaxExpected)
        {
            var oldest = OldestOf(expectation.Master, expectation.Class);
            if (oldest is null)
            {
                return ExpectResult.TooMany;
            }

            Remove(oldest);
        }

        if (Count >= MaxExpectations && Expire(now) == 0)
        {
            // Full of live expectations. (Lapsed ones are removed first: they must not count against the limit.)
            return ExpectResult.TableFull;
        }

        expectation.Timeout = policy.Timeout;
        expectation.ExpiresAt = now + (long)policy.Timeout.TotalNanoseconds;
        Link(expectation, bucket);
        Observer?.ExpectationAdded(expectation);
        return ExpectResult.Added;
    }

    /// <summary>
    /// Puts back an expectation saved in a snapshot, with its own expiry, as it was (no policy, no clash check, no
    /// observer: the daemon brings its steering in step with the restored table itself).
    /// </summary>
    internal void Restore(Expectation expectation) => Link(expectation, BucketOf(expectation.Tuple));

    private void Link(Expectation expectation, int bucket)
    {
        expectation.NextInBucket = _buckets[bucket];
        _buckets[bucket] = expectation;

        // Append to the master's list so the head is the oldest.
        var extras = expectation.Master.EnsureExtras();
        expectation.NextOfMaster = null;
        if (extras.FirstExpectation is null)
        {
            extras.FirstExpectation = expectation;
        }
        else
        {
            var last = extras.FirstExpectation;
            while (last.NextOfMaster is not null)
            {
                last = last.NextOfMaster;
            }

            last.NextOfMaster = expectation;
        }

        extras.ExpectationCount++;
        if (expectation.MatchSourcePort)
        {
            GreKeys?.Add(expectation.Tuple);
        }

        expectation.Linked = true;
        Directory?.Expect(expectation.Tuple, Shard);
        Count++;
    }

    /// <summary>
    /// Finds the expectation a new connection with <paramref name="tuple"/> fulfils. A non-permanent one is
    /// removed: each expectation admits one connection.
    /// </summary>
    public Expectation? Take(in ConnTuple tuple, long now)
    {
        int bucket = BucketOf(tuple);
        for (var e = _buckets[bucket]; e is not null; e = e.NextInBucket)
        {
            if (e.ExpiresAt <= now || (e.Flags & ExpectationFlags.Inactive) != 0 || e.Master.IsDying)
            {
                continue;
            }

            if (e.Matches(tuple))
            {
                if ((e.Flags & ExpectationFlags.Permanent) == 0)
                {
                    Remove(e);
                }

                return e;
            }
        }

        return null;
    }

    /// <summary>Removes an expectation. Returns false if it was not registered.</summary>
    public bool Remove(Expectation expectation)
    {
        if (!expectation.Linked)
        {
            return false;
        }

        int bucket = BucketOf(expectation.Tuple);
        ref Expectation? link = ref _buckets[bucket];
        while (link is not null && !ReferenceEquals(link, expectation))
        {
            link = ref link.NextInBucket;
        }

        if (link is not null)
        {
            link = expectation.NextInBucket;
        }

        var extras = expectation.Master.Extras!;
        ref Expectation? own = ref extras.FirstExpectation;
        while (own is not null && !ReferenceEquals(own, expectation))
        {
            own = ref own.NextOfMaster;
        }

        if (own is not null)
        {
            own = expectation.NextOfMaster;
        }

        extras.ExpectationCount--;
        if (expectation.MatchSourcePort)
        {
            GreKeys?.Remove(expectation.Tuple);
        }

        expectation.NextInBucket = null;
        expectation.NextOfMaster = null;
        expectation.Linked = false;
        Directory?.Unexpect(expectation.Tuple);
        Count--;
        Observer?.ExpectationRemoved(expectation);
        return true;
    }

    /// <summary>Removes every expectation of a master (it is dying, or its helper went away).</summary>
    public int RemoveAllOf(Connection master)
    {
        int removed = 0;
        while (master.Extras?.FirstExpectation is { } e)
        {
            Remove(e);
            removed++;
        }

        return removed;
    }

    /// <summary>Removes a master's expectations of one class (a helper withdraws them: SIP's BYE, the call's media).</summary>
    public int RemoveOf(Connection master, int expectationClass)
    {
        int removed = 0;
        var e = master.Extras?.FirstExpectation;
        while (e is not null)
        {
            var next = e.NextOfMaster;
            if (e.Class == expectationClass && Remove(e))
            {
                removed++;
            }

            e = next;
        }

        return removed;
    }

    /// <summary>Points the expectations that would attach <paramref name="old"/> to their connection at <paramref name="replacement"/> instead.</summary>
    internal void ReplaceHelper(ConntrackHelper old, ConntrackHelper? replacement)
    {
        foreach (var head in _buckets)
        {
            for (var e = head; e is not null; e = e.NextInBucket)
            {
                if (ReferenceEquals(e.Helper, old))
                {
                    e.Helper = replacement;
                }
            }
        }
    }

    /// <summary>Buckets of the index: what <see cref="Expire(long, int)"/> walks, one per unit of its budget.</summary>
    public int BucketCount => _buckets.Length;

    /// <summary>Removes every lapsed expectation (the table is full and must make room); returns how many.</summary>
    public int Expire(long now)
    {
        if (Count == 0)
        {
            return 0;
        }

        int removed = 0;
        for (int b = 0; b < _buckets.Length; b++)
        {
            removed += ExpireBucket(b, now);
        }

        return removed;
    }

    /// <summary>
    /// Removes lapsed expectations in up to <paramref name="budget"/> buckets from where the last call stopped, so that
    /// a periodic sweep costs a bounded time under the engine's lock however large the table (as connection expiry
    /// does); returns how many.
    /// </summary>
    public int Expire(long now, int budget)
    {
        if (Count == 0)
        {
            return 0;
        }

        int removed = 0;
        int mask = _buckets.Length - 1;
        for (int i = Math.Min(budget, _buckets.Length); i > 0; i--)
        {
            removed += ExpireBucket(_expireCursor, now);
            _expireCursor = (_expireCursor + 1) & mask;
        }

        return removed;
    }

    private int ExpireBucket(int bucket, long now)
    {
        int removed = 0;
        var e = _buckets[bucket];
        while (e is not null)
        {
            var next = e.NextInBucket;
            if (e.ExpiresAt <= now)
            {
                Remove(e);
                removed++;
            }

            e = next;
        }

        return removed;
    }

    /// <summary>Every outstanding expectation (listings; allocates).</summary>
    public IEnumerable<Expectation> Entries()
    {
        foreach (var head in _buckets)
        {
            for (var e = head; e is not null; e = e.NextInBucket)
            {
                yield return e;
            }
        }
    }

    /// <summary>The master's outstanding expectations of one class that have not lapsed (a helper asks).</summary>
    internal static int CountOf(Connection master, int expectationClass, long now)
    {
        int n = 0;
        for (var e = master.Extras?.FirstExpectation; e is not null; e = e.NextOfMaster)
        {
            if (e.Class == expectationClass && e.ExpiresAt > now)
            {
                n++;
            }
        }

        return n;
    }

    /// <summary>The master's outstanding expectation that a helper's request describes (as registered: the port the engine chose), or null.</summary>
    internal static Expectation? Find(Connection master, in ExpectationRequest request)
    {
        for (var e = master.Extras?.FirstExpectation; e is not null; e = e.NextOfMaster)
        {
            var t = e.Tuple;
            if (e.Class == request.Class && t.Protocol == request.Protocol && t.Destination == request.Destination
                && t.DestinationPort == request.DestinationPort && e.MatchSourcePort == request.MatchSourcePort
                && (!request.MatchSourcePort || t.SourcePort == request.SourcePort)
                && e.SourcePrefixLength == request.SourcePrefixLength && (request.SourcePrefixLength <= 0 || t.Source == request.Source))
            {
                return e;
            }
        }

        return null;
    }

    private static int CountOf(Connection master, int expectationClass)
    {
        int n = 0;
        for (var e = master.Extras?.FirstExpectation; e is not null; e = e.NextOfMaster)
        {
            if (e.Class == expectationClass)
            {
                n++;
            }
        }

        return n;
    }

    private static Expectation? OldestOf(Connection master, int expectationClass)
    {
        for (var e = master.Extras?.FirstExpectation; e is not null; e = e.NextOfMaster)
        {
            if (e.Class == expectationClass)
            {
                return e;
            }
        }

        return null;
    }
}
