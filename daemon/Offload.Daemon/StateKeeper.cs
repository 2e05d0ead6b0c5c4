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

    /// <summary>Snapshots refused since the daemon started (one a shard at most, and one a file of a shard gone).</summary>
    public int Refused { get; private set; }

    /// <summary>Files of shards this run does not have, removed once the connections dealt from them are saved.</summary>
    private List<string> _stale = [];

    /// <summary>
    /// Loads the snapshot, if there is one, into the engine (which tracks nothing yet). With several shards, or the
    /// snapshots of several where this run has one, every snapshot is read and each connection restored into the shard
    /// that receives its packets now (<see cref="SnapshotResharder"/>): a different number of shards loses none. Never
    /// throws for a bad file. Returns the first shard's result.
    /// </summary>
    public SnapshotLoadResult? Restore()
    {
        var gone = new List<int>();
        for (int k = _shards.Count; File.Exists(PathOf(k)); k++)
        {
            gone.Add(k);
        }

        if (_shards.Count == 1 && gone.Count == 0)
        {
            var result = RestoreShard(_shards[0], out string text);
            _restored = text;
            return result;
        }

        return Reshard(gone);
    }

    /// <summary>
    /// Reads the snapshot of every shard there was, deals the connections out to the shards there are, loads each
    /// shard's share, and when that moved anything saves the new layout at once and then removes the files of shards
    /// gone (a daemon that dies before finds them all again; one that dies during the save finds some connections
    /// twice, and the newer copy wins).
    /// </summary>
    private SnapshotLoadResult? Reshard(List<int> gone)
    {
        var engine = _shards[0].Engine.Options;
        var resharder = new SnapshotResharder(_shards.Count, engine.NatPortMin, engine.NatPortMax);
        var read = new List<int>();
        foreach (int k in Enumerable.Range(0, _shards.Count).Concat(gone))
        {
            string path = PathOf(k);
            if (!File.Exists(path))
            {
                continue;
            }

            try
            {
                using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
                resharder.Add(k, stream);
                read.Add(k);
            }
            catch (Exception e) when (e is SnapshotException or IOException or UnauthorizedAccessException)
            {
                Refuse(path, e);
            }
        }

        if (read.Count == 0)
        {
            if (Refused == 0)
            {
                Log.SnapshotAbsent(_logger, _path);
            }

            _restored = Refused > 0 ? "nothing: every snapshot was refused; started with an empty table" : "nothing (no snapshot)";
            return null;
        }

        var images = resharder.Deal();
        SnapshotLoadResult? first = null;
        var told = new List<string>();
        foreach (var shard in _shards)
        {
            using var image = images[shard.Index];
            var result = LoadDealt(shard, image, out string text);
            first = shard.Index == 0 ? result : first;
            told.Add(_shards.Count == 1 ? text : string.Create(CultureInfo.InvariantCulture, $"shard {shard.Index}: {text}"));
        }

        string files = string.Join(", ", read.Select(PathOf));
        string summary = string.Create(CultureInfo.InvariantCulture, $"{read.Count} snapshots ({files}) dealt to {_shards.Count} shards by their NAT port slices: {resharder.Moved} connections moved to another shard, {resharder.OutsideSlices} with a NAT port outside every slice kept in the shard that saved them (modulo the shards), {resharder.Duplicates} found twice taken once");
        Log.SnapshotResharded(_logger, summary);
        told.Add("dealt: " + summary);
        _restored = string.Join("; ", told);
        if (resharder.Moved > 0 || resharder.Duplicates > 0 || gone.Count > 0)
        {
            // The new layout on disk before any packet changes it; the files of shards gone only once it is there.
            _stale = [.. gone.Select(PathOf)];
            Save("reshard", resharder.Final);
        }

        return first;
    }

    private SnapshotLoadResult? LoadDealt(EngineShard shard, SnapshotImage image, out string text)
    {
        using var memory = new MemoryStream(checked((int)image.Length));
        image.WriteTo(memory);
        memory.Position = 0;
        try
        {
            SnapshotLoadResult result;
            lock (shard.Lock)
            {
                result = EngineSnapshot.Load(shard.Engine, memory, UnixNow());

                // Where each connection's packets arrive next is the kernel's choice: let every shard find them.
                shard.Engine.PublishAll();
            }

            text = Told(result);
            Log.SnapshotRestored(_logger, PathOf(shard.Index), text);
            return result;
        }
        catch (SnapshotException e)
        {
            Refused++;
            text = $"nothing: its share of the snapshots was refused ({e.Reason.ToString().ToLowerInvariant()}: {e.Message}); started with an empty table";
            Log.SnapshotRefused(_logger, PathOf(shard.Index), e.Reason.ToString().ToLowerInvariant(), "its share of the snapshots: " + e.Message);
            return null;
        }
    }

    private static string Told(SnapshotLoadResult result) =>
        string.Create(CultureInfo.InvariantCulture, $"{result.Connections} connections, {result.Expectations} expectations from {(result.FromCheckpoint ? "a checkpoint (TCP windows tracked liberally)" : "a clean stop")}; helper states restored {result.HelperStatesRestored}, reset {result.HelperStatesReset}, helper gone {result.HelpersMissing}; expired while down {result.ExpiredWhileDown}; down {result.Downtime.TotalSeconds:0.###} s; {result.Bytes} bytes read in {result.Duration.TotalMilliseconds:0.#} ms");

    private void Refuse(string path, Exception e)
    {
        Refused++;
        string reason = e is SnapshotException s ? s.Reason.ToString().ToLowerInvariant() : "unreadable";
        MoveAside(path);
        Log.SnapshotRefused(_logger, path, reason, e.Message);
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

            text = Told(result);
            Log.SnapshotRestored(_logger, path, text);
            return result;
        }
        catch (Exception e) when (e is SnapshotException or IOException or UnauthorizedAccessException)
        {
            string reason = e is SnapshotException s ? s.Reason.ToString().ToLowerInvariant() : "unreadable";
            text = $"nothing: the snapshot was refused ({reason}: {e.Message}); started with an empty table";
            Refuse(path, e);
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

    /// <summary>
    /// Writes a snapshot now: exact (<paramref name="final"/>; by default only on stop) or a checkpoint. Returns false
    /// (logged, counted) when it could not be written.
    /// </summary>
    public bool Save(string why, bool? final = null)
    {
        lock (_writeLock) // a checkpoint still running when the daemon stops: one writer at a time
        {
            var told = new List<string>();
            foreach (var shard in _shards)
            {
                if (!SaveShard(shard, why, final ?? why == "stop", out string text))
                {
                    return false;
                }

                told.Add(_shards.Count == 1 ? text : string.Create(CultureInfo.InvariantCulture, $"shard {shard.Index}: {text}"));
            }

            _checkpoints++;
            _last = string.Join("; ", told);
            RemoveStale();
            if (why != "checkpoint")
            {
                Log.SnapshotSaved(_logger, _path, _last);
            }

            return true;
        }
    }

    /// <summary>Removes the files of shards gone, now that their connections are saved in the files of the shards there are.</summary>
    private void RemoveStale()
    {
        foreach (string path in _stale)
        {
            try
            {
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Read again at the next start, where the newer files' copies of its connections win.
                Log.SnapshotWriteFailed(_logger, path, "not removed: " + e.Message);
            }
        }

        _stale = [];
    }

    private bool SaveShard(EngineShard shard, string why, bool final, out string text)
    {
        string path = PathOf(shard.Index);
        var started = Stopwatch.GetTimestamp();
        SnapshotImage image;
        lock (shard.Lock)
        {
            // An idle daemon's clock stands still between bursts: remaining times are taken against now.
            shard.Tick();
            image = EngineSnapshot.Capture(shard.Engine, UnixNow(), final);
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
