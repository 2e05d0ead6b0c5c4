using System.Globalization;
using System.Text;
using Offload.Alg;
using Offload.Engine;
using Offload.Engine.Helpers;
using Offload.Rules;

namespace Offload.Plugins;

/// <summary>
/// Loads, replaces and removes plugin helpers in a running engine (offloadctl helper load|unload|reload, and the
/// rescan of the plugin directory on reload), and lists the helpers.
/// </summary>
/// <remarks>
/// Compiling and loading happen outside the engine's lock; the switch itself (new bindings, connections and
/// expectations moved to the new instance or detached) happens under it, between two packets.
/// </remarks>
public sealed class HelperManager
{

    // One change at a time (the control socket and a reload signal may ask at once); taken before the engine's lock.
    private readonly object _changes = new();
    private readonly Func<EngineOptions> _rebuild;
    private IReadOnlyList<HelperBinding> _bindings = [];

    /// <param name="catalog">The helpers known by name.</param>
    /// <param name="engine">The running engine.</param>
    /// <param name="engineLock">The lock every use of the engine takes.</param>
    /// <param name="rebuild">Builds the engine options of the running configuration from the catalog as it is now (leaving out entries whose plugin is gone).</param>
    public HelperManager(HelperCatalog catalog, ConntrackEngine engine, object engineLock, Func<EngineOptions> rebuild)
        : this(catalog, [(engine, engineLock)], rebuild)
    {
    }

    /// <summary>A manager of the helpers of several engine shards, each behind its own lock; they share the helper objects.</summary>
    public HelperManager(HelperCatalog catalog, IReadOnlyList<(ConntrackEngine Engine, object Lock)> engines, Func<EngineOptions> rebuild)
    {
        ArgumentOutOfRangeException.ThrowIfZero(engines.Count);
        Catalog = catalog;
        Engine = engines[0].Engine;
        Engines = engines;
        _rebuild = rebuild;
        _bindings = [.. Engine.Options.Helpers];
        if (Engine.Options.Helpers is List<HelperBinding> initial)
        {
            // The engine copied its first bindings; the options it keeps would otherwise hold the first instances of
            // the plugins loaded at start for ever, and their load contexts could never be collected after an unload.
            initial.Clear();
        }
    }

    public HelperCatalog Catalog { get; }

    /// <summary>The first (or only) engine shard.</summary>
    public ConntrackEngine Engine { get; }

    /// <summary>Every engine shard, with its lock.</summary>
    public IReadOnlyList<(ConntrackEngine Engine, object Lock)> Engines { get; }

    /// <summary>Runs <paramref name="change"/> on each shard under that shard's lock (one lock at a time); returns the sum of what it returned.</summary>
    private int OnEveryShard(Func<ConntrackEngine, int> change)
    {
        int total = 0;
        foreach (var (engine, engineLock) in Engines)
        {
            lock (engineLock)
            {
                total += change(engine);
            }
        }

        return total;
    }

    /// <summary>Weak references to the load contexts of the last plugins unloaded or replaced (tests watch them go).</summary>
    public List<WeakReference> Unloaded { get; } = [];

    private void Forget(WeakReference context)
    {
        Unloaded.Add(context);
        if (Unloaded.Count > 16)
        {
            Unloaded.RemoveAt(0);
        }
    }

    /// <summary>Rebuilds the bindings from the configuration and the catalog and gives them to the engine.</summary>
    /// <param name="options">Options built already (a reload); null to build them now.</param>
    public void Rebind(EngineOptions? options = null)
    {
        lock (_changes)
        {
            options ??= _rebuild();
            OnEveryShard(engine =>
            {
                engine.Reconfigure(options.NatRules, options.Helpers);
                return 0;
            });
            _bindings = options.Helpers;
        }
    }

    /// <summary>Loads a plugin file and binds its helpers; returns what was loaded.</summary>
    public string Load(string path)
    {
        lock (_changes)
        {
            if (!Path.IsPathFullyQualified(path))
            {
                throw new PluginException($"{path}: give an absolute path");
            }

            var plugin = PluginLoader.Load(path, Catalog.Modes);
            try
            {
                Catalog.Add(plugin);
            }
            catch (PluginException)
            {
                Forget(plugin.Unload());
                throw;
            }

            try
            {
                Rebind();
            }
            catch (ConfigException e)
            {
                Catalog.Remove(plugin);
                Forget(plugin.Unload());
                throw new PluginException($"{path}: its helpers cannot be bound: {e.Problem}");
            }

            return $"loaded {Describe(plugin)}";
        }
    }

    /// <summary>
    /// Removes the plugin that holds a helper (by helper name or file path): its bindings go, its connections go on
    /// without a helper (their helper state dropped), the expectations they announced are withdrawn, and its code is
    /// unloaded.
    /// </summary>
    public string Unload(string nameOrPath)
    {
        lock (_changes)
        {
            var plugin = PluginOf(nameOrPath);
            Catalog.Remove(plugin);
            var options = _rebuild();
            int detached = OnEveryShard(engine =>
            {
                engine.Reconfigure(options.NatRules, options.Helpers);
                return plugin.Helpers.Sum(helper => engine.ReplaceHelper(helper, null));
            });
            _bindings = options.Helpers;

            string what = Describe(plugin);
            Forget(plugin.Unload());
            return $"unloaded {what}: {detached} connections go on without a helper";
        }
    }

    /// <summary>
    /// Re-reads the file of the plugin that holds a helper and puts the new helpers in the place of the old ones: tracked
    /// connections are helped by the new version with fresh state, outstanding expectations stay, a disabled helper
    /// comes back enabled. If the file no longer loads, the running version stays.
    /// </summary>
    public string Reload(string nameOrPath)
    {
        lock (_changes)
        {
            var old = PluginOf(nameOrPath);
            var fresh = PluginLoader.Load(old.Path, Catalog.Modes);
            return Replace(old, fresh);
        }
    }

    private string Replace(Plugin old, Plugin fresh)
    {
        try
        {
            Catalog.Add(fresh, replacing: old);
        }
        catch (PluginException)
        {
            Forget(fresh.Unload());
            throw;
        }

        EngineOptions options;
        try
        {
            options = _rebuild();
        }
        catch (ConfigException e)
        {
            // The new version cannot be bound (a port another helper has, options it refuses): the running one stays.
            Catalog.Add(old, replacing: fresh);
            Forget(fresh.Unload());
            throw new PluginException($"{fresh.Path}: its helpers cannot be bound: {e.Problem}; the running version stays");
        }

        int moved = 0, detached = 0;
        OnEveryShard(engine =>
        {
            engine.Reconfigure(options.NatRules, options.Helpers);
            foreach (var helper in old.Helpers)
            {
                var replacement = fresh.Helpers.FirstOrDefault(h => h.Name == helper.Name);
                int n = engine.ReplaceHelper(helper, replacement);
                if (replacement is null)
                {
                    detached += n;
                }
                else
                {
                    moved += n;
                }
            }

            return 0;
        });
        _bindings = options.Helpers;

        Forget(old.Unload());
        return $"reloaded {Describe(fresh)}: {moved} connections moved to the new version" + (detached > 0 ? $", {detached} detached (their helper is gone from the file)" : string.Empty);
    }

    /// <summary>
    /// Brings the loaded plugins in step with the plugin directory (on reload): new files are loaded, changed ones
    /// (by content) reloaded, removed ones unloaded. Plugins loaded from elsewhere with <see cref="Load"/> stay. A file
    /// that fails keeps its running version, if any. Does not rebind: the caller does, with the configuration it reloads.
    /// </summary>
    /// <returns>One line per change or failure, and whether it failed.</returns>
    public IReadOnlyList<(bool Failed, string Message)> Rescan()
    {
        lock (_changes)
        {
            var report = new List<(bool, string)>();
            var files = HelperCatalog.PluginFiles(Catalog.Directory);
            foreach (var plugin in Catalog.Plugins)
            {
                if (Catalog.Directory is { } dir && Path.GetDirectoryName(plugin.Path) == dir.TrimEnd('/') && !files.Contains(plugin.Path))
                {
                    Try(report, () => Unload(plugin.Path));
                }
            }

            foreach (var file in files)
            {
                var loaded = Catalog.FindByPath(file);
                if (loaded is null)
                {
                    Try(report, () => Load(file));
                }
                else if (Changed(loaded))
                {
                    Try(report, () => Reload(file));
                }
            }

            return report;
        }
    }

    /// <summary>
    /// Whether a loaded plugin's file changed. A file that can no longer be read, or no longer passes the strict
    /// modes, counts as changed: the reload that follows says why (and counts a refusal), and the running version stays.
    /// </summary>
    private bool Changed(Plugin plugin) =>
        !Catalog.Modes.TryRead(plugin.Path, out byte[] bytes)
        || Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)) != plugin.ContentHash;

    private static void Try(List<(bool, string)> report, Func<string> action)
    {
        try
        {
            report.Add((false, action()));
        }
        catch (PluginException e)
        {
            report.Add((true, e.Message));
        }
    }

    private Plugin PluginOf(string nameOrPath)
    {
        if (Catalog.FindByPath(nameOrPath) is { } byPath)
        {
            return byPath;
        }

        if (Catalog.Find(nameOrPath) is { } found)
        {
            return found.Plugin;
        }

        throw new PluginException(BuiltInHelpers.Names.Contains(nameOrPath)
            ? $"'{nameOrPath}' is a built-in helper: built-ins are not loaded, reloaded or unloaded"
            : $"no plugin helper '{nameOrPath}' is loaded");
    }

    private static string Describe(Plugin plugin) =>
        $"{string.Join(", ", plugin.Helpers.Select(h => h.Name))} from {plugin.Path} ({plugin.Version})";

    /// <summary>One line per helper: name, origin, version, ports bound, connections bound now, and state.</summary>
    public string List()
    {
        var rows = new List<string[]> { new[] { "NAME", "ORIGIN", "VERSION", "PORTS", "CONNECTIONS", "STATE" } };
        var counts = new Dictionary<ConntrackHelper, int>(ReferenceEqualityComparer.Instance);
        IReadOnlyList<HelperBinding> bindings = _bindings;
        OnEveryShard(engine =>
        {
            foreach (var connection in engine.Connections.Entries())
            {
                if (connection.Helper is { } helper)
                {
                    counts[helper] = counts.GetValueOrDefault(helper) + 1;
                }
            }

            return 0;
        });

        string builtInVersion = typeof(BuiltInHelpers).Assembly.GetName().Version?.ToString() ?? "?";
        foreach (var name in BuiltInHelpers.Names)
        {
            var bound = bindings.Where(b => b.Helper.Name == name).ToList();
            // Built-ins are made anew by each reload; connections keep the instance they were bound with.
            int connections = counts.Where(c => c.Key.Name == name && !ContainedHelperInvoker.IsContained(c.Key)).Sum(c => c.Value);
            rows.Add([name, "built-in", builtInVersion, Ports(bound), connections.ToString(CultureInfo.InvariantCulture), State(bound.Select(b => b.Helper))]);
        }

        foreach (var plugin in Catalog.Plugins)
        {
            foreach (var helper in plugin.Helpers)
            {
                var bound = bindings.Where(b => ReferenceEquals(b.Helper, helper)).ToList();
                rows.Add([helper.Name, plugin.Path, plugin.Version, Ports(bound), counts.GetValueOrDefault(helper).ToString(CultureInfo.InvariantCulture), State([helper])]);
            }
        }

        var widths = Enumerable.Range(0, 5).Select(i => rows.Max(r => r[i].Length)).ToArray();
        var text = new StringBuilder();
        foreach (var row in rows)
        {
            for (int i = 0; i < 5; i++)
            {
                text.Append(row[i].PadRight(widths[i])).Append("  ");
            }

            text.Append(row[5]).Append('\n');
        }

        return text.ToString();
    }

    private static string Ports(List<HelperBinding> bound) =>
        bound.Count == 0 ? "-" : string.Join(',', bound.Select(b => new HelperPort(b.Protocol, b.Port).ToString()).Distinct());

    private static string State(IEnumerable<ConntrackHelper> helpers) =>
        helpers.Select(ConntrackEngine.DisabledReason).FirstOrDefault(r => r is not null) is { } reason ? "disabled: " + reason : "enabled";

    /// <summary>
    /// Answers a control-socket request: <c>helper list</c>, <c>helper load PATH</c>, <c>helper unload NAME</c>,
    /// <c>helper reload NAME</c>. Failures come back as a line starting with "error: ".
    /// </summary>
    public string Answer(string request)
    {
        string[] words = request.Split(' ', 3, StringSplitOptions.RemoveEmptyEntries);
        try
        {
            return (words.Length > 1 ? words[1] : string.Empty, words.Length > 2 ? words[2] : null) switch
            {
                ("list", null) => List(),
                ("load", { } path) => Load(path) + "\n",
                ("unload", { } name) => Unload(name) + "\n",
                ("reload", { } name) => Reload(name) + "\n",
                _ => "error: expected helper list, helper load PATH, helper unload NAME or helper reload NAME\n",
            };
        }
        catch (PluginException e)
        {
            return "error: " + e.Message + "\n";
        }
    }
}
