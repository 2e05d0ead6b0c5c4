using Microsoft.Extensions.Logging;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Packets;
using Offload.Interop.Ipset;

namespace Offload.Daemon;

/// <summary>
/// In helpers mode, keeps the ipset sets of individually steered flows in step with the engine: a connection a
/// helper expects is put in the set before its first packet comes from the LAN side, kept while it lives, and
/// taken out when it (or its unused expectation) goes. Entries are (destination, port, source) of the packets the
/// LAN side sends, which the steering rules match with <c>dst,dst,src</c>.
/// </summary>
/// <remarks>Called on the packet thread, under the engine's lock, for rare events only (never per packet).</remarks>
internal sealed class IpsetSteering : IConntrackObserver, IDisposable
{
    private readonly IpsetClient _client;
    private readonly string _set4;
    private readonly string _set6;
    private readonly ILogger _logger;
    // An entry is (destination, port, source) without the source port: several flows may share one (e.g. the
    // active-mode data connections of one client, all from the server's port 20), so entries are counted.
    private readonly Dictionary<EntryKey, int> _users = [];
    private readonly Dictionary<Connection, EntryKey> _byConnection = new(ReferenceEqualityComparer.Instance);
    private readonly IpsetOperation[] _one = new IpsetOperation[1];

    public IpsetSteering(string set4, string set6, ILogger logger)
    {
        _client = IpsetClient.Open();
        _set4 = set4;
        _set6 = set6;
        _logger = logger;

        // Entries left by an earlier run describe flows this engine does not know.
        _client.Flush(set4);
        _client.Flush(set6);
    }

    public long Added { get; private set; }

    public long Deleted { get; private set; }

    public long Failed { get; private set; }

    /// <summary>Connections steered by an entry.</summary>
    public int Steered => _byConnection.Count;

    /// <summary>
    /// Puts in the sets what a table restored from a snapshot needs (the sets were flushed when this was made): the
    /// outstanding expectations and the expected connections that live.
    /// </summary>
    public void Resync(ConntrackEngine engine)
    {
        foreach (var expectation in engine.Expectations.Entries())
        {
            ExpectationAdded(expectation);
        }

        foreach (var connection in engine.Connections.Entries())
        {
            if (connection.HasStatus(ConnStatus.Expected))
            {
                Steer(connection, connection.ArrivedAtAnnouncedAddress);
            }
        }
    }

    public void ExpectationAdded(Expectation expectation)
    {
        // One that arrives at our own address and port range is steered by the range rule; the others (a server's
        // passive port) must be in the set before the client's first packet.
        if (!expectation.AtTranslatedAddress)
        {
            Acquire(EntryKey.Of(expectation.Tuple));
        }
    }

    public void ExpectationRemoved(Expectation expectation)
    {
        if (!expectation.AtTranslatedAddress)
        {
            Release(EntryKey.Of(expectation.Tuple));
        }
    }

    public void ExpectationFulfilled(Expectation expectation, Connection connection)
    {
        // The packets the LAN side sends: the original direction of a connection the LAN opened, or the replies
        // of one that arrived at our address.
        Steer(connection, expectation.AtTranslatedAddress);
    }

    private void Steer(Connection connection, bool atTranslatedAddress)
    {
        var key = EntryKey.Of(atTranslatedAddress ? connection.Reply : connection.Original);
        if (Acquire(key))
        {
            _byConnection[connection] = key;
        }
    }

    public void ConnectionDestroyed(Connection connection)
    {
        if (_byConnection.Remove(connection, out var key))
        {
            Release(key);
        }
    }

    private bool Acquire(EntryKey key)
    {
        if (_users.TryGetValue(key, out int users))
        {
            _users[key] = users + 1;
            return true;
        }

        if (!Apply(IpsetOperation.Add(SetOf(key.Family), key.ToEntry())))
        {
            return false;
        }

        _users[key] = 1;
        return true;
    }

    private void Release(EntryKey key)
    {
        if (!_users.TryGetValue(key, out int users))
        {
            return;
        }

        if (users > 1)
        {
            _users[key] = users - 1;
            return;
        }

        _users.Remove(key);
        Apply(IpsetOperation.Delete(SetOf(key.Family), key.ToEntry()));
    }

    private string SetOf(byte family) => family == 4 ? _set4 : _set6;

    private bool Apply(in IpsetOperation operation)
    {
        _one[0] = operation;
        bool ok = _client.Apply(_one) == 0;
        if (!ok)
        {
            if (Failed++ < 10)
            {
                Log.SteeringEntryFailed(_logger, operation.Entry.ToString());
            }
        }
        else if (operation.Kind == IpsetOperationKind.Add)
        {
            Added++;
        }
        else
        {
            Deleted++;
        }

        return ok;
    }

    public void Dispose() => _client.Dispose();

    /// <summary>The set entry of the packets with this tuple: (destination, port, source) and the protocol.</summary>
    private readonly record struct EntryKey(byte Family, byte Protocol, InetAddress Destination, ushort Port, InetAddress Source)
    {
        public static EntryKey Of(in ConnTuple tuple) => new(tuple.Family, tuple.Protocol, tuple.Destination, tuple.DestinationPort, tuple.Source);

        public IpsetEntry ToEntry()
        {
            Span<byte> destination = stackalloc byte[16];
            Span<byte> source = stackalloc byte[16];
            int length = InetAddress.Length(Family);
            Destination.Write(Family, destination);
            Source.Write(Family, source);
            return new IpsetEntry(Family == 4 ? IpsetFamily.IPv4 : IpsetFamily.IPv6, Protocol, destination.Slice(0, length), Port, source.Slice(0, length));
        }
    }
}
