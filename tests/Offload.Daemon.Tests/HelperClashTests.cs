using Offload.Plugins;
using Offload.Rules;
using Xunit;

namespace Offload.Daemon.Tests;

/// <summary>
/// Two helpers claiming the same protocol and port: the second is refused when it is loaded, with both named, and the
/// first keeps its port (the engine would bind the first match, and the second would help nothing while listed as
/// enabled). The listing shows each helper's protocols and ports.
/// </summary>
/// <remarks>Alone: they compile plugins, whose CPU would push other classes' call budgets over.</remarks>
[Collection(AloneCollection.Name)]
public sealed class HelperClashTests
{
    [Fact]
    public void A_plugin_claiming_a_port_another_helper_has_is_refused_with_both_named()
    {
        using var rig = new PluginRig();
        rig.Manager.Load(rig.Write("announce.cs", PluginSources.Announce()));

        string second = rig.Write("other.cs", PluginSources.Announce(name: "other"));
        var error = Assert.Throws<PluginException>(() => rig.Manager.Load(second));

        Assert.Equal($"{second}: its helpers cannot be bound: helpers 'announce' and 'other' both claim tcp/{PluginSources.Port}: give one of them other ports:", error.Message);
        Assert.Null(rig.Catalog.Find("other"));
        string list = rig.Manager.List();
        Assert.Contains($"tcp/{PluginSources.Port}", list, StringComparison.Ordinal);
        Assert.DoesNotContain("other", list, StringComparison.Ordinal);
    }

    [Fact]
    public void A_reload_that_would_claim_a_taken_port_is_refused_and_the_running_version_stays()
    {
        using var rig = new PluginRig();
        rig.Manager.Load(rig.Write("announce.cs", PluginSources.Announce()));
        string other = rig.Write("other.cs", PluginSources.Announce(name: "other").Replace($"Ports = [{PluginSources.Port}];", "Ports = [7001];", StringComparison.Ordinal));
        rig.Manager.Load(other);
        var running = rig.Catalog.Find("other")!.Value.Helper;

        File.WriteAllText(other, PluginSources.Announce(name: "other"));
        var error = Assert.Throws<PluginException>(() => rig.Manager.Reload("other"));

        Assert.Equal($"{other}: its helpers cannot be bound: helpers 'announce' and 'other' both claim tcp/{PluginSources.Port}: give one of them other ports:; the running version stays", error.Message);
        Assert.Same(running, rig.Catalog.Find("other")!.Value.Helper);
        Assert.Equal("tcp/7001", Assert.Single(running.BoundPorts).ToString());
    }

    [Fact]
    public void A_helper_serving_tcp_and_udp_is_listed_with_both()
    {
        using var rig = new PluginRig();
        string source = PluginSources.Announce().Replace($"Ports = [{PluginSources.Port}];", $"Ports = [{PluginSources.Port}, 7778]; Protocols = [IpProtocol.Tcp, IpProtocol.Udp];", StringComparison.Ordinal);
        rig.Manager.Load(rig.Write("both.cs", source));

        var row = rig.Manager.List().Split('\n').Single(l => l.StartsWith("announce", StringComparison.Ordinal));
        Assert.Contains($"tcp/{PluginSources.Port},tcp/7778,udp/{PluginSources.Port},udp/7778", row, StringComparison.Ordinal);
    }

    [Fact]
    public void At_start_a_plugin_claiming_a_configured_helpers_port_is_left_out_and_the_others_load()
    {
        var config = ConfigLoader.Parse("helpers: [{name: ftp}]", "start.yaml");
        string directory = CleanDirectory.Create("clash-");
        try
        {
            File.WriteAllText(Path.Combine(directory, "a.cs"), PluginSources.Announce().Replace($"Ports = [{PluginSources.Port}];", "Ports = [21];", StringComparison.Ordinal));
            File.WriteAllText(Path.Combine(directory, "b.cs"), PluginSources.Announce(name: "other"));
            var failures = new List<string>();
            var catalog = HelperCatalog.Load(directory, e => failures.Add(e.Message));
            Assert.Equal(2, catalog.Plugins.Count);

            catalog.LeaveOutClashes(config, e => failures.Add(e.Message));

            Assert.Equal([$"{Path.Combine(directory, "a.cs")}: helper 'announce' claims tcp/21, which helper 'ftp' has; not loaded"], failures);
            Assert.Equal("other", Assert.Single(catalog.Plugins).Helpers[0].Name);
            // What is left builds: the daemon starts.
            EngineBuilder.Build(catalog.Effective(config, dropUnknown: false), new Offload.Engine.Routing.StaticNetworkInterfaces(), catalog.Factory);
        }
        finally
        {
            CleanDirectory.Delete(directory);
        }
    }
}
