using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Offload.Engine;
using Offload.Engine.Replication;
using Offload.Rules;

namespace Offload.Daemon.Replication;

/// <summary>
/// Replication between the two routers of a VRRP pair: on the active node, the engine's changes go to the standby
/// every interval; on the standby, what arrives is applied to its engine. One thread does all socket I/O and the
/// protocol (<see cref="ReplicationLink"/>); it takes the engine lock only to copy what changed (a batch of records)
/// and to apply a received datagram, never while it waits or sends.
/// </summary>
internal sealed class ReplicationService : IDisposable
{
    private readonly ReplicationConfig _config;
    private readonly ConntrackEngine _engine;
    private readonly ManualClock _clock;
    private readonly object _engineLock;
    private readonly ILogger _logger;
    private readonly ReplicationLink _link;
    private readonly ReplicationApplier _applier;
    private readonly ReplicationBatch _batch = new();
    private readonly Socket _socket;
    private readonly KeepalivedFifo? _fifo;
    private readonly Thread _thread;
    private volatile bool _stopping;
    private volatile bool _wantActive;
    private string _roleSource = "start (standby until told otherwise)";
    private DateTime _roleSince = DateTime.UtcNow;
    private long _resyncsRequested;
    private DateTime? _lastResync;
    private long _bytesSent;
    private long _recordsSent;
    private long _recordsTooLarge;
    private long _sendErrors;
    private long _appliedRecords;
    private long _lastFlush;

    public ReplicationService(ReplicationConfig config, byte[] key, ConntrackEngine engine, ManualClock clock, object engineLock, ILogger logger)
    {
        _config = config;
        _engine = engine;
        _clock = clock;
        _engineLock = engineLock;
        _logger = logger;
        Tracker = new ChangeTracker(engine, null);
        _applier = new ReplicationApplier(engine);
        long epoch = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
        _link = new ReplicationLink(key, ReplicationWire.SenderId(config.Listen), ReplicationWire.SenderId(config.Peer), epoch, Send, () => SystemClock.Instance.NowNanoseconds)
        {
            Apply = Apply,
            ResyncRequested = OnResyncRequested,
            PeerRestarted = () =>
            {
                lock (_engineLock)
                {
                    _applier.ForgetPeer();
                }
            },
        };
        _socket = new Socket(config.Listen.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        _socket.Bind(config.Listen);

        // Connected: the kernel drops what comes from anywhere but the peer's address and port.
        _socket.Connect(config.Peer);
        _socket.ReceiveBufferSize = 4 << 20;
        _socket.SendBufferSize = 4 << 20;
        if (config.NotifyFifo is { } fifo)
        {
            _fifo = new KeepalivedFifo(fifo, config.Vrrp, (active, line) => SetRole(active, $"keepalived: {line}"), logger);
        }

        _thread = new Thread(Run) { IsBackground = true, Name = "replication" };
    }

    /// <summary>
    /// The service for a configuration's <c>replication:</c> section, or null without one. Refuses (with a
    /// <see cref="ConfigException"/>) a key that is missing, short or readable by others, and a sync address it cannot bind.
    /// </summary>
    public static ReplicationService? Create(ReplicationConfig? config, ConntrackEngine engine, ManualClock clock, object engineLock, ILogger logger)
    {
        if (config is null)
        {
            return null;
        }

        byte[] key = ReplicationKey.Read(config.KeyFile);
        try
        {
            return new ReplicationService(config, key, engine, clock, engineLock, logger);
        }
        catch (SocketException e)
        {
            throw new ConfigException(null, config.Line, 1, $"replication: cannot listen on {config.Listen}: {e.Message}");
        }
    }

    /// <summary>The engine's observer: the change tracker in front of the daemon's own, or the daemon's alone.</summary>
    public static IConntrackObserver Observe(ReplicationService? replication, IConntrackObserver observer)
    {
        if (replication is null)
        {
            return observer;
        }

        replication.Tracker.Inner = observer;
        return replication.Tracker;
    }

    /// <summary>The engine observer that notes changes (pass the daemon's other observer as its inner one).</summary>
    public ChangeTracker Tracker { get; }

    /// <summary>
    /// Called (under the engine lock, on the replication thread) when this router becomes active: what it keeps in
    /// step with its table by events (ipset entries in helpers mode) must now cover the connections it was given.
    /// </summary>
    public Action? BecameActive { get; set; }

    public void Start()
    {
        _thread.Start();
        _fifo?.Start();
        Log.ReplicationStarted(_logger, _config.Listen.ToString(), _config.Peer.ToString(), _config.NotifyFifo ?? "none (offloadctl replication role)");
    }

    /// <summary>Sets the role: active (sends its changes) or standby (applies the peer's).</summary>
    public void SetRole(bool active, string source)
    {
        if (active != _wantActive)
        {
            _roleSince = DateTime.UtcNow;
            Log.ReplicationRole(_logger, active ? "active" : "standby", source);
        }

        _roleSource = source;
        _wantActive = active;
    }

    /// <summary>Answers <c>offloadctl replication ...</c>.</summary>
    public string Answer(string request)
    {
        switch (request)
        {
            case "replication status":
                return Status();
            case "replication role master":
                SetRole(true, "offloadctl");
                return "role: active (master)\n";
            case "replication role backup":
                SetRole(false, "offloadctl");
                return "role: standby (backup)\n";
            default:
                throw new ArgumentException($"unknown request '{request}' (replication status, replication role master|backup)");
        }
    }

    private void Run()
    {
        var buffer = new byte[65536];
        while (!_stopping)
        {
            try
            {
                if (_socket.Poll(10_000, SelectMode.SelectRead))
                {
                    while (_socket.Available > 0)
                    {
                        int n = _socket.Receive(buffer);
                        _link.Receive(buffer, n);
                    }
                }
            }
            catch (SocketException)
            {
                // ECONNREFUSED from an ICMP error while the peer is down: it comes back with a HELLO.
                _sendErrors++;
            }

            ApplyRole();
            _link.Tick();
            long now = SystemClock.Instance.NowNanoseconds;
            if (now - _lastFlush >= _config.IntervalMilliseconds * 1_000_000L)
            {
                _lastFlush = now;
                Flush();
            }
        }
    }

    private void ApplyRole()
    {
        bool want = _wantActive;
        if (want == _link.Active)
        {
            return;
        }

        _link.Active = want;
        lock (_engineLock)
        {
            Tracker.Recording = want; // on becoming active: everything goes to the peer (a resync)
            if (want)
            {
                BecameActive?.Invoke();
            }
        }

        if (want)
        {
            _resyncsRequested++;
            _lastResync = DateTime.UtcNow;
        }
    }

    /// <summary>Copies what changed under the engine lock; cuts and sends it outside.</summary>
    private void Flush()
    {
        if (!_link.Active || !_link.CanSend)
        {
            return;
        }

        lock (_engineLock)
        {
            // An idle daemon's clock stands still between bursts: remaining times are taken against now.
            _clock.NowNanoseconds = Math.Max(_clock.NowNanoseconds, SystemClock.Instance.NowNanoseconds);
            Tracker.Collect(_batch, (long)_link.Room * ReplicationWire.MaxBody / 2);
        }

        _recordsSent += _batch.Records;
        foreach (var piece in _batch.Pieces(ReplicationWire.MaxBody, _ => _recordsTooLarge++))
        {
            if (_link.Room == 0)
            {
                OnResyncRequested(); // what did not fit goes with the resync
                break;
            }

            _link.SendData(piece.Span);
        }

        _batch.Clear();
    }

    private void Apply(byte[] buffer, int offset, int count)
    {
        lock (_engineLock)
        {
            _clock.NowNanoseconds = Math.Max(_clock.NowNanoseconds, SystemClock.Instance.NowNanoseconds);
            try
            {
                _appliedRecords += _applier.Apply(buffer, offset, count);
            }
            catch (Exception e) when (e is not Engine.Snapshot.SnapshotException and (InvalidOperationException or ArgumentException or IndexOutOfRangeException))
            {
                // A record our reader let through and the table refused: counted as malformed like the rest, and logged
                // once per occurrence, for it is a bug on one side or the other; the thread and the daemon go on.
                Log.ReplicationApplyFailed(_logger, e.Message, e);
                throw new Engine.Snapshot.SnapshotException(Engine.Snapshot.SnapshotRefusal.Corrupt, e.Message, e);
            }
        }
    }

    private void OnResyncRequested()
    {
        _resyncsRequested++;
        _lastResync = DateTime.UtcNow;
        lock (_engineLock)
        {
            Tracker.RequestResync();
        }
    }

    private void Send(byte[] datagram, int length)
    {
        try
        {
            _socket.Send(datagram, 0, length, SocketFlags.None);
            _bytesSent += length;
        }
        catch (SocketException)
        {
            _sendErrors++; // the peer is down (ICMP unreachable), or the buffer is full: resends and resyncs cover it
        }
    }

    private string Status()
    {
        var l = _link;
        var s = new StringBuilder();
        string peerRole = l.PeerActive switch { true => "active", false => "standby", null => "unknown" };
        s.Append(CultureInfo.InvariantCulture, $"role: {(_wantActive ? "active" : "standby")} since {_roleSince:yyyy-MM-ddTHH:mm:ssZ} ({_roleSource})\n");
        s.Append(CultureInfo.InvariantCulture, $"peer: {_config.Peer} {(l.PeerUp ? "up" : "down")}, role {peerRole}, epoch {l.PeerEpoch}; listen {_config.Listen}, epoch {l.Epoch}\n");
        s.Append(CultureInfo.InvariantCulture, $"sequence: next {l.NextSeq}, unacknowledged {l.Unacknowledged}, expected from peer {l.ExpectedSeq}\n");
        s.Append(CultureInfo.InvariantCulture, $"sent: datagrams {l.DataSent}, records {_recordsSent}, bytes {_bytesSent}, acked {l.Acked}, resent {l.Resent}, records too large {_recordsTooLarge}, send errors {_sendErrors}\n");
        s.Append(CultureInfo.InvariantCulture, $"received: datagrams {l.DataReceived}, records applied {_appliedRecords}, ignored while active {l.IgnoredAsActive}, hellos {l.HellosReceived}, lost (beyond the resend queue) {l.Lost}\n");
        s.Append(CultureInfo.InvariantCulture, $"applied: connections {_applier.Connections}, gone {_applier.ConnectionsGone}, expectations {_applier.Expectations}, gone {_applier.ExpectationsGone}, replaced {_applier.Replaced}, table full {_applier.TableFull}\n");
        s.Append(CultureInfo.InvariantCulture, $"refused: {l.RefusedTotal}");
        foreach (var reason in Enum.GetValues<Refusal>().Where(r => r != Refusal.None))
        {
            s.Append(CultureInfo.InvariantCulture, $", {Name(reason)} {l.Refused(reason)}");
        }

        s.Append('\n');
        string last = _lastResync is { } t ? t.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture) : "never";
        s.Append(CultureInfo.InvariantCulture, $"resync: requested {_resyncsRequested}, completed {Tracker.ResyncsCompleted}, in progress {(Tracker.Resyncing ? "yes" : "no")}, last {last}, change overflows {Tracker.Overflows}\n");
        return s.ToString();
    }

    private static string Name(Refusal reason) => reason switch
    {
        Refusal.BadKey => "bad key",
        Refusal.WrongSender => "wrong sender",
        Refusal.OutOfOrder => "out of order",
        Refusal.OutOfWindow => "out of window",
        Refusal.RateLimited => "rate-limited",
        _ => reason.ToString().ToLowerInvariant(),
    };

    public void Dispose()
    {
        _stopping = true;
        _fifo?.Stop();
        if (_thread.IsAlive)
        {
            _thread.Join(TimeSpan.FromSeconds(2));
        }

        _socket.Dispose();
        _batch.Dispose();
    }
}
