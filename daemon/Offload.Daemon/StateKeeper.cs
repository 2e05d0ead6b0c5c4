using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Offload.Engine;
using Offload.Engine.Snapshot;

namespace Offload.Daemon;

/// <summary>
/// Carries the engine's state across a restart of the daemon: loads the snapshot before the queues are bound, writes
/// one at every checkpoint and a last one when the daemon stops (after the queues stopped reading), and tells
/// <c>offloadctl stats</c> what was restored and what the checkpoints cost.
/// </summary>
/// <remarks>
/// The file lives in <c>/run/offload</c> (tmpfs, kept across a restart by the unit's
/// <c>RuntimeDirectoryPreserve=restart</c>): a restart or an upgrade finds it, a reboot does not (the flows it
/// describes are gone then anyway), and checkpoints never wear a flash disk. The copy is taken under the engine lock
/// (the packets wait for it: see docs/benchmarks.md for what it costs per connection); hashing and writing are not.
/// </remarks>
internal sealed class StateKeeper : IDisposable
{
    private readonly string _path;
    private readonly TimeSpan _period;
    private readonly ConntrackEngine _engine;
    private readonly ManualClock _clock;
    private readonly object _engineLock;
    private readonly ILogger _logger;
    private readonly object _writeLock = new();
    private Timer? _timer;
    private string _restored = "nothing (no snapshot)";
    private long _checkpoints;
    private long _failures;
    private string _last = "none yet";

    public StateKeeper(string path, TimeSpan period, ConntrackEngine engine, ManualClock clock, object engineLock, ILogger logger)
    {
        _path = path;
        _period = period;
        _engine = engine;
        _clock = clock;
        _engineLock = engineLock;
        _logger = logger;
    }

    /// <summary>Snapshots refused since the daemon started (0 or 1: one is read per start).</summary>
    public int Refused { get; private set; }

    /// <summary>Loads the snapshot, if there is one, into the engine (which tracks nothing yet). Never throws for a bad file.</summary>
    public SnapshotLoadResult? Restore()
    {
        if (!File.Exists(_path))
        {
            Log.SnapshotAbsent(_logger, _path);
            return null;
        }

        try
        {
            SnapshotLoadResult result;
            lock (_engineLock)
            {
                result = EngineSnapshot.LoadFile(_engine, _path, UnixNow());
            }

            _restored = string.Create(CultureInfo.InvariantCulture, $"{result.Connections} connections, {result.Expectations} expectations from {(result.FromCheckpoint ? "a checkpoint (TCP windows tracked liberally)" : "a clean stop")}; helper states restored {result.HelperStatesRestored}, reset {result.HelperStatesReset}, helper gone {result.HelpersMissing}; expired while down {result.ExpiredWhileDown}; down {result.Downtime.TotalSeconds:0.###} s; {result.Bytes} bytes read in {result.Duration.TotalMilliseconds:0.#} ms");
            Log.SnapshotRestored(_logger, _path, _restored);
            return result;
        }
        catch (Exception e) when (e is SnapshotException or IOException or UnauthorizedAccessException)
        {
            Refused++;
            string reason = e is SnapshotException s ? s.Reason.ToString().ToLowerInvariant() : "unreadable";
            _restored = $"nothing: the snapshot was refused ({reason}: {e.Message}); started with an empty table";
            try
            {
                File.Move(_path, _path + ".refused", overwrite: true); // kept for whoever looks into it; never read again
            }
            catch (Exception moveError) when (moveError is IOException or UnauthorizedAccessException)
            {
                // The next checkpoint replaces it anyway.
            }

            Log.SnapshotRefused(_logger, _path, reason, e.Message);
            return null;
        }
    }

    /// <summary>Starts the periodic checkpoints (none when the period is zero).</summary>
    public void StartCheckpoints()
    {
        if (_period > TimeSpan.Zero)
        {
            _timer = new Timer(_ => Save("checkpoint"), null, _period, _period);
        }
    }

    /// <summary>Writes a snapshot now. Returns false (logged, counted) when it could not be written.</summary>
    public bool Save(string why)
    {
        lock (_writeLock) // a checkpoint still running when the daemon stops: one writer at a time
        {
            var started = Stopwatch.GetTimestamp();
            SnapshotImage image;
            lock (_engineLock)
            {
                // An idle daemon's clock stands still between bursts: remaining times are taken against now.
                _clock.NowNanoseconds = Math.Max(_clock.NowNanoseconds, SystemClock.Instance.NowNanoseconds);
                image = EngineSnapshot.Capture(_engine, UnixNow(), final: why == "stop");
            }

            using (image)
            {
                try
                {
                    image.WriteFile(_path);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    _failures++;
                    Log.SnapshotWriteFailed(_logger, _path, e.Message);
                    return false;
                }

                _checkpoints++;
                var total = Stopwatch.GetElapsedTime(started);
                _last = string.Create(CultureInfo.InvariantCulture, $"{why}: {image.Connections} connections, {image.Expectations} expectations, {image.HelperStates} helper states, {image.Length} bytes; engine held {image.CaptureTime.TotalMilliseconds:0.##} ms, written in {total.TotalMilliseconds:0.##} ms");
                if (why != "checkpoint")
                {
                    Log.SnapshotSaved(_logger, _path, _last);
                }
            }

            return true;
        }
    }

    /// <summary>The lines <c>offloadctl stats</c> shows.</summary>
    public string Statistics() =>
        $"state: restored at start: {_restored}\n" +
        string.Create(CultureInfo.InvariantCulture, $"  snapshots refused {Refused}, written {_checkpoints}, write failures {_failures}, every {_period.TotalSeconds:0.#} s to {_path}\n") +
        $"  last: {_last}\n";

    private static long UnixNow() => (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;

    public void Dispose()
    {
        using var done = new ManualResetEvent(false);
        if (_timer is { } timer && timer.Dispose(done))
        {
            done.WaitOne(TimeSpan.FromSeconds(10));
        }

        _timer = null;
    }
}
