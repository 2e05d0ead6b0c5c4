using Offload.Alg;
using Xunit;

namespace Offload.Rules.Tests;

/// <summary>
/// <c>steering.shards</c>: how many engine shards a configuration runs, what <c>--check</c> refuses because it could
/// not work live, and the rules that feed each shard its queues (a balance over the range, each NAT port slice to its
/// shard).
/// </summary>
public sealed class ShardConfigTests
{
    private static string Config(string steering, string helpers = "[{name: ftp, ports: [21]}]", string extra = "") => $$"""
        interfaces: [{name: lan0}, {name: wan0}]
        nat: [{type: masquerade, out: wan0}]
        helpers: {{helpers}}
        steering: {{steering}}
        {{extra}}
        """;

    [Theory]
    [InlineData("{from: [lan0], to: [wan0]}", 8, 1)] // queues 0 and 1: room for one, as before
    [InlineData("{from: [lan0], to: [wan0], queue-pre: 0, queue-post: 16}", 8, 8)]
    [InlineData("{from: [lan0], to: [wan0], queue-pre: 0, queue-post: 16}", 32, 16)]
    [InlineData("{from: [lan0], to: [wan0], queue-pre: 40, queue-post: 10}", 64, 30)]
    [InlineData("{from: [lan0], to: [wan0], queue-pre: 0, queue-post: 16, nat-ports: 61000-61063}", 8, 4)] // 16 ports each
    [InlineData("{from: [lan0], to: [wan0], queue-pre: 0, queue-post: 16, flows: helpers}", 8, 1)]
    [InlineData("{from: [lan0], to: [wan0], queue-pre: 0, queue-post: 16, shards: 3}", 8, 3)]
    public void Auto_takes_a_shard_per_processor_within_the_room_the_queues_and_ports_leave(string steering, int processors, int expected) =>
        Assert.Equal(expected, ShardCount.Effective(ConfigLoader.Parse(Config(steering)), processors));

    [Fact]
    public void The_pptp_helper_keeps_auto_at_one_shard() =>
        Assert.Equal(1, ShardCount.Effective(ConfigLoader.Parse(Config("{from: [lan0], to: [wan0], queue-pre: 0, queue-post: 16}", "[{name: pptp}]")), 8));

    [Theory]
    [InlineData("{from: [lan0], to: [wan0], shards: 2}", "they overlap")]
    [InlineData("{from: [lan0], to: [wan0], queue-pre: 0, queue-post: 4, shards: 8}", "they overlap")]
    [InlineData("{from: [lan0], to: [wan0], queue-pre: 65534, queue-post: 0, shards: 4}", "65535")]
    [InlineData("{from: [lan0], to: [wan0], queue-pre: 0, queue-post: 8, shards: 4, flows: helpers}", "helpers mode")]
    [InlineData("{from: [lan0], to: [wan0], queue-pre: 0, queue-post: 8, shards: 4, nat-ports: 61000-61050}", "fewer than 16 ports")]
    [InlineData("{from: [lan0], to: [wan0], queue-pre: 0, queue-post: 8, shards: 0}", "0")]
    [InlineData("{from: [lan0], to: [wan0], queue-pre: 0, queue-post: 80, shards: 65}", "65")]
    public void What_cannot_run_is_refused_with_why(string steering, string why)
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(Config(steering), "s.yaml"));
        Assert.StartsWith("s.yaml:", e.Message, StringComparison.Ordinal);
        Assert.Contains(why, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Shards_with_the_pptp_helper_are_refused()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(Config("{from: [lan0], to: [wan0], queue-pre: 0, queue-post: 8, shards: 2}", "[{name: pptp}]")));
        Assert.Contains("the pptp helper", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Each_shard_gets_its_queues_balanced_and_its_slice_of_the_nat_ports()
    {
        var config = ConfigLoader.Parse(Config("{from: [lan0], to: [wan0], queue-pre: 0, queue-post: 4, shards: 4, nat-ports: 61000-61399}"));
        var lines = SteeringRules.Render(config, 4, h => BuiltInHelpers.Create(h.Name, h.Loose)).Split('\n');

        Assert.Contains("-A OFFLOAD-QPRE -j NFQUEUE --queue-balance 0:3", lines);
        Assert.Contains(lines, l => l.StartsWith("-A OFFLOAD-POST -o wan0 -p tcp ", StringComparison.Ordinal) && l.EndsWith("-j NFQUEUE --queue-balance 4:7", StringComparison.Ordinal));
        for (int shard = 0; shard < 4; shard++)
        {
            string ports = $"{61000 + (shard * 100)}:{61099 + (shard * 100)}";
            string match = $"-A OFFLOAD-PRE -i wan0 -p tcp -m addrtype --dst-type LOCAL -m tcp --dport {ports}";
            int untrack = Array.IndexOf(lines, $"{match} -j CT --notrack");
            Assert.True(untrack >= 0, $"no untrack rule for {ports}");
            Assert.Equal($"{match} -j NFQUEUE --queue-num {shard}", lines[untrack + 1]);
            Assert.Contains(lines, l => l.Contains($"echo-reply -m u32 --u32 \"0>>22&0x3C@4>>16={ports}\" -j NFQUEUE --queue-num {shard}", StringComparison.Ordinal));
        }

        Assert.DoesNotContain(lines, l => l.Contains("--dport 61000:61399", StringComparison.Ordinal));
    }

    [Fact]
    public void One_shard_keeps_the_rules_as_they_were() =>
        Assert.Equal(
            SteeringRules.Render(ConfigLoader.Parse(Config("{from: [lan0], to: [wan0]}")), 4, h => BuiltInHelpers.Create(h.Name, h.Loose)),
            SteeringRules.Render(ConfigLoader.Parse(Config("{from: [lan0], to: [wan0], shards: 1}")), 4, h => BuiltInHelpers.Create(h.Name, h.Loose)));
}
