using Xunit;

namespace Offload.Rules.Tests;

/// <summary>
/// A PPTP server behind a port forward needs its call's GRE translated both ways at once (the kernel's
/// pptp_nat_expected); the pptp helper does not do that yet, so <c>offloadd --check</c> refuses a forward that can
/// catch its port beside it, at the rule, and takes one that cannot.
/// </summary>
public sealed class PptpForwardConfigTests
{
    private static string Config(string rule, string helper = "{name: pptp}") => $"""
        interfaces: [{"{"}name: lan0{"}"}, {"{"}name: wan0{"}"}]
        nat:
          - {"{"}type: masquerade, out: wan0{"}"}
          - {rule}
        helpers: [{helper}]
        """;

    [Theory]
    [InlineData("{type: dnat, protocol: tcp, in: wan0, dport: 1723, to: 192.0.2.10}")]
    [InlineData("{type: dnat, protocol: tcp, in: wan0, dport: 1000-2000, to: 192.0.2.10}")]
    [InlineData("{type: dnat, in: wan0, to: 192.0.2.10}")]
    [InlineData("{type: redirect, protocol: tcp, dport: 1723}")]
    public void A_forward_that_can_catch_the_pptp_port_is_refused_at_its_rule_naming_both(string rule)
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(Config(rule), "p.yaml"));
        Assert.Equal(4, e.Line);
        Assert.Contains("PPTP server", e.Message, StringComparison.Ordinal);
        Assert.Contains("pptp helper (line 5)", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{type: dnat, protocol: tcp, in: wan0, dport: 8080, to: 192.0.2.10, ports: 80}", "{name: pptp}")]
    [InlineData("{type: dnat, protocol: udp, in: wan0, dport: 1723, to: 192.0.2.10}", "{name: pptp}")]
    [InlineData("{type: dnat, protocol: tcp, in: wan0, dport: 1723, to: 192.0.2.10}", "{name: ftp}")]
    public void A_forward_that_cannot_catch_it_or_one_without_the_helper_is_taken(string rule, string helper)
    {
        Assert.Equal(2, ConfigLoader.Parse(Config(rule, helper), "p.yaml").Nat.Count);
    }

    [Fact]
    public void Ports_configured_for_the_helper_are_the_ones_checked()
    {
        Assert.Equal(2, ConfigLoader.Parse(Config("{type: dnat, protocol: tcp, dport: 1723, to: 192.0.2.10}", "{name: pptp, ports: [1724]}")).Nat.Count);
        Assert.Throws<ConfigException>(() => ConfigLoader.Parse(Config("{type: dnat, protocol: tcp, dport: 1724, to: 192.0.2.10}", "{name: pptp, ports: [1724]}")));
    }
}
