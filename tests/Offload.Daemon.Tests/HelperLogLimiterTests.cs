using Offload.Plugins;
using Xunit;

namespace Offload.Daemon.Tests;

/// <summary>A helper that logs every packet cannot flood the daemon's log; the lines left out are counted, per helper.</summary>
public class HelperLogLimiterTests
{
    private sealed class Quiet(string name) : ConntrackHelper(name, new ExpectationPolicy(1, TimeSpan.FromMinutes(1)))
    {
        public override HelperVerdict Help(ref HelperContext context) => HelperVerdict.Accept;
    }

    [Fact]
    public void A_burst_passes_then_one_line_per_interval_with_the_count_of_those_left_out()
    {
        long clock = 1_000;
        var limiter = new HelperLogLimiter(() => clock);
        var noisy = new Quiet("noisy");
        var other = new Quiet("other");

        for (int i = 0; i < HelperLogLimiter.Burst; i++)
        {
            Assert.True(limiter.TryLog(noisy, out long none));
            Assert.Equal(0, none);
        }

        for (int i = 0; i < 500; i++)
        {
            Assert.False(limiter.TryLog(noisy, out _));
        }

        // Another helper has its own budget.
        Assert.True(limiter.TryLog(other, out _));

        clock += (long)HelperLogLimiter.Interval.TotalMilliseconds;
        Assert.True(limiter.TryLog(noisy, out long suppressed));
        Assert.Equal(500, suppressed);
        Assert.False(limiter.TryLog(noisy, out _));

        // A quiet spell refills the burst, and no more than the burst.
        clock += 3_600_000;
        int passed = 0;
        while (limiter.TryLog(noisy, out _))
        {
            passed++;
        }

        Assert.Equal(HelperLogLimiter.Burst, passed);
    }
}
