using System.CommandLine;
using Offload.Plugins;
using Offload.Rules;

namespace Offload.Ctl;

/// <summary><c>offloadctl rules print|firewall|apply|remove</c>: the iptables rules that steer packets to offloadd, and a firewall policy that understands them.</summary>
internal static class RulesCommand
{
    public static Command Create()
    {
        var rules = new Command("rules", "The iptables rules that hand offloadd its packets and give the kernel NAT rules for what offloadd leaves to it (chains OFFLOAD-* in raw, mangle and nat).");

        var config = new Option<FileInfo>("--config", "-c") { Description = "offloadd's configuration (its steering: section).", Required = true };
        var print = new Command("print", "Print the rules in iptables-restore form, IPv4 then IPv6.") { config };
        print.SetAction(parse => WithSteering(parse.GetValue(config)!, (configuration, helpers) =>
        {
            Console.Write(SteeringRules.Render(configuration, 4, helpers));
            Console.Write(SteeringRules.Render(configuration, 6, helpers));
        }));
        rules.Add(print);

        var firewallConfig = new Option<FileInfo>("--config", "-c") { Description = "offloadd's configuration (its steering: section).", Required = true };
        var firewall = new Command("firewall", "Print a stateful FORWARD policy (default DROP) that matches offloadd's state marks as well as the kernel's conntrack, IPv4 then IPv6; it is yours to load.") { firewallConfig };
        firewall.SetAction(parse => WithSteering(parse.GetValue(firewallConfig)!, (configuration, _) =>
        {
            Console.Write(FirewallPolicy.Render(configuration.Steering!, 4));
            Console.Write(FirewallPolicy.Render(configuration.Steering!, 6));
        }));
        rules.Add(firewall);

        var applyConfig = new Option<FileInfo>("--config", "-c") { Description = "offloadd's configuration (its steering: section).", Required = true };
        var apply = new Command("apply", "Load the rules (replacing a previous copy) and jump to them from the built-in chains (raw PREROUTING, mangle FORWARD and POSTROUTING, nat PREROUTING and POSTROUTING).") { applyConfig };
        apply.SetAction(parse => WithSteering(parse.GetValue(applyConfig)!, (c, helpers) => SteeringApplier.Apply(c, helpers)));
        rules.Add(apply);

        var prefix = new Option<string>("--set-prefix") { Description = "The prefix of the ipset sets to destroy (helpers mode).", DefaultValueFactory = _ => "offload" };
        var remove = new Command("remove", "Remove the rules, the jumps to them and the daemon's ipset sets; nothing else is touched.") { prefix };
        remove.SetAction(parse => Guard(() => SteeringApplier.Remove(parse.GetValue(prefix)!)));
        rules.Add(remove);
        return rules;
    }

    /// <summary>
    /// Runs an action on a configuration with its steering, and the helpers it names resolved as offloadd resolves them:
    /// built-ins, and the plugins of its plugin directory (whose own ports are steered too).
    /// </summary>
    private static int WithSteering(FileInfo file, Action<OffloadConfig, EngineBuilder.HelperFactory> action)
    {
        try
        {
            var config = ConfigLoader.LoadFile(file.FullName);
            if (config.Steering is null)
            {
                Console.Error.WriteLine($"offloadctl: {file.Name} has no steering: section");
                return 2;
            }

            var catalog = HelperCatalog.Load(HelperCatalog.DirectoryOf(config), e => Console.Error.WriteLine($"offloadctl: plugin left out: {e.Message}"));
            return Guard(() => action(catalog.Effective(config, dropUnknown: false), catalog.Factory));
        }
        catch (ConfigException e)
        {
            Console.Error.WriteLine($"offloadctl: {e.Message}");
            return 2;
        }
    }

    private static int Guard(Action action)
    {
        try
        {
            action();
            return 0;
        }
        catch (InvalidOperationException e)
        {
            Console.Error.WriteLine($"offloadctl: {e.Message}");
            return 1;
        }
    }
}
