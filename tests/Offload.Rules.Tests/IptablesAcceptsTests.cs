using System.Diagnostics;
using Xunit;

namespace Offload.Rules.Tests;

/// <summary>The rendered rules are what the system's iptables-restore and ip6tables-restore accept (as root, in a namespace of their own).</summary>
public sealed class IptablesAcceptsTests
{
    private const string EveryKind = """
        interfaces: [{name: lan0}, {name: wan0}]
        nat:
          - {type: masquerade, out: wan0}
          - {type: snat, family: ipv4, out: wan0, source: 10.0.0.0/8, to: 198.51.100.10-198.51.100.20, random: true, persistent: true}
          - {type: dnat, protocol: tcp, in: wan0, destination: 198.51.100.1/32, dport: 8080-8081, to: 192.0.2.10, ports: 80-81}
          - {type: dnat, protocol: udp, destination: "2001:db8:2::1/128", dport: 5000, to: "2001:db8:1::10", ports: 5001}
          - {type: dnat, family: ipv4, in: wan0, to: 192.0.2.20}
          - {type: masquerade, family: ipv4, out: lan0, source: 192.0.2.0/24, destination: 192.0.2.10/32}
          - {type: redirect, in: lan0, protocol: tcp, dport: 3128, ports: 3129}
          - {type: masquerade, protocol: gre, out: wan0}
        helpers: [{name: ftp, ports: [21]}, {name: tftp}]
        steering: {from: [lan0], to: [wan0], nat-ports: 61000-65535}
        """;

    public static string? WhyUnavailable() =>
        !OperatingSystem.IsLinux() ? "Linux only."
        : !Environment.IsPrivilegedProcess ? "Needs root (a network namespace and iptables); run the tests as root, e.g. sudo scripts/test."
        : null;

    [SkippableTheory]
    [InlineData("flows: all", false)]
    [InlineData("flows: helpers", false)]
    [InlineData("flows: all", true)]
    [InlineData("flows: helpers", true)]
    public void Every_rule_of_every_kind_loads_in_both_families(string flows, bool handback)
    {
        string yaml = EveryKind.Replace("nat-ports: 61000-65535}", $"nat-ports: 61000-65535, {flows}}}", StringComparison.Ordinal) +
            (handback ? "\nhandback:\n  helpers: [ftp]\n" : string.Empty);
        if (flows == "flows: helpers")
        {
            yaml = yaml.Replace("  - {type: dnat, family: ipv4, in: wan0, to: 192.0.2.20}\n", string.Empty, StringComparison.Ordinal);
        }

        string ns = $"offl-rules-{Environment.ProcessId}-{flows[7..]}{(handback ? "-hb" : string.Empty)}";
        Run("ip", "netns", "add", ns);
        try
        {
            Run("ip", "-n", ns, "link", "add", "lan0", "type", "veth", "peer", "name", "wan0");
            foreach (byte family in new byte[] { 4, 6 })
            {
                string tool = family == 4 ? "iptables" : "ip6tables";
                if (flows == "flows: helpers")
                {
                    Run("ip", "netns", "exec", ns, "ipset", "create", $"offload{family}", "hash:ip,port,ip", "family", family == 4 ? "inet" : "inet6");
                }

                if (handback)
                {
                    Run("ip", "netns", "exec", ns, "ipset", "create", $"offloadh{family}", "hash:ip,port,ip", "family", family == 4 ? "inet" : "inet6");
                }

                string rules = string.Join('\n', SteeringRulesTests.Lines(yaml, family));
                Run("ip", ["netns", "exec", ns, tool + "-restore", "--noflush"], rules);
                string saved = Run("ip", "netns", "exec", ns, tool + "-save");
                int ours = rules.Split('\n').Count(l => l.StartsWith("-A ", StringComparison.Ordinal));
                Assert.Equal(ours, saved.Split('\n').Count(l => l.StartsWith("-A OFFLOAD-", StringComparison.Ordinal)));
            }
        }
        finally
        {
            Run("ip", "netns", "del", ns);
        }
    }

    private static string Run(string file, params string[] arguments) => Run(file, arguments, null);

    private static string Run(string file, string[] arguments, string? input)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = input is not null };
        foreach (var a in arguments)
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start)!;
        if (input is not null)
        {
            process.StandardInput.Write(input);
            process.StandardInput.Close();
        }

        string output = process.StandardOutput.ReadToEnd();
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{file} {string.Join(' ', arguments)}: {error}");
        return output;
    }
}

/// <summary>A theory skipped, with the reason, where iptables cannot run.</summary>
public sealed class SkippableTheoryAttribute : TheoryAttribute
{
    public SkippableTheoryAttribute() => Skip = IptablesAcceptsTests.WhyUnavailable();
}
