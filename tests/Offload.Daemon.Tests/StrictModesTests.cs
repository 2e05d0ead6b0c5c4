using System.Diagnostics;
using Offload.Interop.Posix;
using Offload.Plugins;
using Xunit;

namespace Offload.Daemon.Tests;

/// <summary>
/// Strict modes for plugin files, on real files and modes: a plugin, and every directory from it up to /, must be
/// owned by root (or the daemon's user) and writable by no one else, or it is refused, counted, with the path, the
/// owner and the mode in the message. Ownership by another user is made with chown when the tests run as root, and
/// with a set of trusted owners that leaves out the test's own user otherwise.
/// </summary>
[Collection(AloneCollection.Name)]
public sealed class StrictModesTests : IDisposable
{
    private const UnixFileMode Mode0644 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
    private const UnixFileMode Mode0755 = Mode0644 | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;

    private readonly string _directory = CleanDirectory.Create("strict-");

    public void Dispose() => CleanDirectory.Delete(_directory);

    private static bool Root => PosixFiles.EffectiveUserId == 0;

    private string Write(string relative, UnixFileMode mode = Mode0644)
    {
        string path = Path.Combine(_directory, relative);
        // Each directory made 0755 whatever the umask: only the one a test loosens is to blame.
        for (string? d = Path.GetDirectoryName(relative); !string.IsNullOrEmpty(d); d = Path.GetDirectoryName(d))
        {
            MakeDirectory(d, Mode0755);
        }

        File.WriteAllText(path, PluginSources.Announce());
        File.SetUnixFileMode(path, mode);
        return path;
    }

    private string MakeDirectory(string relative, UnixFileMode mode)
    {
        string path = Path.Combine(_directory, relative);
        Directory.CreateDirectory(path);
        File.SetUnixFileMode(path, mode);
        return path;
    }

    /// <summary>The production rule as root; as another user, a rule that trusts root only (so our files are another user's).</summary>
    private static StrictModes GivenToAnotherUser(string path)
    {
        if (!Root)
        {
            return new StrictModes([0]);
        }

        using var chown = Process.Start("chown", ["65534", path])!;
        chown.WaitForExit();
        Assert.Equal(0, chown.ExitCode);
        return new StrictModes([0, PosixFiles.EffectiveUserId]);
    }

    [Fact]
    public void A_clean_plugin_is_read_from_the_descriptor_that_was_checked_and_loads()
    {
        var modes = new StrictModes([0, PosixFiles.EffectiveUserId]);
        string path = Write("clean/announce.cs");

        var plugin = PluginLoader.Load(path, modes);

        Assert.Equal("announce", Assert.Single(plugin.Helpers).Name);
        Assert.Equal(0, modes.Refusals);
        plugin.Unload();
    }

    [Theory]
    [InlineData(UnixFileMode.GroupWrite, "group")]
    [InlineData(UnixFileMode.OtherWrite, "others")]
    [InlineData(UnixFileMode.GroupWrite | UnixFileMode.OtherWrite, "group and others")]
    public void A_plugin_writable_by_group_or_others_is_refused_naming_the_file_and_its_mode(UnixFileMode extra, string who)
    {
        var modes = new StrictModes([0, PosixFiles.EffectiveUserId]);
        string path = Write("announce.cs", Mode0644 | extra);

        var error = Assert.Throws<PluginRefusedException>(() => PluginLoader.Load(path, modes));

        Assert.StartsWith($"{path}: refused (strict modes): the file is writable by {who} (owner uid {PosixFiles.EffectiveUserId}, mode 0{Convert.ToString((int)(Mode0644 | extra), 8)})", error.Message, StringComparison.Ordinal);
        Assert.Equal(path, error.Offender);
        Assert.Equal(1, modes.Refusals);
    }

    [Theory]
    [InlineData(UnixFileMode.GroupWrite, "group", "0775")]
    [InlineData(UnixFileMode.OtherWrite, "others", "0757")]
    [InlineData(UnixFileMode.GroupWrite | UnixFileMode.OtherWrite | UnixFileMode.StickyBit, "group and others", "1777")]
    public void A_directory_above_the_plugin_writable_by_group_or_others_is_refused_even_sticky_like_tmp(UnixFileMode extra, string who, string octal)
    {
        var modes = new StrictModes([0, PosixFiles.EffectiveUserId]);
        string path = Write("open/inner/announce.cs");
        string open = MakeDirectory("open", Mode0755 | extra);

        var error = Assert.Throws<PluginRefusedException>(() => PluginLoader.Load(path, modes));

        Assert.StartsWith($"{path}: refused (strict modes): {open} is writable by {who} (owner uid {PosixFiles.EffectiveUserId}, mode {octal})", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, modes.Refusals);
    }

    [Fact]
    public void A_plugin_under_tmp_is_refused_because_tmp_is_world_writable()
    {
        string directory = Directory.CreateTempSubdirectory("offload-strict-").FullName;
        try
        {
            string path = Path.Combine(directory, "announce.cs");
            File.WriteAllText(path, PluginSources.Announce());
            File.SetUnixFileMode(path, Mode0644);

            var error = Assert.Throws<PluginRefusedException>(() => PluginLoader.Load(path));

            Assert.Equal(Path.GetDirectoryName(PosixFiles.RealPath(directory)), error.Offender);
            Assert.Contains("is writable by group and others", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void A_plugin_owned_by_another_user_is_refused_naming_the_owner()
    {
        string path = Write("announce.cs");
        var modes = GivenToAnotherUser(path);
        uint owner = PosixFiles.LinkStatus(path).Owner;

        var error = Assert.Throws<PluginRefusedException>(() => PluginLoader.Load(path, modes));

        Assert.Contains($"the file is owned by uid {owner}, not root", error.Message, StringComparison.Ordinal);
        Assert.Equal(owner, error.Owner);
        Assert.Equal(1, modes.Refusals);
    }

    [Fact]
    public void A_directory_above_the_plugin_owned_by_another_user_is_refused()
    {
        string path = Write("theirs/announce.cs");
        string theirs = Path.Combine(_directory, "theirs");
        var modes = GivenToAnotherUser(theirs);
        if (!Root)
        {
            // Everything of ours is another user's to this rule: the file, met first, is named.
            Assert.Contains("the file is owned by uid", Assert.Throws<PluginRefusedException>(() => PluginLoader.Load(path, modes)).Message, StringComparison.Ordinal);
            return;
        }

        var error = Assert.Throws<PluginRefusedException>(() => PluginLoader.Load(path, modes));

        Assert.StartsWith($"{path}: refused (strict modes): {theirs} is owned by uid 65534, not root (owner uid 65534, mode 0755)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_daemons_own_user_is_trusted_besides_root()
    {
        string path = Write("announce.cs");

        Assert.Contains(0u, StrictModes.Default.TrustedOwners);
        Assert.Contains(PosixFiles.EffectiveUserId, StrictModes.Default.TrustedOwners);
        Assert.Equal(File.ReadAllBytes(path), new StrictModes([PosixFiles.EffectiveUserId, 0]).Read(path));
    }

    [Fact]
    public void A_symbolic_link_is_followed_and_where_it_leads_is_checked()
    {
        var modes = new StrictModes([0, PosixFiles.EffectiveUserId]);
        string clean = Write("lib/announce.cs");
        string loose = Write("loose/announce.cs");
        string looseDirectory = MakeDirectory("loose", Mode0755 | UnixFileMode.OtherWrite);
        string plugins = MakeDirectory("helpers.d", Mode0755);
        string good = Path.Combine(plugins, "good.cs");
        string bad = Path.Combine(plugins, "bad.cs");
        File.CreateSymbolicLink(good, clean);
        File.CreateSymbolicLink(bad, loose);

        Assert.Equal(File.ReadAllBytes(clean), modes.Read(good));
        var error = Assert.Throws<PluginRefusedException>(() => modes.Read(bad));
        Assert.StartsWith($"{bad}: refused (strict modes): {looseDirectory} is writable by others", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_fifo_named_like_a_plugin_is_refused_without_waiting_for_a_writer()
    {
        string fifo = Path.Combine(_directory, "fifo.cs");
        using (var mkfifo = Process.Start("mkfifo", ["-m", "0644", fifo])!)
        {
            mkfifo.WaitForExit();
            Assert.Equal(0, mkfifo.ExitCode);
        }

        var started = Stopwatch.StartNew();
        var error = Assert.Throws<PluginRefusedException>(() => PluginLoader.Load(fifo));

        Assert.Contains("the file is not a regular file", error.Message, StringComparison.Ordinal);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void A_refused_file_is_left_out_at_start_and_refused_by_hand_and_each_refusal_counts()
    {
        var modes = new StrictModes([0, PosixFiles.EffectiveUserId]);
        using var rig = new PluginRig(modes: modes, setup: dir =>
        {
            File.WriteAllText(Path.Combine(dir, "a.cs"), PluginSources.Announce("a"));
            File.WriteAllText(Path.Combine(dir, "loose.cs"), PluginSources.Announce("loose").Replace("7777", "7778", StringComparison.Ordinal));
            File.SetUnixFileMode(Path.Combine(dir, "loose.cs"), Mode0644 | UnixFileMode.OtherWrite);
        });

        Assert.Equal("a", Assert.Single(rig.Catalog.Plugins).Helpers.Single().Name);
        Assert.Contains("loose.cs: refused (strict modes): the file is writable by others", Assert.Single(rig.Failures), StringComparison.Ordinal);

        string answer = rig.Manager.Answer("helper load " + Path.Combine(rig.Directory, "loose.cs"));

        Assert.StartsWith("error: " + Path.Combine(rig.Directory, "loose.cs") + ": refused (strict modes): ", answer, StringComparison.Ordinal);
        Assert.Equal(2, modes.Refusals);
        Assert.DoesNotContain("loose", rig.Manager.List(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_loaded_plugin_whose_file_became_writable_by_others_keeps_running_and_the_rescan_reports_it()
    {
        var modes = new StrictModes([0, PosixFiles.EffectiveUserId]);
        using var rig = new PluginRig(modes: modes, setup: dir => File.WriteAllText(Path.Combine(dir, "a.cs"), PluginSources.Announce("a")));
        string path = Path.Combine(rig.Directory, "a.cs");
        File.SetUnixFileMode(path, Mode0644 | UnixFileMode.OtherWrite);

        var report = rig.Manager.Rescan();
        Assert.Throws<PluginRefusedException>(() => rig.Manager.Reload("a"));

        var (failed, message) = Assert.Single(report);
        Assert.True(failed);
        Assert.StartsWith(path + ": refused (strict modes): the file is writable by others", message, StringComparison.Ordinal);
        Assert.Equal("a", Assert.Single(rig.Catalog.Plugins).Helpers.Single().Name);
        Assert.Equal(2, modes.Refusals);
    }
}
