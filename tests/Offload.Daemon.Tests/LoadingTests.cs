using System.Runtime.CompilerServices;
using Offload.Plugins;
using Offload.Rules;
using Xunit;

namespace Offload.Daemon.Tests;

public sealed class LoadingTests
{
    [Fact]
    public void A_dll_plugin_loads_in_its_own_context_with_the_daemons_sdk()
    {
        using var rig = new PluginRig();
        string path = rig.WriteDll("announce.dll", PluginSources.Announce(assemblyVersion: "1.2.3.4"));

        Assert.True(PluginRig.Collected(LoadCheckAndUnload(path)));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference LoadCheckAndUnload(string path)
    {
        var plugin = PluginLoader.Load(path);

        var helper = Assert.Single(plugin.Helpers);
        Assert.Equal("announce", helper.Name);
        Assert.Equal("1.2.3.4", plugin.Version);
        // Not Assert.Equal on the list: xUnit would cache a comparer for its type, which is the plugin's, and keep it loaded.
        Assert.Equal((1, PluginSources.Port), (helper.Ports.Count, helper.Ports[0]));
        // The plugin's ConntrackHelper is the daemon's: its SDK was not loaded twice.
        Assert.Same(typeof(ConntrackHelper).Assembly, helper.GetType().BaseType!.Assembly);
        Assert.True(helper.GetType().Assembly.IsCollectible);
        Assert.True(ContainedHelperInvoker.IsContained(helper));
        return plugin.Unload();
    }

    [Fact]
    public void A_cs_plugin_is_compiled_and_known_by_its_hash()
    {
        using var rig = new PluginRig();
        string path = rig.Write("announce.cs", PluginSources.Announce());

        var plugin = PluginLoader.Load(path);

        Assert.Equal("announce", Assert.Single(plugin.Helpers).Name);
        Assert.Matches("^sha256:[0-9a-f]{12}$", plugin.Version);
        Assert.StartsWith(plugin.Version["sha256:".Length..], plugin.ContentHash, StringComparison.Ordinal);
        plugin.Unload();
    }

    [Fact]
    public void Compile_errors_are_reported_with_file_line_and_column()
    {
        using var rig = new PluginRig();
        string path = rig.Write("broken.cs", "public sealed class Broken : ConntrackHelper\n{\n    public Broken() : base(\"broken\", new ExpectationPolicy(1, TimeSpan.FromSeconds(1))) { }\n    public override HelperVerdict Help(ref HelperContext context) => HelperVerdict.Acept;\n}\n");

        var error = Assert.Throws<PluginException>(() => PluginLoader.Load(path));

        Assert.Contains($"{path}:4:", error.Message, StringComparison.Ordinal);
        Assert.Matches(@":4:\d+: CS0117: ", error.Message);
        Assert.Contains("Acept", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_file_without_a_helper_or_not_an_assembly_is_refused()
    {
        using var rig = new PluginRig();
        string none = rig.Write("none.cs", "public static class Nothing { }\n");
        string junk = rig.Write("junk.dll", "not an assembly");

        Assert.Contains("no helper in it", Assert.Throws<PluginException>(() => PluginLoader.Load(none)).Message, StringComparison.Ordinal);
        Assert.Contains("not a .NET assembly", Assert.Throws<PluginException>(() => PluginLoader.Load(junk)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_throwing_constructor_is_reported_and_a_looping_one_aborted()
    {
        using var rig = new PluginRig();
        string throwing = rig.Write("throwing.cs", "public sealed class T : ConntrackHelper\n{\n    public T() : base(\"t\", new ExpectationPolicy(1, TimeSpan.FromSeconds(1))) { throw new InvalidOperationException(\"no\"); }\n    public override HelperVerdict Help(ref HelperContext context) => HelperVerdict.Accept;\n}\n");
        string looping = rig.Write("looping.cs", "public sealed class L : ConntrackHelper\n{\n    public L() : base(\"l\", new ExpectationPolicy(1, TimeSpan.FromSeconds(1))) { while (true) { } }\n    public override HelperVerdict Help(ref HelperContext context) => HelperVerdict.Accept;\n}\n");

        Assert.Contains("constructor of T failed: InvalidOperationException: no", Assert.Throws<PluginException>(() => PluginLoader.Load(throwing)).Message, StringComparison.Ordinal);
        var started = System.Diagnostics.Stopwatch.StartNew();
        Assert.Contains("ran past", Assert.Throws<PluginException>(() => PluginLoader.Load(looping)).Message, StringComparison.Ordinal);
        Assert.InRange(started.Elapsed.TotalSeconds, 1.5, 10);
    }

    [Fact]
    public void A_helper_named_like_a_built_in_is_refused()
    {
        using var rig = new PluginRig();
        string path = rig.Write("ftp.cs", PluginSources.Announce(name: "ftp"));

        var error = Assert.Throws<PluginException>(() => rig.Manager.Load(path));

        Assert.Contains("clashes with the built-in helper", error.Message, StringComparison.Ordinal);
        Assert.Empty(rig.Catalog.Plugins);
        Assert.True(PluginRig.Collected(rig.Manager.Unloaded.Single()));
    }

    [Fact]
    public void A_helper_named_like_another_plugins_is_refused_naming_that_plugin()
    {
        using var rig = new PluginRig(setup: dir =>
        {
            File.WriteAllText(Path.Combine(dir, "a.cs"), PluginSources.Announce());
            File.WriteAllText(Path.Combine(dir, "b.cs"), PluginSources.Announce(version: "other"));
        });

        // At start the first (by file name) wins and the second is reported.
        Assert.Equal(Path.Combine(rig.Directory, "a.cs"), Assert.Single(rig.Catalog.Plugins).Path);
        var failure = Assert.Single(rig.Failures);
        Assert.Contains("b.cs: helper 'announce' clashes with the helper of that name in " + Path.Combine(rig.Directory, "a.cs"), failure, StringComparison.Ordinal);

        // By hand too.
        string c = rig.Write("c.cs", PluginSources.Announce(version: "third"));
        Assert.Contains("clashes", Assert.Throws<PluginException>(() => rig.Manager.Load(c)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_loaded_plugin_is_bound_at_its_own_ports_unless_the_configuration_names_it()
    {
        var config = ConfigLoader.Parse("helpers:\n  - name: announce\n    ports: [8888]\n", "test.yaml");
        using var named = new PluginRig(config: config, setup: dir => File.WriteAllText(Path.Combine(dir, "a.cs"), PluginSources.Announce()));
        using var unnamed = new PluginRig(setup: dir => File.WriteAllText(Path.Combine(dir, "a.cs"), PluginSources.Announce()));

        Assert.Contains("tcp/8888", named.Manager.List(), StringComparison.Ordinal);
        Assert.DoesNotContain("tcp/7777", named.Manager.List(), StringComparison.Ordinal);
        Assert.Contains("tcp/7777", unnamed.Manager.List(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_configuration_naming_a_helper_nobody_has_fails_with_its_line()
    {
        var config = ConfigLoader.Parse("helpers:\n  - name: ftp\n  - name: nosuch\n", "test.yaml");
        var error = Assert.Throws<ConfigException>(() => new PluginRig(config: config));
        Assert.StartsWith("test.yaml:3:", error.Message, StringComparison.Ordinal);
        Assert.Contains("unknown helper 'nosuch'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_plugins_key_takes_a_directory_or_a_mapping_with_budgets()
    {
        Assert.Equal("/srv/helpers", ConfigLoader.Parse("plugins: /srv/helpers\n").Plugins!.Directory);
        var mapped = ConfigLoader.Parse("plugins:\n  directory: /srv/h\n  call-budget-ms: 20\n  allocation-budget-mib: 4\n").Plugins!;
        Assert.Equal(("/srv/h", 20, 4), (mapped.Directory, mapped.CallBudgetMilliseconds, mapped.AllocationBudgetMiB));
        Assert.Null(ConfigLoader.Parse("helpers: []\n").Plugins);
        Assert.Equal(PluginsConfig.DefaultDirectory, HelperCatalog.DirectoryOf(ConfigLoader.Parse("helpers: []\n")));

        var relative = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("nat: []\nplugins: helpers.d\n", "c.yaml"));
        Assert.StartsWith("c.yaml:2:10: ", relative.Message, StringComparison.Ordinal);
        var unknown = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("plugins:\n  budget: 3\n", "c.yaml"));
        Assert.StartsWith("c.yaml:2:3: unknown key 'budget'", unknown.Message, StringComparison.Ordinal);
    }
}
