using Microsoft.Extensions.Logging;
using Offload.Engine;
using Offload.Interop;
using Offload.Interop.Nfqueue;
using Offload.Rules;

namespace Offload.Daemon;

/// <summary>What one queue's worker has done, for <c>offloadctl stats</c>.</summary>
internal sealed class QueueStatistics
{
    public long Batches;
    public long Packets;
    public long Accepted;
    public long AcceptedChanged;
    public long Dropped;
    public long Truncated;
    public long EngineErrors;
}

/// <summary>
/// One NFQUEUE and the thread that serves it: receive a burst, run each packet through the engine, answer each
/// with a verdict (the unchanged ones merged into batch verdicts, all sent with one sendmsg before the next wait).
/// </summary>
internal sealed class QueueWorker : IDisposable
{
    /// <summary>Room for a packet to grow when a helper lengthens it.</summary>
    private const int PacketBufferSize = 65536 + 256;

    private const int Burst = 64;

    /// <summary>How often expired connections are collected, and how many table slots each pass looks at.</summary>
    private static readonly long GcIntervalTicks = TimeSpan.FromMilliseconds(100).Ticks;
    private const int GcBudget = 8192;

    private readonly NfQueue _queue;
    private readonly ConntrackEngine _engine;
    private readonly ManualClock _clock;
    private readonly object _engineLock;
    private readonly ILogger _logger;
    private readonly StateMarker _marker;
    private readonly byte[] _buffer = GC.AllocateUninitializedArray<byte>(PacketBufferSize, pinned: true);
    private readonly QueuedPacket[] _packets = new QueuedPacket[Burst];
    private readonly Thread _thread;
    private volatile bool _stopping;
    private long _lastGc;
    private IpsetSteering? _steering;

    // The clock is the engine's, which this worker sets from the system clock once per burst.
    public QueueWorker(string role, NfQueue queue, ConntrackEngine engine, ManualClock clock, object engineLock, StateMarker marker, ILogger logger)
    {
        _marker = marker;
        Role = role;
        _queue = queue;
        _engine = engine;
        _clock = clock;
        _engineLock = engineLock;
        _logger = logger;
        _thread = new Thread(Run) { IsBackground = true, Name = $"queue-{queue.QueueNumber}" };
    }

    /// <summary>
    /// The ipset steering the engine's events feed (helpers mode), or null. Its updates of a burst go out as one batch
    /// after the burst, outside the engine's lock, and always before the burst's verdicts.
    /// </summary>
    public IpsetSteering? Steering
    {
        get => _steering;
        set
        {
            _steering = value;
            _queue.BeforeVerdictsSent = value is null ? null : value.Flush;
        }
    }

    /// <summary>Hand-back to the kernel (helpers mode), or null: told of each accepted packet, flushed after each burst.</summary>
    public Handback.HandbackManager? Handback { get; set; }

    /// <summary>"pre" (before routing) or "post" (after routing).</summary>
    public string Role { get; }

    public ushort QueueNumber => _queue.QueueNumber;

    public QueueStatistics Statistics { get; } = new();

    public NfQueueCounters Counters => _queue.Counters;

    public void Start() => _thread.Start();

    private void Run()
    {
        long reportedOverflows = 0;
        while (!_stopping)
        {
            int n;
            try
            {
                n = _queue.ReceiveBatch(_packets);
            }
            catch (NetlinkException e)
            {
                Log.QueueError(_logger, _queue.QueueNumber, e.Message);
                Thread.Sleep(100);
                continue;
            }

            if (_queue.Counters.NoBufferEvents != reportedOverflows)
            {
                reportedOverflows = _queue.Counters.NoBufferEvents;
                Log.QueueOverflow(_logger, _queue.QueueNumber, reportedOverflows);
            }

            if (n > 0)
            {
                Statistics.Batches++;
                lock (_engineLock)
                {
                    Tick();
                    for (int i = 0; i < n; i++)
                    {
                        HandleSafely(_packets[i]);
                    }
                }
            }

            CollectGarbageWhenDue();

            // What the burst and the collection changed in the sets, in one batch (before the verdicts, which leave
            // with the next receive).
            Handback?.Flush();
            _steering?.Flush();
        }
    }

    /// <summary>A fault in the engine must cost one packet, never the worker: the queue would stall behind it.</summary>
    private void HandleSafely(in QueuedPacket packet)
    {
        try
        {
            Handle(packet);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            if (Statistics.EngineErrors++ < 10)
            {
                Log.EngineFault(_logger, _queue.QueueNumber, e);
            }

            Statistics.Dropped++;
            _queue.SetVerdict(packet.PacketId, NfVerdict.Drop);
        }
    }

    private void Handle(in QueuedPacket packet)
    {
        Statistics.Packets++;
        if (packet.IsTruncated)
        {
            // We cannot translate what we did not see whole, and must not let it leave untranslated.
            Statistics.Truncated++;
            Statistics.Dropped++;
            _queue.SetVerdict(packet.PacketId, NfVerdict.Drop);
            return;
        }

        var original = packet.Payload;
        original.CopyTo(_buffer);
        var ctx = new PacketContext(_buffer, original.Length, (int)packet.InputInterface)
        {
            OutInterface = (int)packet.OutputInterface,
            ChecksumPartial = (packet.SkbInfo & NfqSkbInfo.ChecksumNotReady) != 0,
            Gso = (packet.SkbInfo & NfqSkbInfo.Gso) != 0,
        };

        if (_engine.Process(ref ctx) != Verdict.Accept)
        {
            Statistics.Dropped++;
            _queue.SetVerdict(packet.PacketId, NfVerdict.Drop);
            return;
        }

        Handback?.Saw(ref ctx);

        // Every accepted packet carries our view of it in its mark: the firewall after the queue matches on it, and
        // the steering rules after routing know not to queue it a second time.
        uint mark = _marker.For(ref ctx, packet.Mark);
        if (!ctx.Changed)
        {
            // As it came: a plain verdict, which the queue may merge with its neighbours'.
            Statistics.Accepted++;
            _queue.SetVerdict(packet.PacketId, NfVerdict.Accept, mark);
        }
        else
        {
            Statistics.AcceptedChanged++;
            _queue.SetVerdict(packet.PacketId, NfVerdict.Accept, ctx.Packet, mark);
        }
    }

    private void CollectGarbageWhenDue()
    {
        long now = DateTime.UtcNow.Ticks;
        if (now - _lastGc < GcIntervalTicks)
        {
            return;
        }

        _lastGc = now;
        lock (_engineLock)
        {
            Tick();
            _engine.CollectGarbage(GcBudget);
        }
    }

    /// <summary>Moves the shared clock on (never back: the other worker may have set it a moment later).</summary>
    private void Tick() => _clock.NowNanoseconds = Math.Max(_clock.NowNanoseconds, SystemClock.Instance.NowNanoseconds);

    public void Stop()
    {
        _stopping = true;
        if (_thread.IsAlive)
        {
            _thread.Join(TimeSpan.FromSeconds(5));
        }
    }

    public void Dispose()
    {
        Stop();
        _queue.Dispose();
    }
}
