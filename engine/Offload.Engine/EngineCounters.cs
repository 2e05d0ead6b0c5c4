namespace Offload.Engine;

/// <summary>
/// One engine's counters, indexed by <see cref="EngineCounter"/>. Each part of the engine counts here what it drops
/// or does, so that every drop has a reason and the engine's parts share one set of numbers and no other state.
/// </summary>
/// <remarks>Not thread-safe, like the engine that owns it; readers elsewhere see a value at most one burst old.</remarks>
internal sealed class EngineCounters
{
    private readonly long[] _values = new long[Enum.GetValues<EngineCounter>().Length];

    public ReadOnlySpan<long> Values => _values;

    public long this[EngineCounter counter] => _values[(int)counter];

    public void Count(EngineCounter counter) => _values[(int)counter]++;

    public void Add(EngineCounter counter, long amount) => _values[(int)counter] += amount;

    /// <summary>Counts a dropped packet under its reason and in the total.</summary>
    public Verdict Drop(EngineCounter reason)
    {
        _values[(int)reason]++;
        _values[(int)EngineCounter.PacketsDropped]++;
        return Verdict.Drop;
    }
}
