using Offload.Alg;
using Xunit;

namespace Offload.Rules.Tests;

/// <summary>
/// The rules a configuration gives iptables: every packet of a flow offloadd tracks reaches its queues (both ways, with
/// the ICMP errors that quote it), what it leaves to the kernel keeps a kernel NAT rule, and nothing forwarded from the
/// LAN leaves untranslated (docs/steering.md).
/// </summary>
public sealed class SteeringRulesTests
{
    private const string Router = """
        interfaces: [{name: lan0}, {name: wan0}]
        nat:
          - {type: masquerade, family: ipv4, out: wan0}
          - {type: dnat, protocol: tcp, in: wan0, destination: 198.51.100.1/32, dport: 8080, to: 192.0.2.10, ports: 80}
          - {type: dnat, protocol: tcp, destination: "2001:db8:2::1/128", dport: 8080, to: "2001:db8:1::10", ports: 80}
          - {type: masquerade, family: ipv4, out: lan0, source: 192.0.2.0/24, destination: 192.0.2.10/32}
          - {type: redirect, in: lan0, protocol: tcp, dport: 3128, ports: 3129}
        helpers: [{name: ftp, ports: [21]}]
        steering: {from: [lan0], to: [wan0], queue-pre: 0, queue-post: 1, nat-ports: 61000-65535}
        """;

    internal static string[] Lines(string yaml, byte family) =>
        SteeringRules.Render(ConfigLoader.Parse(yaml), family, h => BuiltInHelpers.Create(h.Name, h.Loose)).Split('\n');

    private static string[] Table(string[] lines, string table)
    {
        int start = Array.IndexOf(lines, "*" + table);
        Assert.True(start >= 0, $"no *{table} section");
        int end = Array.IndexOf(lines, "COMMIT", start);
        return lines[(start + 1)..end];
    }

    [Fact]
    public void Echo_replies_to_the_daemons_icmp_ids_are_queued_before_routing_by_their_identifier()
    {
        var raw = Table(Lines(Router, 4), "raw");
        Assert.Contains("-A OFFLOAD-PRE -i wan0 -p icmp -m addrtype --dst-type LOCAL -m icmp --icmp-type echo-reply -m u32 --u32 \"0>>22&0x3C@4>>16=61000:65535\" -j OFFLOAD-QPRE", raw);
    }

    [Fact]
    public void With_the_pptp_helper_the_enhanced_gre_of_calls_is_queued_both_ways_and_plain_gre_stays_with_the_kernel()
    {
        string pptp = Router.Replace("helpers: [{name: ftp, ports: [21]}]", "helpers: [{name: pptp}]", StringComparison.Ordinal);
        var raw = Table(Lines(pptp, 4), "raw");
        const string Enhanced = "-p gre -m u32 --u32 \"0>>22&0x3C@0&0x7FFFF=0x1880B\"";
        Assert.Contains($"-A OFFLOAD-PRE -i lan0 {Enhanced} -m addrtype ! --dst-type LOCAL,BROADCAST,MULTICAST -j CT --notrack", raw);
        Assert.Contains($"-A OFFLOAD-PRE -i wan0 {Enhanced} -j OFFLOAD-QPRE", raw);
        Assert.DoesNotContain(raw, l => l.Contains("-p gre", StringComparison.Ordinal) && !l.Contains(Enhanced, StringComparison.Ordinal));
        var mangle = Table(Lines(pptp, 4), "mangle");
        Assert.Contains(mangle, l => l.StartsWith("-A OFFLOAD-POST -o wan0 -p gre ", StringComparison.Ordinal) && l.Contains("-j NFQUEUE --queue-num 1", StringComparison.Ordinal));
        Assert.Contains("-A OFFLOAD-PRE -i wan0 -p gre -m u32 --u32 \"40&0x7FFFF=0x1880B\" -j OFFLOAD-QPRE", Table(Lines(pptp, 6), "raw"));

        // Without the helper no GRE reaches the daemon.
        Assert.DoesNotContain(Lines(Router, 4), l => l.Contains("-p gre", StringComparison.Ordinal));
    }

    [Fact]
    public void Icmp_errors_quoting_a_port_of_the_nat_range_are_queued_and_other_errors_stay_with_the_routers_sockets()
    {
        var raw = Table(Lines(Router, 4), "raw");
        string quotingNatPort = "-A OFFLOAD-PRE -i wan0 -p icmp -m addrtype --dst-type LOCAL -m u32 --u32 \"0>>22&0x3C@0>>24=3,11,12&&0>>22&0x3C@16>>16&0xFF=6,17&&0>>22&0x3C@8>>22&0x3C@8>>16=61000:65535\" -j OFFLOAD-QPRE";
        Assert.Contains(quotingNatPort, raw);

        // No rule takes every ICMP message to the router: errors about its own connections must reach its sockets.
        Assert.DoesNotContain(raw, l => l.Contains("-p icmp", StringComparison.Ordinal) && l.Contains("-m addrtype --dst-type LOCAL", StringComparison.Ordinal) && !l.Contains("-m u32", StringComparison.Ordinal));
    }

    [Fact]
    public void Ipv6_errors_and_echo_replies_are_matched_at_the_fixed_offsets_of_a_header_chain_without_extensions()
    {
        string nat66 = Router.Replace("{type: masquerade, family: ipv4, out: wan0}", "{type: masquerade, out: wan0}", StringComparison.Ordinal);
        var raw = Table(Lines(nat66, 6), "raw");
        Assert.Contains("-A OFFLOAD-PRE -i wan0 -p icmpv6 -m addrtype --dst-type LOCAL -m icmp6 --icmpv6-type echo-reply -m u32 --u32 \"44>>16=61000:65535\" -j OFFLOAD-QPRE", raw);
        Assert.Contains("-A OFFLOAD-PRE -i wan0 -p icmpv6 -m addrtype --dst-type LOCAL -m u32 --u32 \"40>>24=1:4&&52>>8&0xFF=6,17&&88>>16=61000:65535\" -j OFFLOAD-QPRE", raw);
    }

    [Fact]
    public void Forwarded_traffic_from_the_lan_is_queued_after_routing_and_from_the_wan_before_routing()
    {
        foreach (byte family in new byte[] { 4, 6 })
        {
            var lines = Lines(Router, family);
            var raw = Table(lines, "raw");
            var mangle = Table(lines, "mangle");
            string icmp = family == 4 ? "icmp" : "icmpv6";
            foreach (string p in new[] { "tcp", "udp", icmp })
            {
                Assert.Contains(raw, l => l.StartsWith($"-A OFFLOAD-PRE -i lan0 -p {p} -m addrtype ! --dst-type LOCAL", StringComparison.Ordinal) && l.EndsWith("-j CT --notrack", StringComparison.Ordinal));
                Assert.Contains(raw, l => l.StartsWith($"-A OFFLOAD-PRE -i wan0 -p {p} -m addrtype ! --dst-type LOCAL", StringComparison.Ordinal) && l.EndsWith("-j OFFLOAD-QPRE", StringComparison.Ordinal));

                // After routing: only what the daemon has not seen (marked) and what the router did not send itself.
                Assert.Contains($"-A OFFLOAD-POST -o wan0 -p {p} -m addrtype ! --src-type LOCAL -m conntrack --ctstate UNTRACKED -m mark ! --mark 0x10000/0x10000 -j NFQUEUE --queue-num 1", mangle);
            }

            Assert.Equal(["-A OFFLOAD-QPRE -j CT --notrack", "-A OFFLOAD-QPRE -j NFQUEUE --queue-num 0"], raw.Where(l => l.StartsWith("-A OFFLOAD-QPRE", StringComparison.Ordinal)));
        }
    }

    [Fact]
    public void Ipv6_groups_and_link_local_addresses_leave_the_chain_before_anything_is_untracked()
    {
        var raw = Table(Lines(Router, 6), "raw").Where(l => l.StartsWith("-A OFFLOAD-PRE", StringComparison.Ordinal)).ToList();
        Assert.Equal("-A OFFLOAD-PRE -d ff00::/8 -j RETURN", raw[0]);
        Assert.Equal("-A OFFLOAD-PRE -d fe80::/10 -j RETURN", raw[1]);
    }

    [Fact]
    public void A_port_forward_is_queued_before_routing_on_its_interface_with_the_errors_that_quote_its_port()
    {
        var raw = Table(Lines(Router, 4), "raw");
        Assert.Contains("-A OFFLOAD-PRE -i wan0 -p tcp -d 198.51.100.1/32 -m tcp --dport 8080 -j OFFLOAD-QPRE", raw);
        Assert.Contains(raw, l => l.StartsWith("-A OFFLOAD-PRE -i wan0 -p icmp -d 198.51.100.1/32 -m u32", StringComparison.Ordinal) && l.Contains("@8>>16=8080:8080\"", StringComparison.Ordinal));

        // Without in: the forward applies on every interface (hairpin from the LAN), as the kernel's DNAT rule would.
        var raw6 = Table(Lines(Router, 6), "raw");
        Assert.Contains("-A OFFLOAD-PRE ! -i lo -p tcp -d 2001:db8:2::1/128 -m tcp --dport 8080 -j OFFLOAD-QPRE", raw6);
    }

    [Fact]
    public void Hairpin_replies_to_the_nat_ports_are_queued_on_the_lan_too()
    {
        var raw = Table(Lines(Router, 4), "raw");
        Assert.Contains("-A OFFLOAD-PRE -i lan0 -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 61000:65535 -j OFFLOAD-QPRE", raw);
    }

    [Fact]
    public void The_lan_of_a_hairpin_rule_is_where_packets_with_the_routers_own_source_arrive()
    {
        Assert.Equal(["lan0"], SteeringRules.HairpinInterfaces(ConfigLoader.Parse(Router)));
        string plain = Router.Replace("  - {type: masquerade, family: ipv4, out: lan0, source: 192.0.2.0/24, destination: 192.0.2.10/32}\n", string.Empty, StringComparison.Ordinal);
        Assert.Empty(SteeringRules.HairpinInterfaces(ConfigLoader.Parse(plain)));
    }

    [Fact]
    public void A_redirect_stays_with_the_kernel_before_any_rule_could_untrack_it()
    {
        var lines = Lines(Router, 4);
        var raw = Table(lines, "raw").ToList();
        int redirect = raw.IndexOf("-A OFFLOAD-PRE -i lan0 -p tcp -m tcp --dport 3128 -j RETURN");
        int firstNotrack = raw.FindIndex(l => l.StartsWith("-A OFFLOAD-PRE", StringComparison.Ordinal) && l.EndsWith("--notrack", StringComparison.Ordinal));
        Assert.InRange(redirect, 0, firstNotrack - 1);
        Assert.Contains("-A OFFLOAD-NAT-PRE -i lan0 -p tcp -m tcp --dport 3128 -j REDIRECT --to-ports 3129", Table(lines, "nat"));
    }

    [Fact]
    public void The_kernel_nat_rules_for_what_the_daemon_leaves_keep_their_ports_below_the_nat_range()
    {
        var nat = Table(Lines(Router, 4), "nat");
        Assert.Contains("-A OFFLOAD-NAT-POST -o wan0 -p tcp -j MASQUERADE --to-ports 1024-60999", nat);
        Assert.Contains("-A OFFLOAD-NAT-POST -o wan0 -p udp -j MASQUERADE --to-ports 1024-60999", nat);
        Assert.Contains("-A OFFLOAD-NAT-POST -o wan0 -j MASQUERADE", nat);
        Assert.Contains("-A OFFLOAD-NAT-PRE -i wan0 -p tcp -d 198.51.100.1/32 -m tcp --dport 8080 -j DNAT --to-destination 192.0.2.10:80", nat);
        Assert.Contains("-A OFFLOAD-NAT-PRE -p tcp -d 2001:db8:2::1/128 -m tcp --dport 8080 -j DNAT --to-destination [2001:db8:1::10]:80", Table(Lines(Router, 6), "nat"));

        // An IPv4-only masquerade gives IPv6 no NAT at all: it is routed.
        Assert.DoesNotContain(Table(Lines(Router, 6), "nat"), l => l.Contains("MASQUERADE", StringComparison.Ordinal));
    }

    [Fact]
    public void An_ipv6_snat_rule_left_to_the_kernel_puts_its_address_in_brackets_before_its_ports()
    {
        string snat = Router.Replace("{type: masquerade, family: ipv4, out: wan0}", "{type: snat, out: wan0, to: \"2001:db8:2::1\"}", StringComparison.Ordinal);
        var nat = Table(Lines(snat, 6), "nat");
        Assert.Contains("-A OFFLOAD-NAT-POST -o wan0 -p tcp -j SNAT --to-source [2001:db8:2::1]:1024-60999", nat);
        Assert.Contains("-A OFFLOAD-NAT-POST -o wan0 -j SNAT --to-source 2001:db8:2::1", nat);
    }

    [Fact]
    public void What_the_kernel_tracks_as_invalid_never_leaves_from_the_lan_to_the_wan()
    {
        Assert.Contains("-A OFFLOAD-FWD -i lan0 -o wan0 -m conntrack --ctstate INVALID -j DROP", Table(Lines(Router, 4), "mangle"));
        Assert.Contains("-A OFFLOAD-FWD -i lan0 -o wan0 -m conntrack --ctstate INVALID -j DROP", Table(Lines(Router, 6), "mangle"));
    }

    [Fact]
    public void Helpers_mode_takes_the_helper_flows_both_ways_and_leaves_the_rest_to_the_kernel()
    {
        string helpers = """
            interfaces: [{name: lan0}, {name: wan0}]
            nat: [{type: masquerade, out: wan0}]
            helpers: [{name: ftp, ports: [21]}]
            steering: {from: [lan0], to: [wan0], flows: helpers}
            """;
        var raw = Table(Lines(helpers, 6), "raw");
        Assert.Contains("-A OFFLOAD-PRE -i lan0 -p tcp -m addrtype ! --dst-type LOCAL -m tcp --dport 21 -j CT --notrack", raw);
        Assert.Contains("-A OFFLOAD-PRE -i wan0 -p tcp -m addrtype ! --dst-type LOCAL -m tcp --sport 21 -j OFFLOAD-QPRE", raw);
        Assert.Contains("-A OFFLOAD-PRE -i wan0 -m addrtype ! --dst-type LOCAL -m set --match-set offload6 src,src,dst -j OFFLOAD-QPRE", raw);

        // An expected connection that starts from outside (FTP active data to a routed client) is taken there too.
        Assert.Contains("-A OFFLOAD-PRE -i wan0 -m addrtype ! --dst-type LOCAL -m set --match-set offload6 dst,dst,src -j OFFLOAD-QPRE", raw);
        Assert.Contains("-A OFFLOAD-PRE -i lan0 -m addrtype ! --dst-type LOCAL -m set --match-set offload6 src,src,dst -j CT --notrack", raw);
        Assert.DoesNotContain(raw, l => l.StartsWith("-A OFFLOAD-PRE -i lan0 -p tcp -m addrtype ! --dst-type LOCAL -j", StringComparison.Ordinal));
        Assert.Contains("-A OFFLOAD-NAT-POST -o wan0 -p tcp -j MASQUERADE --to-ports 1024-60999", Table(Lines(helpers, 6), "nat"));
    }

    [Fact]
    public void Helpers_mode_leaves_port_forwards_to_the_kernel_whole()
    {
        string helpers = Router.Replace("nat-ports: 61000-65535}", "nat-ports: 61000-65535, flows: helpers}", StringComparison.Ordinal);
        var lines = Lines(helpers, 4);
        Assert.DoesNotContain(Table(lines, "raw"), l => l.Contains("--dport 8080", StringComparison.Ordinal));
        Assert.Contains("-A OFFLOAD-NAT-PRE -i wan0 -p tcp -d 198.51.100.1/32 -m tcp --dport 8080 -j DNAT --to-destination 192.0.2.10:80", Table(lines, "nat"));
    }

    [Fact]
    public void Fail_open_lets_every_queue_rule_bypass_an_absent_daemon_and_fail_closed_none()
    {
        string open = Router.Replace("nat-ports: 61000-65535}", "nat-ports: 61000-65535, fail-open: true}", StringComparison.Ordinal);
        var queued = Lines(open, 4).Where(l => l.Contains("NFQUEUE", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(queued);
        Assert.All(queued, l => Assert.EndsWith("--queue-bypass", l, StringComparison.Ordinal));
        Assert.DoesNotContain(Lines(Router, 4), l => l.Contains("--queue-bypass", StringComparison.Ordinal));
    }

    [Fact]
    public void The_state_mark_names_the_bits_the_post_routing_rules_skip()
    {
        string moved = Router.Replace("nat-ports: 61000-65535}", "nat-ports: 61000-65535, state-mark: 0xff00}", StringComparison.Ordinal);
        Assert.Contains(Table(Lines(moved, 4), "mangle"), l => l.Contains("-m mark ! --mark 0x100/0x100", StringComparison.Ordinal));
    }
}

/// <summary>The stateful policy <c>offloadctl rules firewall</c> prints: the kernel's usual rules, plus the same on the daemon's marks.</summary>
public sealed class FirewallPolicyTests
{
    [Fact]
    public void Established_related_and_forwarded_ports_pass_on_either_states_and_new_flows_only_from_the_lan()
    {
        var steering = ConfigLoader.Parse("""
            interfaces: [{name: lan0}, {name: wan0}]
            steering: {from: [lan0], to: [wan0]}
            """).Steering!;
        var lines = FirewallPolicy.Render(steering, 4).Split('\n');
        Assert.Contains(":FORWARD DROP [0:0]", lines);
        Assert.Contains("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", lines);
        Assert.Contains("-A FORWARD -m mark --mark 0x40000/0x40000 -j ACCEPT", lines);
        Assert.Contains("-A FORWARD -m mark --mark 0x80000/0x80000 -j ACCEPT", lines);
        Assert.Contains("-A FORWARD -i lan0 -o wan0 -j ACCEPT", lines);
        Assert.Contains("-A FORWARD -i lan0 -o lan0 -j ACCEPT", lines);
        Assert.Contains("-A FORWARD -i wan0 -o lan0 -m mark --mark 0x200000/0x200000 -j ACCEPT", lines);
        Assert.DoesNotContain("-A FORWARD -i wan0 -o lan0 -j ACCEPT", lines);
    }
}
