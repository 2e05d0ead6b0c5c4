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
    private readonly IReadOnlyList<EngineShard> _shards;
    private readonly ILogger _logger;
    private readonly object _writeLock = new();
    private Timer? _timer;
    private string _restored = "nothing (no snapshot)";
    private long _checkpoints;
    private long _failures;
    private string _last = "none yet";

    public StateKeeper(string path, TimeSpan period, IReadOnlyList<EngineShard> shards, ILogger logger)
    {
        _path = path;
        _period = period;
        _shards = shards;
        _logger = logger;
    }

    /// <summary>The file of one shard's snapshot: the path itself for the first (as with one shard), path.N for the others.</summary>
    public string PathOf(int shard) => shard == 0 ? _path : string.Create(CultureInfo.InvariantCulture, $"{_path}.{shard}");

    /// <summary>Snapshots refused since the daemon started (0 or 1: one is read per start).</summary>
    public int Refused { get; private set; }

    /// <summary>
    /// Loads the snapshot, if there is one, into the engine (which tracks nothing yet): with several shards, each
    /// shard's own file into it. Never throws for a bad file. Returns the first shard's result.
    /// </summary>
    public SnapshotLoadResult? Restore()
    {
        SnapshotLoadResult? first = null;
        var told = new List<string>();
        foreach (var shard in _shards)
        {
            var result = RestoreShard(shard, out string text);
            if (shard.Index == 0)
            {
                first = result;
            }

            told.Add(_shards.Count == 1 ? text : string.Create(CultureInfo.InvariantCulture, $"shard {shard.Index}: {text}"));
            if (result is not null && _shards.Count > 1)
            {
                // Where each connection's packets arrive next is the kernel's choice: let every shard find them.
                lock (shard.Lock)
                {
                    shard.Engine.PublishAll();
                }
            }
        }

        // Snapshots of shards this run does not have (the shards were fewer before): refused, kept for whoever looks.
        for (int k = _shards.Count; File.Exists(PathOf(k)); k++)
        {
            Refused++;
            MoveAside(PathOf(k));
            Log.SnapshotRefused(_logger, PathOf(k), "shards", string.Create(CultureInfo.InvariantCulture, $"offloadd runs {_shards.Count} shards now: the connections of shard {k} are not restored"));
        }

        _restored = string.Join("; ", told);
        return first;
    }

    private SnapshotLoadResult? RestoreShard(EngineShard shard, out string text)
    {
        string path = PathOf(shard.Index);
        if (!File.Exists(path))
        {
            Log.SnapshotAbsent(_logger, path);
            text = "nothing (no snapshot)";
            return null;
        }

        try
        {
            SnapshotLoadResult result;
            lock (shard.Lock)
            {
                result = EngineSnapshot.LoadFile(shard.Engine, path, UnixNow());
            }

            text = string.Create(CultureInfo.InvariantCulture, $"{result.Connections} connections, {result.Expectations} expectations from {(result.FromCheckpoint ? "a checkpoint (TCP windows tracked liberally)" : "a clean stop")}; helper states restored {result.HelperStatesRestored}, reset {result.HelperStatesReset}, helper gone {result.HelpersMissing}; expired while down {result.ExpiredWhileDown}; down {result.Downtime.TotalSeconds:0.###} s; {result.Bytes} bytes read in {result.Duration.TotalMilliseconds:0.#} ms");
            Log.SnapshotRestored(_logger, path, text);
            return result;
        }
        catch (Exception e) when (e is SnapshotException or IOException or UnauthorizedAccessException)
        {
            Refused++;
            string reason = e is SnapshotException s ? s.Reason.ToString().ToLowerInvariant() : "unreadable";
            text = $"nothing: the snapshot was refused ({reason}: {e.Message}); started with an empty table";
            MoveAside(path);
            Log.SnapshotRefused(_logger, path, reason, e.Message);
            return null;
        }
    }

    private static void MoveAside(string path)
    {
        try
        {
            File.Move(path, path + ".refused", overwrite: true); // kept for whoever looks into it; never read again
        }
        catch (Exception moveError) when (moveError is IOException or UnauthorizedAccessException)
        {
            // The next checkpoint replaces it anyway.
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
            var told = new List<string>();
            foreach (var shard in _shards)
            {
                if (!SaveShard(shard, why, out string text))
                {
                    return false;
                }

                told.Add(_shards.Count == 1 ? text : string.Create(CultureInfo.InvariantCulture, $"shard {shard.Index}: {text}"));
            }

            _checkpoints++;
            _last = string.Join("; ", told);
            if (why != "checkpoint")
            {
                Log.SnapshotSaved(_logger, _path, _last);
            }

            return true;
        }
    }

    private bool SaveShard(EngineShard shard, string why, out string text)
    {
        string path = PathOf(shard.Index);
        var started = Stopwatch.GetTimestamp();
        SnapshotImage image;
        lock (shard.Lock)
        {
            // An idle daemon's clock stands still between bursts: remaining times are taken against now.
            shard.Tick();
            image = EngineSnapshot.Capture(shard.Engine, UnixNow(), final: why == "stop");
        }

        using (image)
        {
            try
            {
                image.WriteFile(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _failures++;
                Log.SnapshotWriteFailed(_logger, path, e.Message);
                text = string.Empty;
                return false;
            }

            var total = Stopwatch.GetElapsedTime(started);
            text = string.Create(CultureInfo.InvariantCulture, $"{why}: {image.Connections} connections, {image.Expectations} expectations, {image.HelperStates} helper states, {image.Length} bytes; engine held {image.CaptureTime.TotalMilliseconds:0.##} ms, written in {total.TotalMilliseconds:0.##} ms");
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
