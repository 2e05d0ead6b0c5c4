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

    /// <summary>Bursts whose lookups were staged first, the table being large (<c>ConntrackEngine.StagesLookups</c>).</summary>
    public long StagedBatches;

    public long Packets;
    public long Accepted;
    public long AcceptedChanged;
    public long Dropped;
    public long Truncated;
    public long EngineErrors;

    /// <summary>Packets this queue received that another shard owned, run there.</summary>
    public long HandedOver;
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
    private readonly EngineShard _shard;
    private readonly IReadOnlyList<EngineShard> _shards;
    private readonly ILogger _logger;
    private readonly StateMarker _marker;
    private readonly byte[] _buffer = GC.AllocateUninitializedArray<byte>(PacketBufferSize, pinned: true);
    private readonly QueuedPacket[] _packets = new QueuedPacket[Burst];

    // The packets of a burst that another shard owns, and which: run there after the burst, out of this shard's lock.
    private readonly int[] _handovers = new int[Burst];
    private readonly int[] _owners = new int[Burst];
    private int _handoverCount;

    // The buckets of a burst's staged lookups.
    private readonly int[] _lookupBuckets = new int[Burst];
    private readonly Thread _thread;
    private volatile bool _stopping;
    private long _lastGc;
    private IpsetSteering? _steering;

    // The clock is the shard's, which this worker sets from the system clock once per burst.
    public QueueWorker(string role, NfQueue queue, EngineShard shard, IReadOnlyList<EngineShard> shards, StateMarker marker, ILogger logger)
    {
        _marker = marker;
        Role = role;
        _queue = queue;
        _shard = shard;
        _shards = shards;
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

    /// <summary>The engine shard this queue feeds.</summary>
    public int Shard => _shard.Index;

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
                _handoverCount = 0;
                lock (_shard.Lock)
                {
                    _shard.Tick();
                    if (_shard.Engine.StagesLookups)
                    {
                        StageLookups(n);
                    }

                    for (int i = 0; i < n; i++)
                    {
                        HandleSafely(_packets[i], _shard, i);
                    }
                }

                for (int i = 0; i < _handoverCount; i++)
                {
                    HandOver(_packets[_handovers[i]], _owners[i]);
                }
            }

            CollectGarbageWhenDue();

            // What the burst and the collection changed in the sets, in one batch (before the verdicts, which leave
            // with the next receive).
            Handback?.Flush();
            _steering?.Flush();
        }
    }

    /// <summary>
    /// Runs a packet another shard owns through that shard, under its lock (taken alone: never while holding this
    /// shard's, so two workers handing packets to each other cannot deadlock). Owner -1: an ICMP error about a flow
    /// no shard published; the shard that tracks the flow it quotes takes it, or this one, which drops and counts it.
    /// </summary>
    private void HandOver(in QueuedPacket packet, int owner)
    {
        Statistics.HandedOver++;
        if (owner < 0)
        {
            owner = _shard.Index;
            foreach (var other in _shards)
            {
                if (other != _shard && Tracks(other, packet.Payload))
                {
                    owner = other.Index;
                    break;
                }
            }
        }

        var shard = _shards[owner];
        lock (shard.Lock)
        {
            shard.Tick();
            shard.HandedIn++;
            HandleSafely(packet, shard, -1);
        }
    }

    private static bool Tracks(EngineShard shard, ReadOnlySpan<byte> packet)
    {
        lock (shard.Lock)
        {
            return shard.Engine.TracksFlowOf(packet);
        }
    }

    /// <summary>A fault in the engine must cost one packet, never the worker: the queue would stall behind it.</summary>
    /// <param name="packet">The packet.</param>
    /// <param name="shard">The shard that runs it (this worker's, or the owner it was handed to).</param>
    /// <param name="index">Its place in the burst, to hand it over later; -1 when it was handed over already.</param>
    private void HandleSafely(in QueuedPacket packet, EngineShard shard, int index)
    {
        try
        {
            Handle(packet, shard, index);
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

    /// <summary>A large table's lookups for the whole burst in stages, so that their cache misses overlap (see <see cref="ConntrackEngine.PrepareLookups"/>).</summary>
    private void StageLookups(int n)
    {
        Statistics.StagedBatches++;
        var buckets = _lookupBuckets.AsSpan(0, n);
        for (int i = 0; i < n; i++)
        {
            buckets[i] = _packets[i].IsTruncated ? -1 : _shard.Engine.LookupBucketOf(_packets[i].Payload);
        }

        _shard.Engine.PrepareLookups(buckets);
    }

    private void Handle(in QueuedPacket packet, EngineShard shard, int index)
    {
        if (index >= 0)
        {
            Statistics.Packets++;
        }

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
            HandedOver = index < 0,
            ChecksumVerified = packet.ChecksumVerified,
        };

        var verdict = shard.Engine.Process(ref ctx);
        if (verdict == Verdict.Handover && index >= 0)
        {
            // Nothing changed, nothing counted: it runs in its owner after the burst.
            _handovers[_handoverCount] = index;
            _owners[_handoverCount++] = ctx.OwnerShard;
            return;
        }

        if (verdict != Verdict.Accept)
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
        lock (_shard.Lock)
        {
            _shard.Tick();
            _shard.Engine.CollectGarbage(GcBudget);
        }
    }

    public void Stop()
    {
        const int patience = 5;
        _stopping = true;
        if (_thread.IsAlive && !_thread.Join(TimeSpan.FromSeconds(patience)))
        {
            Log.WorkerSlowToStop(_logger, _queue.QueueNumber, patience);
        }
    }

    public void Dispose()
    {
        Stop();
        _queue.Dispose();
    }
}
