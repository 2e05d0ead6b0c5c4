using System.CommandLine;

namespace Offload.Ctl;

/// <summary><c>offloadctl replication status|role</c>: the state replication between the two routers of a VRRP pair.</summary>
internal static class ReplicationCommand
{
    /// <param name="socket">The root command's <see cref="ControlCommands.SocketOption"/>.</param>
    public static Command Create(Option<string> socket)
    {
        var replication = new Command("replication", "State replication to the standby router (docs/failover.md).");

        var status = new Command("status", "Role, the peer's state, sequence numbers, datagrams sent, acknowledged, resent and refused (by reason), the last resync.");
        status.SetAction(parse => ControlCommands.Ask(parse.GetValue(socket)!, "replication status"));
        replication.Add(status);

        var role = new Argument<string>("ROLE") { Description = "master (active: sends its changes) or backup (standby: applies the peer's)." };
        role.AcceptOnlyFromAmong("master", "backup");
        var setRole = new Command("role", "Set the role by hand (scripts, or without keepalived's notify FIFO); keepalived's next line overrides it.") { role };
        setRole.SetAction(parse => ControlCommands.Ask(parse.GetValue(socket)!, "replication role " + parse.GetValue(role)));
        replication.Add(setRole);
        return replication;
    }
}
