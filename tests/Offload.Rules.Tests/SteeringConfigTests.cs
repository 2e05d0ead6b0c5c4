using Xunit;

namespace Offload.Rules.Tests;

/// <summary>What <c>offloadd --check</c> accepts in <c>steering:</c>, and what it refuses because it could not work live.</summary>
public sealed class SteeringConfigTests
{
    private static string Config(string steering, string nat = "[{type: masquerade, out: wan0}]", string helpers = "[{name: ftp, ports: [21]}]") => $"""
        interfaces: [{"{"}name: lan0{"}"}, {"{"}name: wan0{"}"}]
        nat: {nat}
        helpers: {helpers}
        steering: {steering}
        """;

    [Fact]
    public void Tcp_udp_and_icmp_are_steered_by_default_with_the_state_mark_in_bits_16_to_23()
    {
        var steering = ConfigLoader.Parse(Config("{from: [lan0], to: [wan0]}")).Steering!;
        Assert.Equal([6, 17, 1], steering.Protocols);
        Assert.Equal(0x00ff0000u, steering.StateMark);
    }

    [Fact]
    public void Icmpv6_names_the_same_choice_as_icmp()
    {
        var steering = ConfigLoader.Parse(Config("{from: [lan0], to: [wan0], protocols: [tcp, icmpv6, icmp]}")).Steering!;
        Assert.Equal([6, 1], steering.Protocols);
    }

    [Fact]
    public void Other_protocols_are_refused_with_where_they_go_instead()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(Config("{from: [lan0], to: [wan0], protocols: [tcp, gre]}"), "r.yaml"));
        Assert.StartsWith("r.yaml:4:", e.Message, StringComparison.Ordinal);
        Assert.Contains("tcp, udp and icmp only", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("0xff00", 0xff00u)]
    [InlineData("0xFF000000", 0xff000000u)]
    [InlineData("255", 0xffu)]
    public void A_state_mark_is_eight_contiguous_bits(string text, uint expected) =>
        Assert.Equal(expected, ConfigLoader.Parse(Config($"{{from: [lan0], to: [wan0], state-mark: \"{text}\"}}")).Steering!.StateMark);

    [Theory]
    [InlineData("0")]
    [InlineData("0xf00")]
    [InlineData("0x1ff")]
    [InlineData("0x0ff0ff00")]
    [InlineData("mark")]
    public void Anything_else_as_a_state_mark_is_refused(string text)
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(Config($"{{from: [lan0], to: [wan0], state-mark: \"{text}\"}}")));
        Assert.Contains("eight contiguous bits", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_nat_range_that_leaves_the_kernel_no_ports_is_refused()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(Config("{from: [lan0], to: [wan0], nat-ports: 1024-65535}")));
        Assert.Contains("no ports for the kernel", e.Message, StringComparison.Ordinal);
        Assert.Equal(((ushort)1024, (ushort)60999), SteeringRules.KernelPorts(new SteeringConfig()));
        Assert.Equal(((ushort)2001, (ushort)65535), SteeringRules.KernelPorts(new SteeringConfig { NatPortMin = 1000, NatPortMax = 2000 }));
    }

    [Fact]
    public void Helpers_mode_refuses_a_port_forward_to_a_helpers_port_that_the_kernel_would_take_without_the_helper()
    {
        string forward = "[{type: masquerade, out: wan0}, {type: dnat, protocol: tcp, in: wan0, dport: 21, to: 192.0.2.10}]";
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(Config("{from: [lan0], to: [wan0], flows: helpers}", forward), "h.yaml"));
        Assert.StartsWith("h.yaml:2:", e.Message, StringComparison.Ordinal);
        Assert.Contains("ftp helper", e.Message, StringComparison.Ordinal);

        // The same forward is taken whole by the daemon when it takes every flow, and another port is the kernel's in helpers mode.
        Assert.NotNull(ConfigLoader.Parse(Config("{from: [lan0], to: [wan0]}", forward)).Steering);
        string web = "[{type: masquerade, out: wan0}, {type: dnat, protocol: tcp, in: wan0, dport: 80, to: 192.0.2.10}]";
        Assert.NotNull(ConfigLoader.Parse(Config("{from: [lan0], to: [wan0], flows: helpers}", web)).Steering);
    }
}
