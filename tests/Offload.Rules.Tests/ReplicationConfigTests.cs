using System.Net;
using Xunit;

namespace Offload.Rules.Tests;

/// <summary>What <c>offloadd --check</c> accepts in <c>replication:</c>, and where it points when it refuses it.</summary>
public sealed class ReplicationConfigTests
{
    private static string Config(string replication) => $"""
        interfaces: [{"{"}name: lan0{"}"}, {"{"}name: wan0{"}"}]
        replication:
        {replication}
        """;

    [Fact]
    public void A_full_section_is_read_with_its_defaults()
    {
        var r = ConfigLoader.Parse(Config("""
              listen: 10.99.0.1:3780
              peer: 10.99.0.2:3780
              key-file: /etc/offload/replication.key
              notify-fifo: /run/keepalived/offload.fifo
              vrrp: G1
            """)).Replication!;

        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.99.0.1"), 3780), r.Listen);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.99.0.2"), 3780), r.Peer);
        Assert.Equal("/etc/offload/replication.key", r.KeyFile);
        Assert.Equal("/run/keepalived/offload.fifo", r.NotifyFifo);
        Assert.Equal("G1", r.Vrrp);
        Assert.Equal(50, r.IntervalMilliseconds);
    }

    [Fact]
    public void An_ipv6_endpoint_is_written_in_brackets()
    {
        var r = ConfigLoader.Parse(Config("  listen: \"[fd00:99::1]:3780\"\n  peer: \"[fd00:99::2]:3781\"\n  key-file: /k")).Replication!;
        Assert.Equal(new IPEndPoint(IPAddress.Parse("fd00:99::2"), 3781), r.Peer);
    }

    [Theory]
    [InlineData("  listen: 10.99.0.1:3780\n  key-file: /k", 3, "needs listen:, peer: and key-file:")]
    [InlineData("  listen: 10.99.0.1\n  peer: 10.99.0.2:3780\n  key-file: /k", 3, "is not ADDRESS:PORT")]
    [InlineData("  listen: 10.99.0.1:3780\n  peer: 10.99.0.2:0\n  key-file: /k", 4, "is not ADDRESS:PORT")]
    [InlineData("  listen: 0.0.0.0:3780\n  peer: 10.99.0.2:3780\n  key-file: /k", 3, "not the wildcard")]
    [InlineData("  listen: 10.99.0.1:3780\n  peer: 10.99.0.1:3780\n  key-file: /k", 3, "own listen: address")]
    [InlineData("  listen: 10.99.0.1:3780\n  peer: \"[fd00::2]:3780\"\n  key-file: /k", 3, "one address family")]
    [InlineData("  listen: 10.99.0.1:3780\n  peer: 10.99.0.2:3780\n  key-file: replication.key", 5, "not an absolute path")]
    [InlineData("  listen: 10.99.0.1:3780\n  peer: 10.99.0.2:3780\n  key-file: /k\n  interval-ms: 5", 6, "from 10 to 1000")]
    [InlineData("  listen: 10.99.0.1:3780\n  peer: 10.99.0.2:3780\n  key-file: /k\n  secret: x", 6, "unknown key 'secret'")]
    public void A_bad_section_is_refused_at_its_line(string replication, int line, string problem)
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(Config(replication), "r.yaml"));
        Assert.Equal(line, e.Line);
        Assert.Contains(problem, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Masquerade_beside_replication_is_refused_at_its_rule_and_snat_to_the_vip_is_taken()
    {
        const string Section = "replication:\n  listen: 10.99.0.1:3780\n  peer: 10.99.0.2:3780\n  key-file: /k\n";
        const string Head = "interfaces: [{name: lan0}, {name: wan0}]\nnat:\n";

        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(Head + "  - type: masquerade\n    out: wan0\n" + Section, "r.yaml"));
        Assert.Equal(3, e.Line);
        Assert.Contains("masquerade with replication", e.Message, StringComparison.Ordinal);

        var config = ConfigLoader.Parse(Head + "  - type: snat\n    out: wan0\n    to: 198.51.100.1\n" + Section, "r.yaml");
        Assert.NotNull(config.Replication);
    }
}
