using System.Runtime.CompilerServices;
using Offload.Engine;
using Offload.Plugins;
using Xunit;

namespace Offload.Daemon.Tests;

public sealed class LifecycleTests
{
    [Fact]
    public void Load_binds_the_helper_and_it_helps_new_connections()
    {
        using var rig = new PluginRig();
        var c0 = rig.Connect();
        Assert.Null(rig.Find(c0)!.Value.Helper);

        string answer = rig.Manager.Answer("helper load " + rig.Write("announce.cs", PluginSources.Announce()));

        Assert.StartsWith("loaded announce from ", answer, StringComparison.Ordinal);
        var c = rig.Connect();
        Assert.Equal(Verdict.Accept, c.Say("PORT 4000\r\n"));
        Assert.Equal(1, rig.Expectations);
        Assert.Equal(["announce: v1 seen=1"], rig.Events.Lines);
        // A connection made before the load stays without a helper: bindings apply to new connections.
        Assert.Null(rig.Find(c0)!.Value.Helper);
        Assert.Matches(@"(?m)^announce\s+\S+announce\.cs\s+sha256:[0-9a-f]{12}\s+tcp/7777\s+1\s+enabled$", rig.Manager.List());
    }

    [Fact]
    public void Unload_detaches_connections_withdraws_their_expectations_and_unloads_the_code()
    {
        using var rig = new PluginRig(setup: dir => File.WriteAllText(Path.Combine(dir, "announce.cs"), PluginSources.Announce()));
        var c = UseHelper(rig);

        string answer = rig.Manager.Answer("helper unload announce");

        Assert.Equal("unloaded announce from " + Path.Combine(rig.Directory, "announce.cs") + " (" + VersionOf(answer) + "): 1 connections go on without a helper\n", answer);
        Assert.Null(rig.Find(c)!.Value.Helper);
        Assert.Equal(0, rig.Expectations);
        Assert.Empty(rig.Catalog.Plugins);
        Assert.True(PluginRig.Collected(rig.Manager.Unloaded.Single()), "the plugin's load context was not collected");

        // Plain tracking from here: packets pass, the helper is not called, new connections bind to nothing.
        Assert.Equal(Verdict.Accept, c.Say("PORT 4001\r\n"));
        Assert.Equal(Verdict.Accept, c.Answer("ok\r\n"));
        Assert.Equal(0, rig.Expectations);
        Assert.Single(rig.Events.Lines);
        Assert.Null(rig.Find(rig.Connect())!.Value.Helper);
        Assert.DoesNotContain("announce", rig.Manager.List(), StringComparison.Ordinal);
    }

    [Fact]
    public void Reload_moves_connections_to_the_new_version_with_fresh_state_and_keeps_expectations()
    {
        using var rig = new PluginRig(setup: dir => File.WriteAllText(Path.Combine(dir, "announce.cs"), PluginSources.Announce(version: "v1")));
        var c = UseHelper(rig);
        Assert.Equal(Verdict.Accept, c.Say("hello\r\n"));
        Assert.Equal(["announce: v1 seen=1", "announce: v1 seen=2"], rig.Events.Lines);
        var expectation = rig.Engine.Expectations.Entries().Single();

        rig.Write("announce.cs", PluginSources.Announce(version: "v2"));
        string answer = rig.Manager.Answer("helper reload announce");

        Assert.Contains(": 1 connections moved to the new version", answer, StringComparison.Ordinal);
        var helper = rig.Find(c)!.Value.Helper!;
        Assert.Same(rig.Catalog.Plugins.Single().Helpers.Single(), helper);
        Assert.Same(expectation, rig.Engine.Expectations.Entries().Single());
        Assert.True(PluginRig.Collected(rig.Manager.Unloaded.Single()), "the old version's load context was not collected");

        // The same connection, helped by the new code, which starts from fresh state.
        Assert.Equal(Verdict.Accept, c.Say("again\r\n"));
        Assert.Equal("announce: v2 seen=1", rig.Events.Lines[^1]);
        Assert.Equal(Verdict.Accept, c.Say("PORT 4002\r\n"));
        Assert.Equal(2, rig.Expectations);
    }

    [Fact]
    public void Reload_enables_a_disabled_helper_again_and_a_broken_file_keeps_the_running_version()
    {
        using var rig = new PluginRig(setup: dir => File.WriteAllText(Path.Combine(dir, "announce.cs"), PluginSources.Faulty("announce", "throw")));
        var c = rig.Connect();
        c.Say("x\r\n");
        Assert.Contains("disabled: InvalidOperationException", rig.Manager.List(), StringComparison.Ordinal);

        rig.Write("announce.cs", "this is not C#");
        Assert.StartsWith("error: " + Path.Combine(rig.Directory, "announce.cs") + ":1:", rig.Manager.Answer("helper reload announce"), StringComparison.Ordinal);
        Assert.Contains("disabled: InvalidOperationException", rig.Manager.List(), StringComparison.Ordinal);

        rig.Write("announce.cs", PluginSources.Announce(version: "fixed"));
        rig.Manager.Reload("announce");

        Assert.Contains(" enabled", rig.Manager.List(), StringComparison.Ordinal);
        Assert.Equal(Verdict.Accept, c.Say("PORT 4003\r\n"));
        Assert.Equal("announce: fixed seen=1", rig.Events.Lines[^1]);
        Assert.Equal(1, rig.Expectations);
    }

    [Fact]
    public void A_dll_plugin_reloads_from_a_new_build_of_its_file()
    {
        using var rig = new PluginRig();
        string path = rig.WriteDll("announce.dll", PluginSources.Announce(assemblyVersion: "1.0.0.0"));
        rig.Manager.Load(path);
        var c = UseHelper(rig);

        rig.WriteDll("announce.dll", PluginSources.Announce(version: "v2", assemblyVersion: "2.0.0.0"));
        Assert.Contains("(2.0.0.0): 1 connections moved", rig.Manager.Reload("announce"), StringComparison.Ordinal);
        Assert.Equal(Verdict.Accept, c.Say("again\r\n"));
        Assert.Equal("announce: v2 seen=1", rig.Events.Lines[^1]);
        Assert.True(PluginRig.Collected(rig.Manager.Unloaded.Single()));
    }

    [Fact]
    public void Rescan_loads_new_files_reloads_changed_ones_and_unloads_removed_ones()
    {
        using var rig = new PluginRig(setup: dir => File.WriteAllText(Path.Combine(dir, "a.cs"), PluginSources.Announce("a")));
        Assert.Empty(rig.Manager.Rescan());

        rig.Write("b.cs", PluginSources.Announce("b") .Replace("7777", "7778", StringComparison.Ordinal));
        rig.Write("a.cs", PluginSources.Announce("a", version: "v2"));
        rig.Write("bad.cs", "nope");
        var report = rig.Manager.Rescan();

        Assert.Contains(report, r => !r.Failed && r.Message.StartsWith("reloaded a from", StringComparison.Ordinal));
        Assert.Contains(report, r => !r.Failed && r.Message.StartsWith("loaded b from", StringComparison.Ordinal));
        Assert.Contains(report, r => r.Failed && r.Message.Contains("bad.cs:1:", StringComparison.Ordinal));
        Assert.Equal(["a", "b"], rig.Catalog.Plugins.SelectMany(p => p.Helpers).Select(h => h.Name).Order());

        File.Delete(Path.Combine(rig.Directory, "a.cs"));
        File.Delete(Path.Combine(rig.Directory, "bad.cs"));
        report = rig.Manager.Rescan();
        Assert.Equal([(false, "unloaded a from " + Path.Combine(rig.Directory, "a.cs"))], report.Select(r => (r.Failed, r.Message[..r.Message.IndexOf(" (", StringComparison.Ordinal)])));
        Assert.Equal("b", rig.Catalog.Plugins.Single().Helpers.Single().Name);
    }

    [Fact]
    public void Built_ins_cannot_be_unloaded_and_unknown_names_are_reported()
    {
        using var rig = new PluginRig();
        Assert.Equal("error: 'ftp' is a built-in helper: built-ins are not loaded, reloaded or unloaded\n", rig.Manager.Answer("helper unload ftp"));
        Assert.Equal("error: no plugin helper 'nosuch' is loaded\n", rig.Manager.Answer("helper reload nosuch"));
        Assert.StartsWith("error: relative.cs: give an absolute path", rig.Manager.Answer("helper load relative.cs"), StringComparison.Ordinal);
        Assert.Matches(@"(?m)^ftp\s+built-in\s+\S+\s+-\s+0\s+enabled$", rig.Manager.List());
    }

    /// <summary>A connection bound to the plugin, with helper state and one outstanding expectation.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static PluginRig.Conversation UseHelper(PluginRig rig)
    {
        var c = rig.Connect();
        Assert.Equal(Verdict.Accept, c.Say("PORT 4000\r\n"));
        Assert.Equal(1, rig.Expectations);
        Assert.Equal("announce", rig.Find(c)!.Value.Helper!.Name);
        return c;
    }

    private static string VersionOf(string answer) => answer[(answer.IndexOf(" (", StringComparison.Ordinal) + 2)..answer.IndexOf("):", StringComparison.Ordinal)];
}
