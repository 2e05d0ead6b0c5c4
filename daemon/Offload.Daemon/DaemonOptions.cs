namespace Offload.Daemon;

/// <summary>How offloadd was started (its command line, beside the configuration file).</summary>
/// <param name="SocketPath">The control socket offloadctl talks to.</param>
/// <param name="ApplyRules">Apply the steering rules once the queues are bound (<c>--apply-rules</c>).</param>
/// <param name="RemoveRulesOnStop">Remove them again when stopping (<c>--remove-rules-on-stop</c>); by default they stay, so that the flows fail closed across a restart.</param>
/// <param name="StatePath">Where the state snapshot is kept across restarts (<c>--state</c>); null: nothing is kept.</param>
/// <param name="CheckpointPeriod">How often the snapshot is written while running (<c>--checkpoint</c>); zero: only on stop.</param>
internal sealed record DaemonOptions(string SocketPath, bool ApplyRules, bool RemoveRulesOnStop, string? StatePath, TimeSpan CheckpointPeriod)
{
    /// <summary>
    /// The default state file: <c>state</c> beside the control socket, so /run/offload/state under systemd (kept across a
    /// restart by RuntimeDirectoryPreserve=restart), and a daemon started by hand with a socket of its own keeps its own.
    /// </summary>
    public static string StateBeside(string socketPath) => Path.Combine(Path.GetDirectoryName(Path.GetFullPath(socketPath)) ?? "/", "state");
}
