using System.CommandLine;
using Offload.Ctl;

var root = new RootCommand("offloadctl: control and inspect Offload, the userspace conntrack, NAT and protocol-helper daemon.");
root.Add(ReplayCommand.Create());
root.Add(RulesCommand.Create());
var socket = ControlCommands.SocketOption();
root.Add(socket);
root.Add(ReplicationCommand.Create(socket));
foreach (var command in ControlCommands.Create(socket))
{
    root.Add(command);
}

return root.Parse(args).Invoke();
