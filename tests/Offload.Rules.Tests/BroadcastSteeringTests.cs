using Xunit;

namespace Offload.Rules.Tests;

/// <summary>
/// Forwarded directed broadcasts to a helper's UDP port (netbios-ns's name queries) are taken by the daemon like any
/// forwarded flow, while the broadcasts of the LAN's own network, the router's, stay with the kernel, as do broadcasts
/// to ports no helper serves (docs/architecture.md, NetBIOS-NS).
/// </summary>
public sealed class BroadcastSteeringTests
{
    private static string Config(string helpers, string flows = "") => $$"""
        interfaces: [{name: lan0}, {name: wan0}]
        nat: [{type: masquerade, out: wan0}]
        helpers: {{helpers}}
        steering: {from: [lan0], to: [wan0], queue-pre: 0, queue-post: 1, nat-ports: 61000-65535{{flows}}}
        """;

    private static string[] Broadcasts(string yaml, byte family) =>
        [.. SteeringRulesTests.Lines(yaml, family).Where(l => l.Contains("--dst-type BROADCAST", StringComparison.Ordinal))];

    [Theory]
    [InlineData("")]
    [InlineData(", flows: helpers")]
    public void A_broadcast_to_a_helpers_udp_port_is_untracked_for_the_queue_after_routing_unless_it_is_the_lans_own(string flows)
    {
        Assert.Equal(
            [
                "-A OFFLOAD-PRE -i lan0 -p udp -m addrtype --dst-type BROADCAST --limit-iface-in -j RETURN",
                "-A OFFLOAD-PRE -i lan0 -p udp -m addrtype --dst-type BROADCAST -m udp --dport 137 -j CT --notrack",
                "-A OFFLOAD-PRE -i lan0 -p udp -m addrtype --dst-type BROADCAST -m udp --dport 161 -j CT --notrack",
            ],
            Broadcasts(Config("[{name: netbios-ns}, {name: snmp}, {name: ftp}]", flows), 4));
    }

    [Fact]
    public void Without_a_udp_helper_or_in_ipv6_no_broadcast_is_taken()
    {
        Assert.Empty(Broadcasts(Config("[{name: ftp}]"), 4));
        Assert.Empty(Broadcasts(Config("[{name: netbios-ns}]"), 6));
    }
}
