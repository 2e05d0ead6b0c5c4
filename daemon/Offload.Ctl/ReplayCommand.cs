using System.CommandLine;
using Offload.Engine;
using Offload.Plugins;
using Offload.Replay;
using Offload.Replay.Capture;
using Offload.Replay.Compare;
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
        var output = new Argument<FileInfo?>("OUT")
        {
            Description = "Where to write the packets that leave the router (pcapng, raw IP, one interface per router interface); may be left out with --compare.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var compare = new Option<FileInfo?>("--compare")
        {
            HelpName = "KERNEL.pcapng",
            Description = "A capture of the same traffic through the kernel's router (often IN itself): compare what leaves the replay with what the kernel sent "
                + "(addresses, ports, sequence and ack numbers, payload, TTL or hop limit, checksums, every other byte), print each differing flow's first "
                + "difference and a summary line; exit 4 when they differ.",
        };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "Print nothing but errors (and, with --compare, the comparison)." };
        var plugins = new Option<DirectoryInfo?>("--plugins")
        {
            Description = "A directory of helper plugins (*.dll, *.cs) to load, as offloadd does; default: the configuration's plugins:, or none.",
        };

        var command = new Command(
            "replay",
            "Run the engine over a capture: each packet that enters the router goes through PREROUTING, routing, TTL decrement and POSTROUTING; the capture's timestamps are the clock. "
            + "Captures as dumpcap -i A -i B writes them are replayed in time order: a stable merge of the interfaces by timestamp (each interface's packets keep their file order). "
            + "Checksums a sender left to its device (the TCP/UDP field holds the pseudo-header sum: offloads on) and super-packets above the MTU (GRO/TSO) are taken as offloadd's queue takes them, and leave with valid checksums; any other bad checksum is counted and dropped. "
            + "Deterministic: the same input gives the same output.")
        {
            config,
            plugins,
            compare,
            input,
            output,
            quiet,
        };

        command.SetAction(parse => Run(
            parse.GetValue(config)!, parse.GetValue(plugins), parse.GetValue(input)!, parse.GetValue(output), parse.GetValue(compare), parse.GetValue(quiet)));
        return command;
    }

    /// <summary>The exit status when the replay's packets differ from the kernel's.</summary>
    private const int Different = 4;

    private static int Run(FileInfo configFile, DirectoryInfo? pluginDirectory, FileInfo input, FileInfo? output, FileInfo? kernel, bool quiet)
    {
        if (output is null && kernel is null)
        {
            Console.Error.WriteLine("offloadctl: replay: give OUT, --compare KERNEL.pcapng, or both");
            return 1;
        }

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
            var ours = kernel is null ? null : new List<SentPacket>();
            using (var inStream = input.OpenRead())
            using (var outStream = output?.Create())
            {
                session.Run(inStream, outStream, ours);
            }

            ReplayComparison? comparison = null;
            if (kernel is not null)
            {
                using var kernelStream = kernel.OpenRead();
                List<SentPacket> sent;
                try
                {
                    sent = session.KernelSent(kernelStream);
                }
                catch (CaptureFormatException e)
                {
                    Console.Error.WriteLine($"offloadctl: {kernel.Name}: {e.Message}");
                    return 3;
                }

                comparison = ReplayComparison.Compare(sent, ours!);
            }

            if (!quiet)
            {
                Print(session);
            }

            if (comparison is null)
            {
                return 0;
            }

            // The differences are the answer asked for: printed even with --quiet.
            comparison.Write(Console.Out);
            return comparison.IsEqual ? 0 : Different;
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
        Console.WriteLine($"frames read {s.FramesRead}, entering {s.FramesRead - s.FramesLeaving - s.FramesOtherInterface}, forwarded {s.Forwarded}, delivered locally {s.DeliveredLocally}, dropped {s.Dropped} (no route {s.NoRoute}, TTL exceeded {s.TtlExceeded}, too long {s.TooLong}), link control {s.LinkControl}, not IP {s.FramesNotIp}");
        Console.WriteLine($"as recorded: {s.Reordered} frames put back in time order (at most {s.HeldAtMost} held), {s.ChecksumsPartial} checksums left to the device, {s.SuperPackets} super-packets");
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
