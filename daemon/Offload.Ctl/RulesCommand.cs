using System.CommandLine;
using Offload.Rules;

namespace Offload.Ctl;

/// <summary><c>offloadctl rules print|apply|remove</c>: the iptables rules that steer packets to offloadd.</summary>
internal static class RulesCommand
{
    public static Command Create()
    {
        var rules = new Command("rules", "The iptables rules that hand offloadd its packets (chains OFFLOAD-PRE in raw and OFFLOAD-POST in mangle).");

        var config = new Option<FileInfo>("--config", "-c") { Description = "offloadd's configuration (its steering: section).", Required = true };
        var print = new Command("print", "Print the rules in iptables-restore form, IPv4 then IPv6.") { config };
        print.SetAction(parse => WithSteering(parse.GetValue(config)!, steering =>
        {
            Console.Write(SteeringRules.Render(steering, 4));
            Console.Write(SteeringRules.Render(steering, 6));
        }));
        rules.Add(print);

        var applyConfig = new Option<FileInfo>("--config", "-c") { Description = "offloadd's configuration (its steering: section).", Required = true };
        var apply = new Command("apply", "Load the rules (replacing a previous copy) and jump to them from PREROUTING and POSTROUTING.") { applyConfig };
        apply.SetAction(parse => WithSteering(parse.GetValue(applyConfig)!, SteeringApplier.Apply));
        rules.Add(apply);

        var remove = new Command("remove", "Remove the rules and the jumps to them; nothing else is touched.");
        remove.SetAction(_ => Guard(SteeringApplier.Remove));
        rules.Add(remove);
        return rules;
    }

    private static int WithSteering(FileInfo file, Action<SteeringConfig> action)
    {
        try
        {
            var config = ConfigLoader.LoadFile(file.FullName);
            if (config.Steering is not { } steering)
            {
                Console.Error.WriteLine($"offloadctl: {file.Name} has no steering: section");
                return 2;
            }

            return Guard(() => action(steering));
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
