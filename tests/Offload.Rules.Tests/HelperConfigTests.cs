using Offload.Alg;
using Offload.Engine.Nat;
using Offload.Engine.Routing;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Rules.Tests;

/// <summary>
/// The <c>helpers:</c> entries: several protocols, options passed to the helper at load, and two helpers claiming the same
/// protocol and port refused with both named (the engine binds the first match, so the second would silently help nothing).
/// </summary>
public sealed class HelperConfigTests
{
    private static OffloadConfig Config(string helpers) => ConfigLoader.Parse($"""
        interfaces: [{"{"}name: lan0{"}"}, {"{"}name: wan0{"}"}]
        helpers: {helpers}
        """, "h.yaml");

    /// <summary>Takes one option, "greeting", and refuses others.</summary>
    private sealed class Greeter : ConntrackHelper
    {
        public Greeter() : base("greeter", new ExpectationPolicy(1, TimeSpan.FromSeconds(1))) => Ports = [4000];

        public string Greeting { get; private set; } = "hello";

        public override HelperVerdict Help(ref HelperContext context) => HelperVerdict.Accept;

        public override void Configure(IReadOnlyDictionary<string, string> options)
        {
            foreach (var key in options.Keys.Where(k => k != "greeting"))
            {
                throw new ArgumentException($"unknown option '{key}'");
            }

            Greeting = options.GetValueOrDefault("greeting", "hello");
        }
    }

    private static ConntrackHelper? Factory(HelperConfig entry, Greeter greeter) =>
        entry.Name == greeter.Name ? greeter : BuiltInHelpers.Create(entry.Name, entry.Loose);

    private static Engine.EngineOptions Build(OffloadConfig config, Greeter greeter) =>
        EngineBuilder.Build(config, new StaticNetworkInterfaces(), e => Factory(e, greeter));

    [Fact]
    public void Options_reach_the_helper_as_written()
    {
        var greeter = new Greeter();
        var config = Config("[{name: greeter, options: {greeting: bonjour}}]");
        Assert.Equal("bonjour", config.Helpers[0].Options["greeting"]);

        Build(config, greeter);

        Assert.Equal("bonjour", greeter.Greeting);
    }

    [Fact]
    public void Options_a_helper_refuses_fail_the_configuration_at_its_entry()
    {
        var e = Assert.Throws<ConfigException>(() => Build(Config("[{name: ftp}, {name: greeter, options: {colour: red}}]"), new Greeter()));
        Assert.Equal("h.yaml:2:1: helper 'greeter': unknown option 'colour'", e.Message);
    }

    [Fact]
    public void A_built_in_refuses_options_it_does_not_take()
    {
        var e = Assert.Throws<ConfigException>(() => Build(Config("[{name: ftp, options: {mode: x}}]"), new Greeter()));
        Assert.Equal("h.yaml:2:1: helper 'ftp': helper 'ftp' takes one option, loose (given: mode)", e.Message);
        e = Assert.Throws<ConfigException>(() => Build(Config("[{name: tftp, options: {loose: true}}]"), new Greeter()));
        Assert.Contains("helper 'tftp' takes no options (given: loose)", e.Message, StringComparison.Ordinal);
        Assert.Contains("'maybe' is not true or false", Assert.Throws<ConfigException>(() => Build(Config("[{name: irc, options: {loose: maybe}}]"), new Greeter())).Message, StringComparison.Ordinal);
    }

    /// <summary>IRC's loose switch, from the older loose: key or from options: (which wins): a DCC offer naming 1.2.3.4 is expected only when loose.</summary>
    [Theory]
    [InlineData("{name: irc}", 0)]
    [InlineData("{name: irc, loose: true}", 1)]
    [InlineData("{name: irc, options: {loose: true}}", 1)]
    [InlineData("{name: irc, loose: true, options: {loose: false}}", 0)]
    public void Loose_comes_from_the_old_switch_or_from_options(string entry, int expected)
    {
        var options = Build(Config($"[{entry}]"), new Greeter());
        var rig = new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }], options.Helpers);
        var syn = rig.PassOut(TcpPacket(Client, 40000, Server, 6667, Syn, seq: 1000));
        rig.PassIn(TcpPacket(Server, 6667, WanAddress, SourcePort(syn), Syn | Ack, seq: 5000, ack: 1001));
        rig.PassOut(TcpPacket(Client, 40000, Server, 6667, Ack, seq: 1001, ack: 5001));
        rig.PassOut(TcpPacket(Client, 40000, Server, 6667, Ack | Psh, seq: 1001, ack: 5001, payload: Ascii("PRIVMSG bob :\u0001DCC CHAT chat 16909060 5000\u0001\r\n")));

        Assert.Equal(expected, rig.Expectations.Count);
    }

    [Fact]
    public void An_option_must_be_one_value()
    {
        var e = Assert.Throws<ConfigException>(() => Config("[{name: greeter, options: {greeting: [a, b]}}]"));
        Assert.Contains("option 'greeting' needs a single value", e.Message, StringComparison.Ordinal);
        Assert.Contains("options: is a mapping", Assert.Throws<ConfigException>(() => Config("[{name: greeter, options: [a]}]")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_list_of_protocols_binds_each_port_for_each()
    {
        var options = Build(Config("[{name: greeter, protocol: [tcp, udp], ports: [4000, 4001]}]"), new Greeter());
        Assert.Equal(["6/4000", "6/4001", "17/4000", "17/4001"], options.Helpers.Select(b => $"{b.Protocol}/{b.Port}"));
        Assert.Contains("given twice", Assert.Throws<ConfigException>(() => Config("[{name: greeter, protocol: [tcp, tcp]}]")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Two_helpers_claiming_one_protocol_and_port_are_refused_with_both_named()
    {
        var e = Assert.Throws<ConfigException>(() => Build(Config("[{name: ftp}, {name: greeter, ports: [21]}]"), new Greeter()));
        Assert.Equal("h.yaml:2:1: helpers 'ftp' and 'greeter' both claim tcp/21: give one of them other ports:", e.Message);

        // The same port under another protocol is no clash.
        Assert.Equal(2, Build(Config("[{name: ftp}, {name: greeter, protocol: udp, ports: [21]}]"), new Greeter()).Helpers.Count);
    }
}
