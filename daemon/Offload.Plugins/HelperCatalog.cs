using Offload.Alg;
using Offload.Rules;

namespace Offload.Plugins;

/// <summary>
/// The one place where a helper name is resolved: to a built-in (<see cref="BuiltInHelpers"/>) or to a helper of a
/// loaded plugin. offloadd's engine, its steering rules and offloadctl all resolve through it. Thread-safe.
/// </summary>
public sealed class HelperCatalog
{
    private readonly object _sync = new();
    private Plugin[] _plugins = [];

    /// <param name="directory">The plugin directory (null: none).</param>
    /// <param name="modes">Who may own a plugin file and its directories: <see cref="StrictModes.Default"/> unless given.</param>
    public HelperCatalog(string? directory = null, StrictModes? modes = null)
    {
        Directory = directory;
        Modes = modes ?? StrictModes.Default;
    }

    /// <summary>The check every plugin file of this catalog passes before it is read (and its count of refusals).</summary>
    public StrictModes Modes { get; }

    /// <summary>The plugin directory scanned at start and on reload; null when there is none.</summary>
    public string? Directory { get; }

    /// <summary>The loaded plugins, in load order.</summary>
    public IReadOnlyList<Plugin> Plugins => Volatile.Read(ref _plugins);

    /// <summary>Makes the helper a configuration entry names: a new built-in instance, or the plugin's one instance.</summary>
    public ConntrackHelper? Create(HelperConfig config) =>
        BuiltInHelpers.Create(config.Name, config.Loose) ?? Find(config.Name)?.Helper;

    /// <summary><see cref="Create"/> as the factory the engine builder and steering rules take.</summary>
    public EngineBuilder.HelperFactory Factory => Create;

    /// <summary>The plugin helper of a name, with its plugin; null when no loaded plugin has it.</summary>
    public (Plugin Plugin, ConntrackHelper Helper)? Find(string name)
    {
        foreach (var plugin in Plugins)
        {
            foreach (var helper in plugin.Helpers)
            {
                if (helper.Name == name)
                {
                    return (plugin, helper);
                }
            }
        }

        return null;
    }

    /// <summary>The plugin loaded from a path, or null.</summary>
    public Plugin? FindByPath(string path) => Plugins.FirstOrDefault(p => p.Path == path);

    /// <summary>Where a helper comes from, for listings and log lines: "built-in" or its plugin's path.</summary>
    public string OriginOf(ConntrackHelper helper)
    {
        foreach (var plugin in Plugins)
        {
            if (plugin.Helpers.Contains(helper))
            {
                return plugin.Path;
            }
        }

        return ContainedHelperInvoker.IsContained(helper) ? "unknown" : "built-in";
    }

    /// <summary>
    /// The configuration as the engine runs it: the plugins' helpers that no <c>helpers:</c> entry names are added at
    /// their own ports and protocol (a plugin without ports of its own is loaded but bound nowhere until an entry names it).
    /// </summary>
    /// <param name="config">The configuration read from the file.</param>
    /// <param name="dropUnknown">
    /// Leave out the entries whose helper is neither built-in nor loaded (after a plugin was unloaded) instead of keeping
    /// them, which makes the engine builder report them with their line (at start and on reload).
    /// </param>
    public OffloadConfig Effective(OffloadConfig config, bool dropUnknown)
    {
        var named = new HashSet<string>(config.Helpers.Select(h => h.Name), StringComparer.Ordinal);
        var helpers = dropUnknown
            ? config.Helpers.Where(h => BuiltInHelpers.Names.Contains(h.Name) || Find(h.Name) is not null).ToList()
            : [.. config.Helpers];
        foreach (var plugin in Plugins)
        {
            foreach (var helper in plugin.Helpers)
            {
                if (!named.Contains(helper.Name) && helper.Ports.Count > 0)
                {
                    helpers.Add(new HelperConfig(helper.Name, 0, [], false, 0));
                }
            }
        }

        return config with { Helpers = helpers };
    }

    /// <summary>
    /// Leaves out (unloads and reports, as a file that fails to load) each plugin whose helpers, bound at their own ports
    /// because no entry of <paramref name="config"/> names them, claim a protocol and port that an entry or an earlier
    /// plugin already claims. At start, so that one file dropped into the plugin directory cannot stop the daemon: the
    /// engine builder refuses such a clash outright.
    /// </summary>
    public void LeaveOutClashes(OffloadConfig config, Action<PluginException> failed)
    {
        var named = config.Helpers.Select(h => h.Name).ToHashSet(StringComparer.Ordinal);
        var claimed = new Dictionary<HelperPort, string>();
        foreach (var entry in config.Helpers)
        {
            if (Create(entry) is { } helper)
            {
                foreach (var port in entry.ProtocolsOf(helper).SelectMany(protocol => entry.PortsOf(helper).Select(p => new HelperPort(protocol, p))))
                {
                    claimed.TryAdd(port, helper.Name);
                }
            }
        }

        foreach (var plugin in Plugins)
        {
            var own = plugin.Helpers.Where(h => !named.Contains(h.Name))
                .SelectMany(h => h.Protocols.SelectMany(protocol => h.Ports.Select(p => (Port: new HelperPort(protocol, p), h.Name)))).ToList();
            if (own.FirstOrDefault(c => claimed.TryGetValue(c.Port, out string? other) && other != c.Name) is { Name: not null } clash)
            {
                Remove(plugin);
                plugin.Unload();
                failed(new PluginException($"{plugin.Path}: helper '{clash.Name}' claims {clash.Port}, which helper '{claimed[clash.Port]}' has; not loaded"));
                continue;
            }

            foreach (var (port, name) in own)
            {
                claimed.TryAdd(port, name);
            }
        }
    }

    /// <summary>
    /// Adds a loaded plugin, or puts it in the place of one it replaces. Refused (with the clash named) when one of its
    /// helper names is a built-in's or another plugin's, or when its file is already loaded.
    /// </summary>
    public void Add(Plugin plugin, Plugin? replacing = null)
    {
        lock (_sync)
        {
            foreach (var other in _plugins)
            {
                if (ReferenceEquals(other, replacing))
                {
                    continue;
                }

                if (other.Path == plugin.Path)
                {
                    throw new PluginException($"{plugin.Path}: already loaded (reload it instead)");
                }

                foreach (var helper in plugin.Helpers)
                {
                    if (other.Helpers.Any(h => h.Name == helper.Name))
                    {
                        throw new PluginException($"{plugin.Path}: helper '{helper.Name}' clashes with the helper of that name in {other.Path}; not loaded");
                    }
                }
            }

            foreach (var helper in plugin.Helpers)
            {
                if (BuiltInHelpers.Names.Contains(helper.Name))
                {
                    throw new PluginException($"{plugin.Path}: helper '{helper.Name}' clashes with the built-in helper of that name; not loaded");
                }
            }

            var list = _plugins.ToList();
            int at = replacing is null ? -1 : list.IndexOf(replacing);
            if (at >= 0)
            {
                list[at] = plugin;
            }
            else
            {
                list.Add(plugin);
            }

            Volatile.Write(ref _plugins, [.. list]);
        }
    }

    /// <summary>Removes a plugin (it stays loaded until its owner unloads it).</summary>
    public void Remove(Plugin plugin)
    {
        lock (_sync)
        {
            Volatile.Write(ref _plugins, [.. _plugins.Where(p => !ReferenceEquals(p, plugin))]);
        }
    }

    /// <summary>The plugin directory of a configuration: its <c>plugins:</c>, or <see cref="PluginsConfig.DefaultDirectory"/>.</summary>
    public static string DirectoryOf(OffloadConfig config) => config.Plugins?.Directory ?? PluginsConfig.DefaultDirectory;

    /// <summary>The plugin files of a directory, in name order (none when it does not exist).</summary>
    public static IReadOnlyList<string> PluginFiles(string? directory) =>
        directory is not null && System.IO.Directory.Exists(directory)
            ? [.. System.IO.Directory.EnumerateFiles(directory).Where(PluginLoader.IsPluginFile).Order(StringComparer.Ordinal)]
            : [];

    /// <summary>
    /// Loads every plugin of the directory into a new catalog (what offloadd does at start, and offloadctl to resolve
    /// names). A file that fails, or that <paramref name="modes"/> refuse, is reported to <paramref name="failed"/> and skipped.
    /// </summary>
    public static HelperCatalog Load(string? directory, Action<PluginException> failed, StrictModes? modes = null)
    {
        var catalog = new HelperCatalog(directory, modes);
        foreach (var file in PluginFiles(directory))
        {
            try
            {
                var plugin = PluginLoader.Load(file, catalog.Modes);
                try
                {
                    catalog.Add(plugin);
                }
                catch (PluginException)
                {
                    plugin.Unload();
                    throw;
                }
            }
            catch (PluginException e)
            {
                failed(e);
            }
        }

        return catalog;
    }
}
