using System.CommandLine;
using System.Net.Sockets;
using System.Text;

namespace Offload.Ctl;

/// <summary>Commands answered by a running offloadd over its control socket.</summary>
internal static class ControlCommands
{
    public const string DefaultSocket = "/run/offload/offloadd.sock";

    public static Option<string> SocketOption() => new("--socket")
    {
        Description = "offloadd's control socket.",
        DefaultValueFactory = _ => DefaultSocket,
    };

    public static IEnumerable<Command> Create()
    {
        var socket = SocketOption();

        var conntrack = new Command("conntrack", "The connection tracking table of offloadd.");
        var list = new Command("list", "One line per tracked connection, as conntrack -L -o extended prints the kernel's.") { socket };
        list.SetAction(parse => Ask(parse.GetValue(socket)!, "conntrack list"));
        conntrack.Add(list);
        yield return conntrack;

        var expect = new Command("expect", "The outstanding expectations of offloadd.");
        var expectList = new Command("list", "One line per expectation.") { socket };
        expectList.SetAction(parse => Ask(parse.GetValue(socket)!, "expect list"));
        expect.Add(expectList);
        yield return expect;

        var stats = new Command("stats", "Per queue: packets, verdicts, drops by reason, table size, and the kernel's own queue counters.") { socket };
        stats.SetAction(parse => Ask(parse.GetValue(socket)!, "stats"));
        yield return stats;
    }

    private static int Ask(string path, string request)
    {
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(path));
            socket.Send(Encoding.ASCII.GetBytes(request + "\n"));
            var buffer = new byte[65536];
            using var stdout = Console.OpenStandardOutput();
            int n;
            while ((n = socket.Receive(buffer)) > 0)
            {
                stdout.Write(buffer, 0, n);
            }

            return 0;
        }
        catch (SocketException e)
        {
            Console.Error.WriteLine($"offloadctl: cannot talk to offloadd at {path}: {e.Message} (is it running? are you root?)");
            return 1;
        }
    }
}
