using System.CommandLine;
using System.Net.Sockets;
using System.Text;

namespace Offload.Ctl;

/// <summary>Commands answered by a running offloadd over its control socket.</summary>
internal static class ControlCommands
{
    public const string DefaultSocket = "/run/offload/offloadd.sock";

    /// <summary>
    /// offloadctl's global option: given once on the root command and recursive, so that it may stand before the
    /// subcommand (<c>offloadctl --socket S helper list</c>) or after it (<c>offloadctl helper list --socket S</c>).
    /// </summary>
    public static Option<string> SocketOption() => new("--socket")
    {
        Description = "offloadd's control socket (before or after the command).",
        DefaultValueFactory = _ => DefaultSocket,
        Recursive = true,
    };

    /// <param name="socket">The root command's <see cref="SocketOption"/>.</param>
    public static IEnumerable<Command> Create(Option<string> socket)
    {

        var conntrack = new Command("conntrack", "The connection tracking table of offloadd.");
        var list = new Command("list", "One line per tracked connection, as conntrack -L -o extended prints the kernel's.");
        list.SetAction(parse => Ask(parse.GetValue(socket)!, "conntrack list"));
        conntrack.Add(list);
        yield return conntrack;

        var expect = new Command("expect", "The outstanding expectations of offloadd.");
        var expectList = new Command("list", "A header, then one line per expectation, as conntrack -L expect prints the kernel's: seconds left, protocol, expected connection, master, and the helper that announced it.");
        expectList.SetAction(parse => Ask(parse.GetValue(socket)!, "expect list"));
        expect.Add(expectList);
        yield return expect;

        var helper = new Command("helper", "The protocol helpers of offloadd: built-in, and plugins loaded from its plugin directory or by hand.");
        var helperList = new Command("list", "One line per helper: name, origin (built-in or plugin file), version, protocols and ports bound now (tcp/21), connections bound now, state (enabled, or disabled and why).");
        helperList.SetAction(parse => Ask(parse.GetValue(socket)!, "helper list"));
        helper.Add(helperList);
        var path = new Argument<FileInfo>("PATH") { Description = "A helper assembly (.dll) or a single C# file (.cs). It is loaded from where it is, not copied: put it in the plugin directory to keep it across restarts." };
        var helperLoad = new Command("load", "Load a plugin into the running daemon and bind its helpers (at their own ports unless the configuration names them).") { path };
        helperLoad.SetAction(parse => Ask(parse.GetValue(socket)!, "helper load " + parse.GetValue(path)!.FullName));
        helper.Add(helperLoad);
        var unloadName = new Argument<string>("NAME") { Description = "A helper name (its whole plugin file goes) or a plugin file path." };
        var helperUnload = new Command("unload", "Remove a plugin: its connections go on without a helper, the expectations they announced are withdrawn.") { unloadName };
        helperUnload.SetAction(parse => Ask(parse.GetValue(socket)!, "helper unload " + parse.GetValue(unloadName)));
        helper.Add(helperUnload);
        var reloadName = new Argument<string>("NAME") { Description = "A helper name or a plugin file path." };
        var helperReload = new Command("reload", "Re-read a plugin's file: its connections are helped by the new version with fresh state, expectations stay, a disabled helper is enabled again.") { reloadName };
        helperReload.SetAction(parse => Ask(parse.GetValue(socket)!, "helper reload " + parse.GetValue(reloadName)));
        helper.Add(helperReload);
        yield return helper;

        var stats = new Command("stats", "Per queue: packets, verdicts, drops by reason, table size, the kernel's own queue counters, and the state carried across restarts (what was restored at start, the checkpoints).");
        stats.SetAction(parse => Ask(parse.GetValue(socket)!, "stats"));
        yield return stats;

        var state = new Command("state", "The state offloadd keeps across restarts (its snapshot).");
        var stateSave = new Command("save", "Write the snapshot now (as a checkpoint does), and show what it holds and what it cost.");
        stateSave.SetAction(parse => Ask(parse.GetValue(socket)!, "state save"));
        state.Add(stateSave);
        yield return state;
    }

    internal static int Ask(string path, string request)
    {
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(path));
            socket.Send(Encoding.UTF8.GetBytes(request + "\n"));
            var buffer = new byte[65536];
            using var stdout = Console.OpenStandardOutput();
            int n;
            bool first = true, failed = false;
            while ((n = socket.Receive(buffer)) > 0)
            {
                // The daemon answers a refused request with a line starting "error: ": a failure for scripts too.
                failed |= first && buffer.AsSpan(0, n).StartsWith("error: "u8);
                first = false;
                stdout.Write(buffer, 0, n);
            }

            return failed ? 1 : 0;
        }
        catch (SocketException e)
        {
            Console.Error.WriteLine("offloadctl: " + Unreachable(path, e));
            return 1;
        }
    }

    /// <summary>Why offloadd cannot be asked, in words: the socket's errno as .NET maps it says little ("Cannot assign requested address" for a missing file).</summary>
    internal static string Unreachable(string path, SocketException e) => e.SocketErrorCode switch
    {
        SocketError.AddressNotAvailable or SocketError.ConnectionRefused when !File.Exists(path) =>
            $"nothing listens on {path}: there is no such socket (is offloadd running? with another --socket?)",
        SocketError.ConnectionRefused or SocketError.AddressNotAvailable =>
            $"nothing listens on {path}: the socket is there but no offloadd answers (it stopped, or is still starting)",
        SocketError.AccessDenied =>
            $"{path}: permission denied: only root (or offloadd's user) may use the control socket",
        _ => $"cannot talk to offloadd at {path}: {e.Message} (is it running? are you root?)",
    };
}
