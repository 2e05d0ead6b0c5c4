using Microsoft.Extensions.Logging;

namespace Offload.Daemon;

/// <content>Hand-back's log lines (8xxx); none per packet: per configuration, per refused flow (the first ten), per batch of ends.</content>
internal static partial class Log
{
    [LoggerMessage(8000, LogLevel.Information, "Hand-back to the kernel's conntrack: {Helpers}' expected connections, after {Packets} packets and {Bytes} bytes once established")]
    public static partial void HandbackConfigured(ILogger logger, string helpers, int packets, int bytes);

    [LoggerMessage(8001, LogLevel.Warning, "Hand-back of {Flow} refused by the kernel ({Error}); the flow stays with offloadd")]
    public static partial void HandbackFailed(ILogger logger, string flow, string error, Exception? exception);

    [LoggerMessage(8002, LogLevel.Warning, "Hand-back cannot use {What}")]
    public static partial void HandbackUnavailable(ILogger logger, string what);

    [LoggerMessage(8004, LogLevel.Information, "Hand-back to the kernel's conntrack off: every packet of the steered flows stays with offloadd")]
    public static partial void HandbackOff(ILogger logger);

    [LoggerMessage(8003, LogLevel.Debug, "{Count} handed-back flows ended in the kernel (destroy events); offloadd's entries removed")]
    public static partial void HandbackWithdrawn(ILogger logger, int count);

    [LoggerMessage(8006, LogLevel.Information, "Steering rules rewritten with the hand-back set's: handed-back flows pass the queues (flows: all)")]
    public static partial void HandbackSteeringAdded(ILogger logger);

    [LoggerMessage(8005, LogLevel.Information, "{Count} handed-back flows found gone from the kernel's table without their destroy event; offloadd's entries removed")]
    public static partial void HandbackFoundGone(ILogger logger, int count);
}
