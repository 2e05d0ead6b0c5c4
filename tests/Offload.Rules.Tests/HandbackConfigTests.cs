using Xunit;

namespace Offload.Rules.Tests;

/// <summary>
/// What <c>offloadd --check</c> accepts in <c>handback:</c> and where it points when it refuses it; and the rule the
/// hand-back set gets: first in OFFLOAD-PRE, ahead of the rules that queue replies to offloadd's NAT ports, in helpers
/// mode with hand-back on only.
/// </summary>
public sealed class HandbackConfigTests
{
    private const string Helpers = """
        interfaces: [{name: lan0}, {name: wan0}]
        nat: [{type: masquerade, out: wan0}]
        helpers: [{name: ftp, ports: [21]}, {name: tftp}]
        steering: {from: [lan0], to: [wan0], flows: helpers, nat-ports: 61000-65535}
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
    public void With_flows_all_handback_is_refused_not_accepted_and_ignored()
    {
        string all = Helpers.Replace("flows: helpers, ", string.Empty, StringComparison.Ordinal) + "\nhandback:\n  helpers: [ftp]\n";
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(all, "h.yaml"));
        Assert.Contains("handback needs steering: with flows: helpers", e.Message, StringComparison.Ordinal);
        Assert.Equal(6, e.Line);

        // Switched off, it asks nothing of the steering.
        Assert.False(ConfigLoader.Parse(all.Replace("  helpers: [ftp]", "  enabled: false\n  helpers: [ftp]", StringComparison.Ordinal)).Handback!.Enabled);
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
