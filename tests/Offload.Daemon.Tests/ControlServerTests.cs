using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Offload.Interop.Posix;
using Xunit;

namespace Offload.Daemon.Tests;

/// <summary>
/// offloadd's control socket with real Unix sockets: only root (or the daemon's user) is answered, by the socket's
/// mode and by the kernel's record of the peer (SO_PEERCRED); a request that is too long, malformed or too slow gets
/// an error and a closed connection, and never holds up the other clients. As root, the other user is nobody (65534)
/// by setpriv; otherwise the server is told to trust root only, which makes the test's own user the stranger.
/// </summary>
[Collection(AloneCollection.Name)]
public sealed class ControlServerTests : IDisposable
{
    // Under /tmp: a socket's path must fit in 108 bytes. 0755, so that another user can reach the socket itself.
    private readonly string _directory = Directory.CreateTempSubdirectory("ol-ctl-").FullName;
    private readonly List<string> _requests = [];
    private readonly ControlServer _server;

    public ControlServerTests()
    {
        File.SetUnixFileMode(_directory, (UnixFileMode)0b111_101_101);
        Socket = Path.Combine(_directory, "offloadd.sock");
        _server = new ControlServer(Socket, Handle, NullLogger.Instance, requestTimeout: TimeSpan.FromSeconds(3));
        _server.Start();
    }

    private string Socket { get; }

    private static bool Root => PosixFiles.EffectiveUserId == 0;

    public void Dispose()
    {
        _server.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private string Handle(string request)
    {
        lock (_requests)
        {
            _requests.Add(request);
        }

        return request == "stats" ? "queue 0: packets 0\n" : throw new ArgumentException($"unknown request '{request}'");
    }

    private static Socket Connect(string path)
    {
        var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 10_000 };
        client.Connect(new UnixDomainSocketEndPoint(path));
        return client;
    }

    /// <summary>Sends bytes, then reads until the server closes the connection.</summary>
    private static string Exchange(Socket client, byte[] request)
    {
        if (request.Length > 0)
        {
            client.Send(request);
        }

        var answer = new MemoryStream();
        var buffer = new byte[4096];
        int n;
        while ((n = client.Receive(buffer)) > 0)
        {
            answer.Write(buffer, 0, n);
        }

        return Encoding.UTF8.GetString(answer.ToArray());
    }

    private string Ask(string request)
    {
        using var client = Connect(Socket);
        return Exchange(client, Encoding.UTF8.GetBytes(request));
    }

    [Fact]
    public void A_request_from_root_is_answered_and_the_connection_closed()
    {
        Assert.Equal("queue 0: packets 0\n", Ask("stats\n"));
        Assert.Equal("error: unknown request 'nope'\n", Ask("nope\r\n"));
        Assert.Equal(2, _server.Served);
    }

    [Fact]
    public void The_socket_is_made_with_mode_0600()
    {
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Socket));
    }

    [Fact]
    public void A_client_that_is_not_root_or_the_daemons_user_is_refused()
    {
        if (!Root)
        {
            using var strict = new ControlServer(Socket + "2", Handle, NullLogger.Instance, trustedUsers: [0]);
            strict.Start();
            using var client = Connect(Socket + "2");
            Assert.Equal($"error: refused: uid {PosixFiles.EffectiveUserId} is not root or the daemon's user\n", Exchange(client, "stats\n"u8.ToArray()));
            Assert.Equal(1, strict.RefusedPeers);
            Assert.Empty(_requests);
            return;
        }

        // The socket's mode keeps nobody out first...
        var (exit, output) = AsNobody(Socket);
        Assert.NotEqual(0, exit);
        Assert.Contains("Permission denied", output, StringComparison.Ordinal);

        // ...and with the mode opened (a mistake, or a directory made wider), the peer's uid still does.
        File.SetUnixFileMode(Socket, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite);
        (exit, output) = AsNobody(Socket);
        Assert.Equal(0, exit);
        Assert.Equal("error: refused: uid 65534 is not root or the daemon's user\n", output);
        Assert.Equal(1, _server.RefusedPeers);
        Assert.Empty(_requests);
    }

    /// <summary>Asks "stats" as uid and gid 65534 (nobody), with Python's socket module; returns the exit code and what it printed.</summary>
    private static (int Exit, string Output) AsNobody(string socket)
    {
        const string script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(b'stats\\n')\nd=b''\nwhile True:\n    c=s.recv(4096)\n    if not c: break\n    d+=c\nsys.stdout.write(d.decode())\n";
        var start = new ProcessStartInfo("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script, socket])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output);
    }

    [Fact]
    public void A_client_that_sends_nothing_gets_an_error_in_time_and_does_not_hold_up_another()
    {
        using var silent = Connect(Socket);
        var started = Stopwatch.StartNew();

        Assert.Equal("queue 0: packets 0\n", Ask("stats\n"));
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(2), $"the second client waited {started.Elapsed}");
        Assert.Equal("error: no complete request within 3 s\n", Exchange(silent, []));
        Assert.True(started.Elapsed >= TimeSpan.FromSeconds(2.5), $"the silent client was cut off after {started.Elapsed}");
        Assert.Equal(1, _server.BadRequests);
    }

    [Fact]
    public void A_request_longer_than_the_limit_gets_an_error_and_a_closed_connection()
    {
        using var client = Connect(Socket);

        string answer = Exchange(client, Encoding.ASCII.GetBytes("helper load /" + new string('a', ControlServer.MaxRequest)));

        Assert.Equal($"error: request too long (more than {ControlServer.MaxRequest} bytes without a newline)\n", answer);
        Assert.Empty(_requests);
    }

    [Theory]
    [InlineData(new byte[] { (byte)'s', 0xFF, 0xFE, (byte)'\n' }, "malformed request: not UTF-8 text")]
    [InlineData(new byte[] { (byte)'s', 0, (byte)'t', (byte)'\n' }, "malformed request: control characters in it")]
    [InlineData(new byte[] { (byte)' ', (byte)'\n' }, "malformed request: empty")]
    public void A_malformed_request_gets_an_error_and_is_not_handled(byte[] request, string problem)
    {
        Assert.Equal($"error: {problem}\n", Exchange(Connect(Socket), request));
        Assert.Empty(_requests);
        Assert.Equal(1, _server.BadRequests);
    }

    [Fact]
    public void More_clients_than_the_limit_are_told_the_daemon_is_busy_at_once_and_it_answers_again_after()
    {
        var silent = Enumerable.Range(0, ControlServer.MaxClients).Select(_ => Connect(Socket)).ToList();
        try
        {
            // The accept loop has handed each to its reader when the one after them is answered "busy".
            var started = Stopwatch.StartNew();
            string busy = Ask("stats\n");

            Assert.StartsWith("error: offloadd is busy", busy, StringComparison.Ordinal);
            Assert.True(started.Elapsed < TimeSpan.FromSeconds(2), $"the busy answer took {started.Elapsed}");
        }
        finally
        {
            silent.ForEach(s => s.Dispose());
        }

        var deadline = Stopwatch.StartNew();
        string answer;
        while ((answer = Ask("stats\n")).StartsWith("error: offloadd is busy", StringComparison.Ordinal) && deadline.Elapsed < TimeSpan.FromSeconds(5))
        {
            Thread.Sleep(50);
        }

        Assert.Equal("queue 0: packets 0\n", answer);
    }
}
