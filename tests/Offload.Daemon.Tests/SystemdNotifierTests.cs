using System.Net.Sockets;
using System.Text;
using Offload.Daemon;
using Xunit;

namespace Offload.Daemon.Tests;

/// <summary>sd_notify as systemd receives it: datagrams on a Unix socket, at a path or an abstract name.</summary>
public sealed class SystemdNotifierTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("offload-notify-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("@")]
    [InlineData("relative/notify")]
    [InlineData("vsock:2:1234")]
    public void Without_a_usable_socket_nothing_is_sent(string? notifySocket)
    {
        var notifier = new SystemdNotifier(notifySocket);

        Assert.False(notifier.Enabled);
        Assert.False(notifier.Ready("ready"));
    }

    [Theory]
    [InlineData("@offload/notify", "\0offload/notify")] // '@' stands for the NUL that makes the address abstract
    [InlineData("/run/systemd/notify", "/run/systemd/notify")]
    public void The_address_is_the_one_systemd_binds(string notifySocket, string sunPath)
    {
        var address = SystemdNotifier.Endpoint(notifySocket)!.Serialize();

        // sockaddr_un: the family (two bytes), then sun_path; no terminating NUL is needed for the kernel to match.
        var path = new byte[address.Size - 2];
        for (int i = 0; i < path.Length; i++)
        {
            path[i] = address[i + 2];
        }

        Assert.Equal(sunPath, Encoding.UTF8.GetString(path).TrimEnd('\0'));
    }

    [Fact]
    public void Ready_reaches_a_socket_at_a_path_with_its_status()
    {
        string path = Path.Combine(_directory, "notify");
        using var listener = Listen(new UnixDomainSocketEndPoint(path));

        Assert.True(new SystemdNotifier(path).Ready("queues 0 and 1 bound"));

        Assert.Equal("READY=1\nSTATUS=queues 0 and 1 bound", Receive(listener));
    }

    [Fact]
    public void Messages_reach_an_abstract_socket()
    {
        string name = "offload-test-" + Guid.NewGuid().ToString("N");
        using var listener = Listen(new UnixDomainSocketEndPoint("\0" + name));

        Assert.True(new SystemdNotifier("@" + name).Stopping("stopping (SIGTERM)"));

        Assert.Equal("STOPPING=1\nSTATUS=stopping (SIGTERM)", Receive(listener));
    }

    [Fact]
    public void A_reload_is_announced_with_the_monotonic_time_and_ends_with_ready()
    {
        string path = Path.Combine(_directory, "notify");
        using var listener = Listen(new UnixDomainSocketEndPoint(path));
        var notifier = new SystemdNotifier(path);

        long before = SystemdNotifier.MonotonicMicroseconds();
        using (notifier.Reloading())
        {
            string reloading = Receive(listener);
            long after = SystemdNotifier.MonotonicMicroseconds();
            string[] lines = reloading.Split('\n');
            Assert.Equal("RELOADING=1", lines[0]);
            Assert.StartsWith("MONOTONIC_USEC=", lines[1], StringComparison.Ordinal);
            long usec = long.Parse(lines[1]["MONOTONIC_USEC=".Length..], System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(usec, before, after);
            Assert.Equal(2, lines.Length);
        }

        Assert.Equal("READY=1", Receive(listener));
    }

    [Fact]
    public void A_status_stays_on_one_line()
    {
        string path = Path.Combine(_directory, "notify");
        using var listener = Listen(new UnixDomainSocketEndPoint(path));

        new SystemdNotifier(path).Status("reload failed:\nline 3");

        Assert.Equal("STATUS=reload failed: line 3", Receive(listener));
    }

    [Fact]
    public void A_socket_nobody_listens_on_is_not_an_error()
    {
        Assert.False(new SystemdNotifier(Path.Combine(_directory, "absent")).Ready("ready"));
    }

    private static Socket Listen(UnixDomainSocketEndPoint endpoint)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(endpoint);
        socket.ReceiveTimeout = 5000;
        return socket;
    }

    private static string Receive(Socket socket)
    {
        var buffer = new byte[4096];
        int n = socket.Receive(buffer);
        return Encoding.UTF8.GetString(buffer, 0, n);
    }
}
