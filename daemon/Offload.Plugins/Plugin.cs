using System.Reflection;
using System.Runtime.Loader;

namespace Offload.Plugins;

/// <summary>
/// One loaded plugin file: its helpers and the collectible load context they live in. Unloading drops the helpers and
/// lets the runtime collect the context once nothing else refers to its code.
/// </summary>
public sealed class Plugin
{
    private PluginLoadContext? _context;

    internal Plugin(string path, string version, string contentHash, PluginLoadContext context, IReadOnlyList<ConntrackHelper> helpers)
    {
        Path = path;
        Version = version;
        ContentHash = contentHash;
        _context = context;
        Helpers = helpers;
    }

    /// <summary>The file it was loaded from (absolute).</summary>
    public string Path { get; }

    /// <summary>The assembly's version (a .dll), or "sha256:" and the start of the file's hash (a .cs).</summary>
    public string Version { get; }

    /// <summary>SHA-256 of the file's content when it was loaded (hex): a rescan reloads a file whose hash changed.</summary>
    public string ContentHash { get; }

    /// <summary>The helpers it holds (empty once unloaded).</summary>
    public IReadOnlyList<ConntrackHelper> Helpers { get; private set; }

    public bool IsLoaded => _context is not null;

    /// <summary>
    /// Drops the helpers and starts unloading the load context. The caller must first have removed every other
    /// reference to the helpers (engine bindings, connections, expectations). Returns a weak reference to the context,
    /// alive until the runtime has collected it.
    /// </summary>
    public WeakReference Unload()
    {
        var context = _context ?? throw new InvalidOperationException($"{Path} is already unloaded");
        var weak = new WeakReference(context, trackResurrection: true);
        Helpers = [];
        _context = null;
        context.Unload();
        return weak;
    }

    public override string ToString() => Path;
}

/// <summary>
/// A plugin's own, collectible load context. Everything the plugin references resolves in the daemon's context: the SDK
/// (so that its ConntrackHelper is the daemon's type) and the framework. A plugin brings no dependencies of its own.
/// </summary>
internal sealed class PluginLoadContext(string name) : AssemblyLoadContext(name, isCollectible: true)
{
    protected override Assembly? Load(AssemblyName assemblyName) => null;
}
