using Microsoft.Extensions.Logging;
using Offload.Plugins;
using Offload.Rules;

namespace Offload.Daemon.Plugins;

/// <summary>The daemon's side of plugins: where they are, their budgets, and the log lines of loading them.</summary>
internal static class PluginSetup
{
    /// <summary>The plugin directory of a configuration (the default when it has no <c>plugins:</c>).</summary>
    public static string Directory(OffloadConfig config) => HelperCatalog.DirectoryOf(config);

    /// <summary>Loads the plugin directory; a plugin that fails is logged and left out, the others load.</summary>
    public static HelperCatalog LoadCatalog(OffloadConfig config, ILogger logger)
    {
        var catalog = HelperCatalog.Load(Directory(config), e => Log.PluginFailed(logger, e.Message));
        catalog.LeaveOutClashes(config, e => Log.PluginFailed(logger, e.Message));
        foreach (var plugin in catalog.Plugins)
        {
            Log.PluginChanged(logger, $"loaded {string.Join(", ", plugin.Helpers.Select(h => h.Name))} from {plugin.Path} ({plugin.Version})");
        }

        return catalog;
    }

    /// <summary>The invoker that runs plugin helpers under the configured budgets.</summary>
    public static ContainedHelperInvoker Invoker(OffloadConfig config)
    {
        var plugins = config.Plugins ?? new PluginsConfig(PluginsConfig.DefaultDirectory);
        return new ContainedHelperInvoker(TimeSpan.FromMilliseconds(plugins.CallBudgetMilliseconds), plugins.AllocationBudgetMiB * 1024L * 1024L);
    }

    /// <summary>Brings the loaded plugins in step with the directory (on reload) and logs each change.</summary>
    public static void Rescan(HelperManager helpers, ILogger logger)
    {
        foreach (var (failed, message) in helpers.Rescan())
        {
            if (failed)
            {
                Log.PluginFailed(logger, message);
            }
            else
            {
                Log.PluginChanged(logger, message);
            }
        }
    }

    /// <summary>Answers a <c>helper ...</c> request of the control socket, and logs what it changed.</summary>
    public static string Answer(HelperManager helpers, string request, ILogger logger)
    {
        string answer = helpers.Answer(request);
        if (request.StartsWith("helper list", StringComparison.Ordinal))
        {
            return answer;
        }

        if (answer.StartsWith("error: ", StringComparison.Ordinal))
        {
            Log.PluginFailed(logger, $"{request}: {answer["error: ".Length..].TrimEnd()}");
        }
        else
        {
            Log.PluginChanged(logger, answer.TrimEnd());
        }

        return answer;
    }
}
