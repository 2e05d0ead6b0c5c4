using Offload.Engine;

namespace Offload.Daemon;

/// <summary>
/// One engine shard: its engine, the lock its queue workers (before and after routing) take around a burst, and its
/// clock, which they set once per burst. Another shard's worker takes the lock only for a packet handed over to this
/// shard (see <see cref="Verdict.Handover"/>), or to look at its table for <c>offloadctl</c>.
/// </summary>
internal sealed class EngineShard(int index, ConntrackEngine engine, ManualClock clock)
{
    public int Index { get; } = index;

    public ConntrackEngine Engine { get; } = engine;

    public ManualClock Clock { get; } = clock;

    public object Lock { get; } = new();

    /// <summary>Packets another shard's queue received and handed to this shard.</summary>
    public long HandedIn;

    /// <summary>Moves the clock on (never back: the other worker of the shard may have set it a moment later).</summary>
    public void Tick() => Clock.NowNanoseconds = Math.Max(Clock.NowNanoseconds, SystemClock.Instance.NowNanoseconds);
}
