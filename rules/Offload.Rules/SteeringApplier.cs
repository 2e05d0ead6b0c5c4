using System.Diagnostics;
using System.Globalization;

namespace Offload.Rules;

/// <summary>Applies and removes the steering rules with the system's iptables tools (once per start or stop, not per packet).</summary>
public static class SteeringApplier
{
    /// <summary>Loads our chains (replacing their previous content) and makes sure the built-in chains jump to them first.</summary>
    /// <param name="config">The configuration.</param>
    /// <param name="helpers">Creates the configured helpers (for their ports).</param>
    public static void Apply(OffloadConfig config, EngineBuilder.HelperFactory helpers)
    {
        var steering = config.Steering ?? throw new InvalidOperationException("the configuration has no steering: section");
        foreach (var name in SteeringRules.HairpinInterfaces(config))
        {
            AcceptLocalSources(name);
        }

        foreach (byte family in new byte[] { 4, 6 })
        {
            string tool = Tool(family);
            if (steering.Flows == SteeredFlows.Helpers)
            {
                // The set must exist before a rule names it. Entries are the daemon's, one per flow, over netlink.
                Run("ipset", ["create", SteeringRules.SetName(steering, family), "hash:ip,port,ip", "family", family == 4 ? "inet" : "inet6", "timeout", "0", "maxelem", SteeringRules.SetMaxElements.ToString(CultureInfo.InvariantCulture), "-exist"], null);
            }

            if (SteeringRules.HandsBack(config))
            {
                Run("ipset", ["create", SteeringRules.HandbackSetName(steering, family), "hash:ip,port,ip", "family", family == 4 ? "inet" : "inet6", "timeout", "0", "maxelem", SteeringRules.SetMaxElements.ToString(CultureInfo.InvariantCulture), "-exist"], null);
            }

            Run(tool + "-restore", ["--noflush"], SteeringRules.Render(config, family, helpers));
            foreach (var (table, chain, target) in SteeringRules.Jumps)
            {
                if (Run(tool, ["-w", "-t", table, "-C", chain, "-j", target], null, check: false) != 0)
                {
                    Run(tool, ["-w", "-t", table, "-I", chain, "1", "-j", target], null);
                }
            }
        }
    }

    /// <summary>Removes the jumps, our chains and our sets; what the administrator added elsewhere is left alone.</summary>
    public static void Remove(string setPrefix = "offload")
    {
        foreach (byte family in new byte[] { 4, 6 })
        {
            string tool = Tool(family);
            foreach (var (table, chain, target) in SteeringRules.Jumps)
            {
                // A jump may have been added more than once by hand: remove every copy.
                while (Run(tool, ["-w", "-t", table, "-D", chain, "-j", target], null, check: false) == 0)
                {
                }

                Run(tool, ["-w", "-t", table, "-F", target], null, check: false);
                Run(tool, ["-w", "-t", table, "-X", target], null, check: false);
            }

            foreach (var (table, chain) in SteeringRules.InnerChains)
            {
                Run(tool, ["-w", "-t", table, "-F", chain], null, check: false);
                Run(tool, ["-w", "-t", table, "-X", chain], null, check: false);
            }
        }

        foreach (byte family in new byte[] { 4, 6 })
        {
            // A rule that was just deleted may hold the set a moment longer (iptables-nft): retry briefly.
            foreach (string set in new[] { setPrefix + family.ToString(CultureInfo.InvariantCulture), SteeringRules.HandbackSetName(setPrefix, family) })
            {
                if (Run("ipset", ["list", "-n", set], null, check: false, missingToolIsFine: true, missingCode: 1) != 0)
                {
                    continue; // No such set (or no ipset at all): nothing to remove.
                }

                for (int attempt = 0; attempt < 20 && Run("ipset", ["destroy", set], null, check: false) != 0; attempt++)
                {
                    Thread.Sleep(100);
                }
            }
        }
    }

    /// <summary>
    /// Lets hairpin packets, which offloadd gives a source address of the router's own before routing, through the
    /// kernel's martian check on <paramref name="name"/> (accept_local), and loosens strict reverse-path filtering
    /// there to loose, which accepts them too. Strict filtering for all interfaces cannot be loosened for one.
    /// </summary>
    private static void AcceptLocalSources(string name)
    {
        string conf = "/proc/sys/net/ipv4/conf/";
        if (!Directory.Exists(conf + name))
        {
            return; // Not there (yet): nothing forwards through it, and the rules name it anyway.
        }

        string hint = $"hairpin NAT out of {name} needs net.ipv4.conf.{name}.accept_local=1 and reverse-path filtering 0 or 2 (loose)";
        if (ReadSysctl(conf + "all/rp_filter") == 1)
        {
            throw new InvalidOperationException($"{hint}, but net.ipv4.conf.all.rp_filter is 1 (strict) for every interface: set it to 2");
        }

        try
        {
            if (ReadSysctl(conf + name + "/accept_local") != 1)
            {
                File.WriteAllText(conf + name + "/accept_local", "1");
            }

            if (ReadSysctl(conf + name + "/rp_filter") == 1)
            {
                File.WriteAllText(conf + name + "/rp_filter", "2");
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"{hint}; they could not be set here ({e.Message}): set them in /etc/sysctl.d", e);
        }
    }

    private static int ReadSysctl(string path) =>
        int.TryParse(File.ReadAllText(path).Trim(), System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int value) ? value : -1;

    private static string Tool(byte family) => family == 4 ? "iptables" : "ip6tables";

    private static int Run(string file, string[] arguments, string? input, bool check = true, bool missingToolIsFine = false, int missingCode = 0)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardInput = input is not null,
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments)
        {
            start.ArgumentList.Add(a);
        }

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {file}");
        }
        catch (System.ComponentModel.Win32Exception) when (missingToolIsFine)
        {
            return missingCode;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"cannot run {file}: {e.Message} (is iptables installed?)", e);
        }

        using (process)
        {
            if (input is not null)
            {
                process.StandardInput.Write(input);
                process.StandardInput.Close();
            }

            string error = process.StandardError.ReadToEnd();
            process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            if (check && process.ExitCode != 0)
            {
                throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} failed ({process.ExitCode}): {error.Trim()}");
            }

            return process.ExitCode;
        }
    }
}
