namespace Offload.Daemon.Replication;

/// <summary>
/// A token bucket on the datagrams received from the sync link: a peer (or whoever reaches the port) sending faster
/// than a full resync ever needs is cut to that rate, and what is beyond it is counted, before any MAC is computed.
/// </summary>
internal sealed class FloodLimiter
{
    /// <summary>Datagrams per second: a resync of a million connections (about 20,000 datagrams) in under a second.</summary>
    public const double DefaultRate = 50_000;

    public const double DefaultBurst = 10_000;

    private readonly double _perSecond;
    private readonly double _burst;
    private double _tokens;
    private long _last = long.MinValue;

    public FloodLimiter(double perSecond, double burst)
    {
        _perSecond = perSecond;
        _burst = burst;
        _tokens = burst;
    }

    public bool TryTake(long nowNanoseconds)
    {
        if (_last != long.MinValue)
        {
            _tokens = Math.Min(_burst, _tokens + ((nowNanoseconds - _last) * _perSecond / 1e9));
        }

        _last = nowNanoseconds;
        if (_tokens < 1)
        {
            return false;
        }

        _tokens--;
        return true;
    }
}
