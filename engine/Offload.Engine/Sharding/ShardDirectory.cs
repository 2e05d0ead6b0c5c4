using System.Collections.Concurrent;
using System.Security.Cryptography;
using Offload.Engine.Conntrack;

namespace Offload.Engine.Sharding;

/// <summary>
/// What the engine shards of one daemon tell each other: which shard owns a connection whose packets may reach
/// another shard's queue, and which shard expects a connection. Each shard looks here only when its own table misses
/// (a new connection, or a packet the kernel queued to the wrong shard), so an established flow that arrives where it
/// lives never touches anything shared.
/// </summary>
/// <remarks>
/// <para>The kernel picks a queue of a <c>--queue-balance</c> range by a symmetric hash of the two addresses: both
/// directions of a flow without address translation reach the same shard, and the replies of source NAT come back to
/// the shard that chose their port, by per-shard port slices (<see cref="PortSlice"/>). Everything else is
/// published here by the shard that owns it: the reply tuple of a destination-translated flow (a port forward: the
/// reply's addresses are not the original's), the tuples of a connection created for another shard's packet (an
/// expected connection arriving where its master does not live), and connections restored from a snapshot.</para>
/// <para>Expectations are published by the key they are looked up with (family, protocol, destination address and
/// port): their source may be a wildcard. When two shards expect the same key, the first one published is found;
/// the other's expectation is still found by packets its own queue receives.</para>
/// <para>Thread-safe: every shard's thread reads and writes it.</para>
/// </remarks>
public sealed class ShardDirectory
{
    private readonly ConcurrentDictionary<ConnTuple, int> _connections;
    private readonly ConcurrentDictionary<ConnTuple, (int Shard, int Count)> _expectations;
    private readonly object _expectationWrites = new();

    public ShardDirectory(int shards)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(shards, 1);
        Shards = shards;

        // Keyed as the tables are, with a secret key: nobody outside picks tuples that share a bucket here.
        var comparer = new TupleComparer(BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)) | 1);
        _connections = new ConcurrentDictionary<ConnTuple, int>(comparer);
        _expectations = new ConcurrentDictionary<ConnTuple, (int, int)>(comparer);
    }

    /// <summary>How many shards share this directory.</summary>
    public int Shards { get; }

    /// <summary>Tuples published now (for <c>offloadctl stats</c>).</summary>
    public int PublishedTuples => _connections.Count;

    /// <summary>Expectation keys published now.</summary>
    public int PublishedExpectations => _expectations.Count;

    /// <summary>
    /// The shard that owns the connection of <paramref name="tuple"/> (either direction), or else the one that expects
    /// it; -1 when no shard published either.
    /// </summary>
    public int OwnerOf(in ConnTuple tuple)
    {
        if (_connections.TryGetValue(tuple, out int shard))
        {
            return shard;
        }

        return _expectations.IsEmpty ? -1 : _expectations.TryGetValue(ExpectationKey(tuple), out var expected) ? expected.Shard : -1;
    }

    /// <summary>The shard that owns the connection of <paramref name="tuple"/>, without looking at expectations; -1 for none.</summary>
    public int ConnectionOwnerOf(in ConnTuple tuple) => _connections.TryGetValue(tuple, out int shard) ? shard : -1;

    internal void Publish(in ConnTuple tuple, int shard) => _connections[tuple] = shard;

    /// <summary>Withdraws a tuple if this shard published it (a later owner of the same tuple keeps its entry).</summary>
    internal void Withdraw(in ConnTuple tuple, int shard) => _connections.TryRemove(new KeyValuePair<ConnTuple, int>(tuple, shard));

    internal void Expect(in ConnTuple tuple, int shard)
    {
        var key = ExpectationKey(tuple);
        lock (_expectationWrites)
        {
            _expectations[key] = _expectations.TryGetValue(key, out var e) ? e with { Count = e.Count + 1 } : (shard, 1);
        }
    }

    /// <summary>Withdraws one expectation of the key, whichever shard published it (a key counts the expectations of all).</summary>
    internal void Unexpect(in ConnTuple tuple)
    {
        var key = ExpectationKey(tuple);
        lock (_expectationWrites)
        {
            if (!_expectations.TryGetValue(key, out var e))
            {
                return;
            }

            if (e.Count > 1)
            {
                _expectations[key] = e with { Count = e.Count - 1 };
            }
            else
            {
                _expectations.TryRemove(key, out _);
            }
        }
    }

    /// <summary>What an expectation is found by: its source is left out, as it may be a wildcard.</summary>
    private static ConnTuple ExpectationKey(in ConnTuple tuple) =>
        new(tuple.Family, tuple.Protocol, default, 0, tuple.Destination, tuple.DestinationPort);

    private sealed class TupleComparer(ulong key) : IEqualityComparer<ConnTuple>
    {
        public bool Equals(ConnTuple x, ConnTuple y) => x.Equals(y);

        public int GetHashCode(ConnTuple tuple) => (int)tuple.Hash(key);
    }
}
