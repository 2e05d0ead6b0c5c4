using Xunit;

namespace Offload.Rules.Tests;

/// <summary>
/// What <c>offloadd --check</c> accepts in <c>handback:</c> and where it points when it refuses it (in both modes; with
/// several engine shards never); and the rules the hand-back set gets: first in OFFLOAD-PRE, ahead of the rules that
/// queue replies to offloadd's NAT ports, with hand-back on only; with <c>flows: all</c> a second one per <c>from</c>
/// interface for the packets from the LAN, ahead of the rules that untrack and queue every flow.
/// </summary>
public sealed class HandbackConfigTests
{
    private const string Helpers = """
        interfaces: [{name: lan0}, {name: wan0}]
        nat: [{type: masquerade, out: wan0}]
        helpers: [{name: ftp, ports: [21]}, {name: tftp}]
        steering: {from: [lan0], to: [wan0], flows: helpers, nat-ports: 61000-65535}
        """;

    private const string All = """
        interfaces: [{name: lan0}, {name: lan1}, {name: wan0}]
        nat: [{type: masquerade, out: wan0}]
        helpers: [{name: ftp, ports: [21]}, {name: tftp}]
        steering: {from: [lan0, lan1], to: [wan0], flows: all, nat-ports: 61000-65535}
        """;

    [Fact]
    public void A_section_is_read_with_its_defaults_and_absent_means_off()
    {
        var h = ConfigLoader.Parse(Helpers + "\nhandback:\n  helpers: [ftp]\n").Handback!;
        Assert.Equal(["ftp"], h.Helpers);
        Assert.True(h.Enabled);
        Assert.Equal(0, h.AfterPackets);
        Assert.Equal(0, h.AfterBytes);

        var full = ConfigLoader.Parse(Helpers + "\nhandback:\n  helpers: [ftp, tftp]\n  after-packets: 10\n  after-bytes: 65536\n  enabled: false\n").Handback!;
        Assert.Equal(["ftp", "tftp"], full.Helpers);
        Assert.Equal(10, full.AfterPackets);
        Assert.Equal(65536, full.AfterBytes);
        Assert.False(full.Enabled);

        Assert.Null(ConfigLoader.Parse(Helpers).Handback);
    }

    [Theory]
    [InlineData("handback:\n  after-packets: 3\n", 6, "needs helpers:")]
    [InlineData("handback:\n  helpers: []\n", 6, "one or more helper names")]
    [InlineData("handback:\n  helpers: [ftp, ftp]\n", 6, "each once")]
    [InlineData("handback:\n  helpers: [sip]\n", 6, "names helper 'sip', which is not under helpers:")]
    [InlineData("handback:\n  helpers: [ftp]\n  after-packets: -1\n", 7, "'-1' is not a whole number from 0")]
    [InlineData("handback:\n  helpers: [ftp]\n  after: 3\n", 7, "unknown key 'after'")]
    public void A_bad_section_is_refused_at_its_line(string handback, int line, string problem)
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(Helpers + "\n" + handback, "h.yaml"));
        Assert.Equal(line, e.Line);
        Assert.Contains(problem, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void With_flows_all_handback_is_accepted_and_needs_a_steering_section()
    {
        var config = ConfigLoader.Parse(All + "\nhandback:\n  helpers: [ftp]\n", "h.yaml");
        Assert.True(config.Handback!.Enabled);
        Assert.Equal(SteeredFlows.All, config.Steering!.Flows);
        Assert.True(SteeringRules.HandsBack(config));

        // Without steering (a replay's configuration) there are no rules to take a flow out of offloadd's queues.
        string replay = All[..All.IndexOf("steering:", StringComparison.Ordinal)] + "handback:\n  helpers: [ftp]\n";
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(replay, "h.yaml"));
        Assert.Contains("handback needs a steering: section", e.Message, StringComparison.Ordinal);
        Assert.Equal(5, e.Line);

        // Switched off, it asks nothing of the steering.
        Assert.False(ConfigLoader.Parse(replay.Replace("  helpers: [ftp]", "  enabled: false\n  helpers: [ftp]", StringComparison.Ordinal)).Handback!.Enabled);
    }

    [Theory]
    [InlineData("shards: 2, ")]
    [InlineData("shards: 4, ")]
    public void With_flows_all_handback_and_several_shards_are_refused_with_why(string shards)
    {
        // Hand-back runs beside one engine (its entries, their destroy events, their NAT ports held): one shard for now.
        string yaml = All.Replace("flows: all, ", "flows: all, queue-pre: 0, queue-post: 8, " + shards, StringComparison.Ordinal) + "\nhandback:\n  helpers: [ftp]\n";
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(yaml, "h.yaml"));
        Assert.Contains("with hand-back (a handback: section, even switched off): that runs in one shard for now; use shards: 1 (or auto)", e.Message, StringComparison.Ordinal);
        Assert.Equal(4, e.Line);

        // Switched off too: a reload may switch it on, and cannot change the shards.
        Assert.Throws<ConfigException>(() => ConfigLoader.Parse(yaml.Replace("  helpers: [ftp]", "  enabled: false\n  helpers: [ftp]", StringComparison.Ordinal)));
    }

    [Fact]
    public void With_handback_auto_takes_one_shard_and_one_shard_is_accepted()
    {
        string wide = All.Replace("flows: all, ", "flows: all, queue-pre: 0, queue-post: 8, ", StringComparison.Ordinal);
        Assert.Equal(8, ShardCount.Effective(ConfigLoader.Parse(wide), 8));
        Assert.Equal(1, ShardCount.Effective(ConfigLoader.Parse(wide + "\nhandback:\n  helpers: [ftp]\n"), 8));
        Assert.Equal(1, ShardCount.Effective(ConfigLoader.Parse(wide.Replace("queue-post: 8, ", "queue-post: 8, shards: 1, ", StringComparison.Ordinal) + "\nhandback:\n  helpers: [ftp]\n"), 8));
    }

    [Fact]
    public void With_flows_all_the_handback_set_lets_both_directions_past_the_rules_that_untrack_and_queue_every_flow()
    {
        foreach (byte family in new byte[] { 4, 6 })
        {
            string[] lines = SteeringRulesTests.Lines(All + "\nhandback:\n  helpers: [ftp]\n", family);
            string set = family == 4 ? "offloadh4" : "offloadh6";

            // From outside (replies to offloadd's NAT port, an expected connection placed at the router, a routed reply):
            // destination, port, source; from the LAN: source, port, destination, on each from interface.
            int outside = Array.IndexOf(lines, $"-A OFFLOAD-PRE -m set --match-set {set} dst,dst,src -j RETURN");
            int lan = Array.IndexOf(lines, $"-A OFFLOAD-PRE -i lan0 -m set --match-set {set} src,src,dst -j RETURN");
            int lan2 = Array.IndexOf(lines, $"-A OFFLOAD-PRE -i lan1 -m set --match-set {set} src,src,dst -j RETURN");
            Assert.True(outside >= 0 && lan >= 0 && lan2 >= 0, $"IPv{family}: a hand-back rule is missing");

            // Ahead of every rule of OFFLOAD-PRE that untracks or queues (CT is not a verdict: a rule after it would be too late).
            int last = new[] { outside, lan, lan2 }.Max();
            var takers = lines.Select((l, i) => (l, i)).Where(p => p.l.StartsWith("-A OFFLOAD-PRE", StringComparison.Ordinal) &&
                (p.l.Contains("CT --notrack", StringComparison.Ordinal) || p.l.Contains("-j OFFLOAD-QPRE", StringComparison.Ordinal) || p.l.Contains("NFQUEUE", StringComparison.Ordinal))).ToList();
            Assert.NotEmpty(takers);
            Assert.All(takers, p => Assert.True(p.i > last, $"IPv{family}: '{p.l}' comes before the hand-back rules"));
            Assert.Contains(takers, p => p.l.StartsWith("-A OFFLOAD-PRE -i lan0 -p tcp ", StringComparison.Ordinal) && p.l.EndsWith("-j CT --notrack", StringComparison.Ordinal));
            Assert.Contains(takers, p => p.l.StartsWith("-A OFFLOAD-PRE -i wan0 -p tcp ", StringComparison.Ordinal) && p.l.EndsWith("-j OFFLOAD-QPRE", StringComparison.Ordinal));
            Assert.Contains(takers, p => p.l.Contains("--dport 61000:65535", StringComparison.Ordinal));

            // Tracked packets (the kernel's, the flows handed back) leave OFFLOAD-POST first; its queue rules take untracked ones only.
            int post = Array.FindIndex(lines, l => l.StartsWith("-A OFFLOAD-POST", StringComparison.Ordinal));
            Assert.Equal("-A OFFLOAD-POST -m conntrack ! --ctstate UNTRACKED -j RETURN", lines[post]);
            Assert.All(lines.Where(l => l.StartsWith("-A OFFLOAD-POST", StringComparison.Ordinal) && l.Contains("NFQUEUE", StringComparison.Ordinal)),
                l => Assert.Contains("--ctstate UNTRACKED", l, StringComparison.Ordinal));

            // Everything else is flows: all's own rules, unchanged.
            string[] without = SteeringRulesTests.Lines(All, family);
            Assert.Equal(without.Where(l => l.StartsWith("-A ", StringComparison.Ordinal)),
                lines.Where(l => l.StartsWith("-A ", StringComparison.Ordinal) && !l.Contains(set, StringComparison.Ordinal) && !l.Contains("! --ctstate UNTRACKED -j RETURN", StringComparison.Ordinal)));
        }

        // Switched off at start, no hand-back set and no rule; helpers mode keeps its one rule, from outside.
        Assert.DoesNotContain(SteeringRulesTests.Lines(All + "\nhandback:\n  enabled: false\n  helpers: [ftp]\n", 4), l => l.Contains("offloadh4", StringComparison.Ordinal));
        Assert.DoesNotContain(SteeringRulesTests.Lines(Helpers + "\nhandback:\n  helpers: [ftp]\n", 4), l => l.Contains("src,src,dst -j RETURN", StringComparison.Ordinal));
    }

    [Fact]
    public void The_handback_set_returns_packets_to_the_kernel_ahead_of_the_nat_replies_queue_rules()
    {
        foreach (byte family in new byte[] { 4, 6 })
        {
            string[] lines = SteeringRulesTests.Lines(Helpers + "\nhandback:\n  helpers: [ftp]\n", family);
            string set = family == 4 ? "offloadh4" : "offloadh6";
            string rule = $"-A OFFLOAD-PRE -m set --match-set {set} dst,dst,src -j RETURN";
            int handback = Array.IndexOf(lines, rule);
            Assert.True(handback >= 0, $"no hand-back rule for IPv{family}");
            int firstQueue = Array.FindIndex(lines, l => l.StartsWith("-A OFFLOAD-PRE", StringComparison.Ordinal) && l.Contains("OFFLOAD-QPRE", StringComparison.Ordinal));
            Assert.True(firstQueue < 0 || handback < firstQueue, "the hand-back rule must come before the first queue rule of OFFLOAD-PRE");
            Assert.True(handback < Array.FindIndex(lines, l => l.StartsWith("-A OFFLOAD-PRE", StringComparison.Ordinal) && l.Contains("CT --notrack", StringComparison.Ordinal)));
        }

        // Tracked packets leave OFFLOAD-POST first, whose every other rule queues untracked ones only.
        string[] four = SteeringRulesTests.Lines(Helpers + "\nhandback:\n  helpers: [ftp]\n", 4);
        int post = Array.FindIndex(four, l => l.StartsWith("-A OFFLOAD-POST", StringComparison.Ordinal));
        Assert.Equal("-A OFFLOAD-POST -m conntrack ! --ctstate UNTRACKED -j RETURN", four[post]);
        Assert.All(four.Skip(post + 1).Where(l => l.StartsWith("-A OFFLOAD-POST", StringComparison.Ordinal)), l => Assert.Contains("--ctstate UNTRACKED", l, StringComparison.Ordinal));

        // The LAN side's rules match the port and the set before the address lookup, the same rules otherwise.
        Assert.Contains("-A OFFLOAD-PRE -i lan0 -p tcp -m tcp --dport 21 -m addrtype ! --dst-type LOCAL,BROADCAST,MULTICAST -j CT --notrack", four);
        Assert.Contains("-A OFFLOAD-PRE -i lan0 -m set --match-set offload4 dst,dst,src -m addrtype ! --dst-type LOCAL,BROADCAST,MULTICAST -j CT --notrack", four);
        Assert.Contains("-A OFFLOAD-PRE -i lan0 -m set --match-set offload4 src,src,dst -m addrtype ! --dst-type LOCAL,BROADCAST,MULTICAST -j CT --notrack", four);
        Assert.Equal(SteeringRulesTests.Lines(Helpers, 4).Count(l => l.StartsWith("-A OFFLOAD-PRE -i lan0", StringComparison.Ordinal)), four.Count(l => l.StartsWith("-A OFFLOAD-PRE -i lan0", StringComparison.Ordinal)));

        Assert.DoesNotContain(SteeringRulesTests.Lines(Helpers, 4), l => l.Contains("offloadh4", StringComparison.Ordinal));
        Assert.DoesNotContain(SteeringRulesTests.Lines(Helpers + "\nhandback:\n  enabled: false\n  helpers: [ftp]\n", 4), l => l.Contains("offloadh4", StringComparison.Ordinal));
    }
}
