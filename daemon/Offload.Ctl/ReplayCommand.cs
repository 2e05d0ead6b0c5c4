using System.CommandLine;
using Offload.Engine;
using Offload.Plugins;
using Offload.Replay;
using Offload.Replay.Capture;
using Offload.Rules;

namespace Offload.Ctl;

/// <summary><c>offloadctl replay</c>: the engine on a capture, as the router would have run it.</summary>
internal static class ReplayCommand
{
    public static Command Create()
    {
        var config = new Option<FileInfo>("--config", "-c")
        {
            Description = "The configuration (YAML): the router's interfaces (with mac: when the capture records no directions), NAT rules and helpers.",
            Required = true,
        };
        var input = new Argument<FileInfo>("IN") { Description = "A pcap or pcapng capture of the router's interfaces, named as in the configuration." };
        var output = new Argument<FileInfo>("OUT") { Description = "Where to write the packets that leave the router (pcapng, raw IP, one interface per router interface)." };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "Print nothing but errors." };
        var plugins = new Option<DirectoryInfo?>("--plugins")
        {
            Description = "A directory of helper plugins (*.dll, *.cs) to load, as offloadd does; default: the configuration's plugins:, or none.",
        };

        var command = new Command(
            "replay",
            "Run the engine over a capture: each packet that enters the router goes through PREROUTING, routing, TTL decrement and POSTROUTING; the capture's timestamps are the clock. Deterministic: the same input gives the same output.")
        {
            config,
            plugins,
            input,
            output,
            quiet,
        };

        command.SetAction(parse => Run(parse.GetValue(config)!, parse.GetValue(plugins), parse.GetValue(input)!, parse.GetValue(output)!, parse.GetValue(quiet)));
        return command;
    }

    private static int Run(FileInfo configFile, DirectoryInfo? pluginDirectory, FileInfo input, FileInfo output, bool quiet)
    {
        try
        {
            var config = ConfigLoader.LoadFile(configFile.FullName);
            // A replay is hermetic: plugins only from where it is told, never the router's default directory.
            string? directory = pluginDirectory?.FullName ?? config.Plugins?.Directory;
            int failures = 0;
            var catalog = HelperCatalog.Load(directory, e =>
            {
                failures++;
                Console.Error.WriteLine($"offloadctl: {e.Message}");
            });
            if (failures > 0)
            {
                return 2;
            }

            var session = ReplaySession.Create(catalog.Effective(config, dropUnknown: false), catalog.Factory);
            using (var inStream = input.OpenRead())
            using (var outStream = output.Create())
            {
                session.Run(inStream, outStream);
            }

            if (!quiet)
            {
                Print(session);
            }

            return 0;
        }
        catch (ConfigException e)
        {
            Console.Error.WriteLine($"offloadctl: {e.Message}");
            return 2;
        }
        catch (CaptureFormatException e)
        {
            Console.Error.WriteLine($"offloadctl: {input.Name}: {e.Message}");
            return 3;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            Console.Error.WriteLine($"offloadctl: {e.Message}");
            return 1;
        }
    }

    private static void Print(ReplaySession session)
    {
        var s = session.Router.Statistics;
        Console.WriteLine($"frames read {s.FramesRead}, entering {s.FramesRead - s.FramesLeaving - s.FramesOtherInterface}, forwarded {s.Forwarded}, delivered locally {s.DeliveredLocally}, dropped {s.Dropped} (no route {s.NoRoute}, TTL exceeded {s.TtlExceeded}), link control {s.LinkControl}, not IP {s.FramesNotIp}");
        var engine = session.Engine;
        Console.WriteLine($"connections {engine.Connections.Count}, expectations {engine.Expectations.Count}");
        foreach (var counter in Enum.GetValues<EngineCounter>())
        {
            long value = engine[counter];
            if (value != 0)
            {
                Console.WriteLine($"  {counter,-32} {value}");
            }
        }
    }
}
