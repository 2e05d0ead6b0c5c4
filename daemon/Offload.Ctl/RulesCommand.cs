using System.CommandLine;
using Offload.Rules;
using Offload.Alg;

namespace Offload.Ctl;

/// <summary><c>offloadctl rules print|apply|remove</c>: the iptables rules that steer packets to offloadd.</summary>
internal static class RulesCommand
{
    private static readonly EngineBuilder.HelperFactory BuiltIns = h => BuiltInHelpers.Create(h.Name, h.Loose);

    public static Command Create()
    {
        var rules = new Command("rules", "The iptables rules that hand offloadd its packets (chains OFFLOAD-PRE in raw and OFFLOAD-POST in mangle).");

        var config = new Option<FileInfo>("--config", "-c") { Description = "offloadd's configuration (its steering: section).", Required = true };
        var print = new Command("print", "Print the rules in iptables-restore form, IPv4 then IPv6.") { config };
        print.SetAction(parse => WithSteering(parse.GetValue(config)!, configuration =>
        {
            Console.Write(SteeringRules.Render(configuration, 4, BuiltIns));
            Console.Write(SteeringRules.Render(configuration, 6, BuiltIns));
        }));
        rules.Add(print);

        var applyConfig = new Option<FileInfo>("--config", "-c") { Description = "offloadd's configuration (its steering: section).", Required = true };
        var apply = new Command("apply", "Load the rules (replacing a previous copy) and jump to them from PREROUTING and POSTROUTING.") { applyConfig };
        apply.SetAction(parse => WithSteering(parse.GetValue(applyConfig)!, c => SteeringApplier.Apply(c, BuiltIns)));
        rules.Add(apply);

        var prefix = new Option<string>("--set-prefix") { Description = "The prefix of the ipset sets to destroy (helpers mode).", DefaultValueFactory = _ => "offload" };
        var remove = new Command("remove", "Remove the rules, the jumps to them and the daemon's ipset sets; nothing else is touched.") { prefix };
        remove.SetAction(parse => Guard(() => SteeringApplier.Remove(parse.GetValue(prefix)!)));
        rules.Add(remove);
        return rules;
    }

    private static int WithSteering(FileInfo file, Action<OffloadConfig> action)
    {
        try
        {
            var config = ConfigLoader.LoadFile(file.FullName);
            if (config.Steering is null)
            {
                Console.Error.WriteLine($"offloadctl: {file.Name} has no steering: section");
                return 2;
            }

            return Guard(() => action(config));
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
