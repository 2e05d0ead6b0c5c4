using Microsoft.Extensions.Logging;

namespace Offload.Daemon;

/// <content>Replication to the standby router: 7xxx.</content>
internal static partial class Log
{
    [LoggerMessage(7000, LogLevel.Information, "Replication on {Listen} with peer {Peer}; role from {RoleSource}")]
    public static partial void ReplicationStarted(ILogger logger, string listen, string peer, string roleSource);

    [LoggerMessage(7001, LogLevel.Warning, "Replication role: {Role} ({Source})")]
    public static partial void ReplicationRole(ILogger logger, string role, string source);

    [LoggerMessage(7003, LogLevel.Error, "Replication: a record from the peer could not be applied: {Error}")]
    public static partial void ReplicationApplyFailed(ILogger logger, string error, Exception exception);

    [LoggerMessage(7002, LogLevel.Error, "keepalived's notify FIFO {Path} cannot be read: {Error}; retrying every second")]
    public static partial void ReplicationFifoError(ILogger logger, string path, string error);
}
