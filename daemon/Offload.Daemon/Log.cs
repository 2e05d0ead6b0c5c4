using Microsoft.Extensions.Logging;

namespace Offload.Daemon;

/// <summary>
/// Every log line of the daemon, with event ids grouped per subsystem (1xxx lifecycle, 2xxx queues,
/// 3xxx control socket, 4xxx steering, 5xxx helpers and plugins, 6xxx state across restarts). Nothing here is called per packet.
/// </summary>
internal static partial class Log
{
    [LoggerMessage(1000, LogLevel.Information, "offloadd {Version} starting with {Config}")]
    public static partial void Starting(ILogger logger, string version, string config);

    [LoggerMessage(1001, LogLevel.Information, "Ready: queues {QueuePre} (before routing) and {QueuePost} (after routing) bound, {Rules} NAT rules, helpers: {Helpers}")]
    public static partial void Ready(ILogger logger, string queuePre, string queuePost, int rules, string helpers);

    [LoggerMessage(1002, LogLevel.Information, "Reloaded {Config}: {Rules} NAT rules, helpers: {Helpers}; {Connections} tracked connections kept")]
    public static partial void Reloaded(ILogger logger, string config, int rules, string helpers, int connections);

    [LoggerMessage(1003, LogLevel.Error, "Reload of {Config} failed, keeping the running configuration: {Error}")]
    public static partial void ReloadFailed(ILogger logger, string config, string error);

    [LoggerMessage(1004, LogLevel.Information, "Stopping ({Signal})")]
    public static partial void Stopping(ILogger logger, string signal);

    [LoggerMessage(1005, LogLevel.Information, "Stopped: {Packets} packets, {Connections} connections tracked at the end")]
    public static partial void Stopped(ILogger logger, long packets, int connections);

    [LoggerMessage(1006, LogLevel.Information, "Interfaces changed: NAT rules re-resolved, {Forgotten} connections masqueraded to a vanished address removed")]
    public static partial void InterfacesChanged(ILogger logger, int forgotten);

    [LoggerMessage(1007, LogLevel.Warning, "SIGHUP is ignored in this process (started under nohup?): the runtime will not hand it over, so SIGHUP does not reload; start offloadd with SIGHUP at its default, as systemd does")]
    public static partial void HangupIgnored(ILogger logger);

    [LoggerMessage(2000, LogLevel.Error, "Queue {Queue}: {Error}")]
    public static partial void QueueError(ILogger logger, int queue, string error);

    [LoggerMessage(2001, LogLevel.Warning, "Queue {Queue}: the socket buffer overflowed (ENOBUFS) {Count} times so far; the kernel dropped packets")]
    public static partial void QueueOverflow(ILogger logger, int queue, long count);

    [LoggerMessage(2002, LogLevel.Error, "Queue {Queue}: the engine failed on a packet, which was dropped (only the first ten are logged)")]
    public static partial void EngineFault(ILogger logger, int queue, Exception exception);

    [LoggerMessage(2003, LogLevel.Warning, "Queue {Queue}: its worker did not stop within {Seconds} s of being asked (busy on a burst, or waiting for its shard's lock); stopping goes on")]
    public static partial void WorkerSlowToStop(ILogger logger, int queue, int seconds);

    [LoggerMessage(3000, LogLevel.Information, "Control socket listening on {Path}")]
    public static partial void ControlListening(ILogger logger, string path);

    [LoggerMessage(3001, LogLevel.Warning, "Control socket: {Error}")]
    public static partial void ControlError(ILogger logger, string error);

    [LoggerMessage(3002, LogLevel.Warning, "Control socket: refused a client of uid {Uid} (pid {Pid}): only root or the daemon's user may talk to offloadd; only the first ten are logged, all are counted")]
    public static partial void ControlPeerRefused(ILogger logger, uint uid, int pid);

    [LoggerMessage(3004, LogLevel.Error, "Control socket: the request '{Request}' failed; the client was sent the error")]
    public static partial void ControlHandlerFailed(ILogger logger, string request, Exception exception);

    [LoggerMessage(3003, LogLevel.Warning, "Control socket: {Problem} (pid {Pid}); answered with an error and closed; only the first ten are logged, all are counted")]
    public static partial void ControlBadRequest(ILogger logger, string problem, string pid);

    [LoggerMessage(4000, LogLevel.Information, "Steering rules applied (queues {QueuePre} and {QueuePost}, NAT ports {PortMin}-{PortMax}, fail-{Mode})")]
    public static partial void SteeringApplied(ILogger logger, int queuePre, int queuePost, int portMin, int portMax, string mode);

    [LoggerMessage(4003, LogLevel.Information, "Steering rules rewritten for the helpers bound now: {Ports}")]
    public static partial void SteeringRefreshed(ILogger logger, string ports);

    [LoggerMessage(4004, LogLevel.Error, "Steering rules could not be rewritten for the helpers bound now, the previous ones stay: {Error}")]
    public static partial void SteeringRefreshFailed(ILogger logger, string error);

    [LoggerMessage(4002, LogLevel.Warning, "Steering: a set entry could not be changed ({Entry}); only the first ten are logged, all are counted")]
    public static partial void SteeringEntryFailed(ILogger logger, string entry);

    [LoggerMessage(4001, LogLevel.Information, "Steering rules removed")]
    public static partial void SteeringRemoved(ILogger logger);

    [LoggerMessage(5000, LogLevel.Information, "Plugin: {Change}")]
    public static partial void PluginChanged(ILogger logger, string change);

    [LoggerMessage(5001, LogLevel.Error, "Plugin not loaded: {Error}")]
    public static partial void PluginFailed(ILogger logger, string error);

    [LoggerMessage(5002, LogLevel.Error, "Helper {Helper} ({Origin}) disabled: {Reason}; its connections go on with plain tracking (reload it to enable it again)")]
    public static partial void HelperDisabled(ILogger logger, string helper, string origin, string reason, Exception? exception);

    [LoggerMessage(EventId = 5003, Message = "Helper {Helper}: {Message}")]
    public static partial void HelperLine(ILogger logger, LogLevel level, string helper, string message);

    [LoggerMessage(5004, LogLevel.Warning, "Helper {Helper} logs too much: {Suppressed} of its lines were left out")]
    public static partial void HelperLinesSuppressed(ILogger logger, string helper, long suppressed);

    [LoggerMessage(6000, LogLevel.Information, "State restored from {Path}: {Summary}")]
    public static partial void SnapshotRestored(ILogger logger, string path, string summary);

    [LoggerMessage(6001, LogLevel.Error, "State snapshot {Path} refused ({Reason}): {Error}; starting with an empty table")]
    public static partial void SnapshotRefused(ILogger logger, string path, string reason, string error);

    [LoggerMessage(6002, LogLevel.Information, "State saved to {Path}: {Summary}")]
    public static partial void SnapshotSaved(ILogger logger, string path, string summary);

    [LoggerMessage(6003, LogLevel.Error, "State snapshot {Path} could not be written: {Error}")]
    public static partial void SnapshotWriteFailed(ILogger logger, string path, string error);

    [LoggerMessage(6004, LogLevel.Information, "No state snapshot at {Path}: starting with an empty table")]
    public static partial void SnapshotAbsent(ILogger logger, string path);

    [LoggerMessage(6005, LogLevel.Information, "State snapshots of the shards dealt out: {Summary}")]
    public static partial void SnapshotResharded(ILogger logger, string summary);
}
