using System.CommandLine;
using Offload.Ctl;

var root = new RootCommand("offloadctl: control and inspect Offload, the userspace conntrack, NAT and protocol-helper daemon.");
root.Add(ReplayCommand.Create());
root.Add(RulesCommand.Create());
root.Add(ReplicationCommand.Create());
foreach (var command in ControlCommands.Create())
{
    root.Add(command);
}

return root.Parse(args).Invoke();
