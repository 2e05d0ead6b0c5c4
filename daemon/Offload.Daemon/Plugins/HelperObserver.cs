using Microsoft.Extensions.Logging;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Plugins;

namespace Offload.Daemon.Plugins;

/// <summary>
/// The daemon's engine observer: writes the helpers' failures and log lines to the daemon's log (naming the helper and
/// where it came from; a helper's lines are rate-limited), and passes the flow events on to the steering observer, if any (helpers mode).
/// </summary>
internal sealed class HelperObserver(IConntrackObserver? inner, HelperCatalog catalog, ILogger logger) : IConntrackObserver
{
    private readonly HelperLogLimiter _limiter = new();

    public void ExpectationAdded(Expectation expectation) => inner?.ExpectationAdded(expectation);

    public void ExpectationRemoved(Expectation expectation) => inner?.ExpectationRemoved(expectation);

    public void ExpectationFulfilled(Expectation expectation, Connection connection) => inner?.ExpectationFulfilled(expectation, connection);

    public void ConnectionDestroyed(Connection connection) => inner?.ConnectionDestroyed(connection);

    public void HelperDisabled(ConntrackHelper helper, Exception error)
    {
        // A budget overrun has no useful stack; anything else does, for the helper's author.
        string origin = catalog.OriginOf(helper);
        if (error is HelperBudgetException)
        {
            Log.HelperDisabled(logger, helper.Name, origin, $"{error.GetType().Name}: {error.Message}", null);
        }
        else
        {
            Log.HelperDisabled(logger, helper.Name, origin, $"{error.GetType().Name}: {error.Message}", error);
        }

        inner?.HelperDisabled(helper, error);
    }

    public void HelperLogged(ConntrackHelper helper, HelperLogLevel level, string message)
    {
        var logLevel = level switch
        {
            HelperLogLevel.Debug => LogLevel.Debug,
            HelperLogLevel.Information => LogLevel.Information,
            HelperLogLevel.Warning => LogLevel.Warning,
            _ => LogLevel.Error,
        };
        if (!_limiter.TryLog(helper, out long suppressed))
        {
            return;
        }

        if (suppressed > 0)
        {
            Log.HelperLinesSuppressed(logger, helper.Name, suppressed);
        }

        Log.HelperLine(logger, logLevel, helper.Name, message);
        inner?.HelperLogged(helper, level, message);
    }
}
