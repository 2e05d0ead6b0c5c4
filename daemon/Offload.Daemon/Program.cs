using System.CommandLine;
using System.Reflection;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Offload.Daemon;
using Offload.Interop;
using Offload.Rules;
using Serilog;
using Serilog.Extensions.Logging;

var config = new Option<FileInfo>("--config", "-c")
{
    Description = "The configuration (YAML).",
    DefaultValueFactory = _ => new FileInfo("/etc/offload/offloadd.yaml"),
};
var check = new Option<bool>("--check") { Description = "Only validate the configuration: print where any error is, and exit (0: valid)." };
var socket = new Option<string>("--socket") { Description = "The control socket offloadctl talks to.", DefaultValueFactory = _ => ControlServer.DefaultPath };
var applyRules = new Option<bool>("--apply-rules")
{
    Description = "Apply the steering rules when the queues are bound. They stay when offloadd stops (a restart must not let a packet out untranslated) unless --remove-rules-on-stop; without it the rules are left to `offloadctl rules apply|remove`.",
};
var removeRules = new Option<bool>("--remove-rules-on-stop") { Description = "With --apply-rules: remove the steering rules when stopping (the flows then pass untranslated or go to the kernel until the next start)." };
var state = new Option<string>("--state")
{
    Description = "The state snapshot kept across restarts (connections, NAT, expectations, helper state): read at start, written at every checkpoint and on stop. Default: `state` beside the control socket (/run/offload/state); \"none\" keeps nothing.",
};
var checkpoint = new Option<int>("--checkpoint")
{
    Description = "Seconds between checkpoints of the state (what a crash loses at most); 0 writes it only on stop.",
    DefaultValueFactory = _ => 10,
};

var root = new RootCommand("offloadd: connection tracking, NAT and protocol helpers in userspace for the flows iptables queues to it (NFQUEUE).")
{
    config,
    check,
    socket,
    applyRules,
    removeRules,
    state,
    checkpoint,
};
root.SetAction(parse =>
{
    string socketPath = parse.GetValue(socket)!;
    string statePath = parse.GetValue(state) ?? DaemonOptions.StateBeside(socketPath);
    var options = new DaemonOptions(
        socketPath,
        parse.GetValue(applyRules),
        parse.GetValue(removeRules),
        statePath == "none" ? null : Path.GetFullPath(statePath),
        TimeSpan.FromSeconds(Math.Max(0, parse.GetValue(checkpoint))));
    return Run(parse.GetValue(config)!, parse.GetValue(check), options);
});
return root.Parse(args).Invoke();

static int Run(FileInfo configFile, bool checkOnly, DaemonOptions options)
{
    OffloadConfig config;
    try
    {
        config = ConfigLoader.LoadFile(configFile.FullName);
        if (checkOnly)
        {
            // The helpers the configuration names may be plugins: load them as the daemon would, failures included.
            var catalog = Offload.Plugins.HelperCatalog.Load(Offload.Daemon.Plugins.PluginSetup.Directory(config), e => throw new ConfigException(e.Message));
            Daemon.BuildOptions(config, new Offload.Engine.Routing.StaticNetworkInterfaces(), catalog);
            _ = config.Replication is { } replication ? Offload.Daemon.Replication.ReplicationKey.Read(replication.KeyFile) : null;
        }
        if (config.Steering is null && !checkOnly)
        {
            throw new ConfigException(configFile.FullName, 0, 0, "offloadd needs a steering: section (which queues to serve)");
        }
    }
    catch (ConfigException e)
    {
        Console.Error.WriteLine($"offloadd: {e.Message}");
        return 2;
    }

    if (checkOnly)
    {
        Console.WriteLine($"{configFile.FullName}: valid");
        return 0;
    }

    // Under systemd the journal stamps each line itself, and takes each line's priority from its <N> prefix.
    bool journal = JournalFormat.StandardOutputIsJournal();
    using var serilog = new LoggerConfiguration()
        .MinimumLevel.Information()
        .WriteTo.ConsoleOrJournal(journal)
        .CreateLogger();
    using var factory = new LoggerFactory([new SerilogLoggerProvider(serilog)]);
    var logger = factory.CreateLogger("offloadd");
    string version = typeof(Daemon).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "?";
    Offload.Daemon.Log.Starting(logger, version, configFile.FullName);

    using var daemon = new Daemon(config, configFile.FullName, options, logger);

    // Handlers first: Start tells systemd we are ready, and a reload or stop may follow at once.
    using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; daemon.RequestStop("SIGTERM"); });
    using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; daemon.RequestStop("SIGINT"); });
    using var hangup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c => { c.Cancel = true; daemon.Reload(); });
    if (HangupIgnoredAtStart())
    {
        Offload.Daemon.Log.HangupIgnored(logger);
    }

    try
    {
        daemon.Start();
    }
    catch (Exception e) when (e is NetlinkException or ConfigException or InvalidOperationException or IOException or UnauthorizedAccessException)
    {
        Console.Error.WriteLine($"{(journal ? "<3>" : string.Empty)}offloadd: cannot start: {e.Message}");
        return 1;
    }

    daemon.WaitForStop();
    return 0;
}

// True when SIGHUP was ignored when the process began (nohup): .NET then leaves it ignored and never calls the
// registration, so an administrator would send SIGHUP and see nothing. Read from /proc/self/status (SigIgn, bit 0).
static bool HangupIgnoredAtStart()
{
    try
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("SigIgn:", StringComparison.Ordinal))
            {
                return (ulong.Parse(line.AsSpan(7).Trim(), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture) & 1) != 0;
            }
        }
    }
    catch (IOException)
    {
    }

    return false;
}
