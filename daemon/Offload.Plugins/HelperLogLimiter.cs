using System.Runtime.CompilerServices;

namespace Offload.Plugins;

/// <summary>
/// Keeps a helper's log lines from flooding the daemon's log (a plugin that logs every packet): each helper may write
/// a burst of <see cref="Burst"/> lines, then one line per <see cref="Interval"/>; the lines held back are counted and
/// the count is reported with the next line let through.
/// </summary>
/// <param name="now">The clock, in milliseconds (tests pass their own).</param>
public sealed class HelperLogLimiter(Func<long> now)
{
    /// <summary>Lines a helper may write at once.</summary>
    public const int Burst = 20;

    /// <summary>How often a helper that used up its burst earns one more line.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    // Weak keys: an unloaded plugin's helper must not be kept alive (nor its load context) by its log budget.
    private readonly ConditionalWeakTable<ConntrackHelper, Budget> _budgets = [];

    /// <summary>A limiter on the system's monotonic clock.</summary>
    public HelperLogLimiter()
        : this(() => Environment.TickCount64)
    {
    }

    /// <summary>Whether the helper's line may be written now.</summary>
    /// <param name="helper">Who writes.</param>
    /// <param name="suppressed">How many of its lines were held back since the last one written (report it with this one).</param>
    public bool TryLog(ConntrackHelper helper, out long suppressed)
    {
        var budget = _budgets.GetValue(helper, _ => new Budget { Tokens = Burst, RefilledAt = now() });
        long time = now();
        long interval = (long)Interval.TotalMilliseconds;
        long earned = (time - budget.RefilledAt) / interval;
        if (earned > 0)
        {
            budget.Tokens = (int)Math.Min(Burst, budget.Tokens + earned);
            budget.RefilledAt += earned * interval;
        }

        if (budget.Tokens == 0)
        {
            budget.Suppressed++;
            suppressed = 0;
            return false;
        }

        budget.Tokens--;
        suppressed = budget.Suppressed;
        budget.Suppressed = 0;
        return true;
    }

    private sealed class Budget
    {
        public int Tokens;
        public long RefilledAt;
        public long Suppressed;
    }
}
