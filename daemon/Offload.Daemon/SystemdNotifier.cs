using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Offload.Daemon;

/// <summary>
/// Tells systemd how the service is doing, as sd_notify(3) does: one datagram per message, sent to the socket
/// named by <c>$NOTIFY_SOCKET</c> (a path, or an abstract name written with a leading '@'). Without that
/// variable, i.e. not started by systemd with <c>Type=notify</c>, every call does nothing.
/// </summary>
/// <remarks>
/// Written here rather than taken from a package: it is a few lines over a Unix datagram socket. A socket is
/// opened per message, as libsystemd does: messages are rare (start, reload, stop), and nothing stays open in
/// between for a helper or a child process to inherit.
/// </remarks>
internal sealed class SystemdNotifier
{
    private readonly UnixDomainSocketEndPoint? _endpoint;

    /// <summary>The notifier of this process: the socket named by <c>$NOTIFY_SOCKET</c>, if any.</summary>
    public SystemdNotifier()
        : this(Environment.GetEnvironmentVariable("NOTIFY_SOCKET"))
    {
    }

    /// <param name="notifySocket">A <c>$NOTIFY_SOCKET</c> value: an absolute path, or '@' then an abstract name.</param>
    public SystemdNotifier(string? notifySocket) => _endpoint = Endpoint(notifySocket);

    /// <summary>True when messages go somewhere (systemd waits for them).</summary>
    public bool Enabled => _endpoint is not null;

    /// <summary>
    /// The address a <c>$NOTIFY_SOCKET</c> value names, or null for none. '@' stands for the leading NUL of an
    /// abstract address. Other forms (relative paths, <c>vsock:</c> of a virtual machine's manager) are not ours.
    /// </summary>
    public static UnixDomainSocketEndPoint? Endpoint(string? notifySocket) => notifySocket switch
    {
        ['@', _, ..] => new UnixDomainSocketEndPoint("\0" + notifySocket[1..]),
        ['/', ..] => new UnixDomainSocketEndPoint(notifySocket),
        _ => null,
    };

    /// <summary>Startup or a reload is complete: the service does its job now.</summary>
    public bool Ready(string status) => Send("READY=1\nSTATUS=" + OneLine(status));

    /// <summary>
    /// A reload begins; disposing the result says it ended (READY=1), whatever its outcome, so that systemd never
    /// waits for the end of a reload that failed.
    /// </summary>
    public ReloadScope Reloading()
    {
        Send(string.Create(CultureInfo.InvariantCulture, $"RELOADING=1\nMONOTONIC_USEC={MonotonicMicroseconds()}"));
        return new ReloadScope(this);
    }

    /// <summary>The service is shutting down.</summary>
    public bool Stopping(string status) => Send("STOPPING=1\nSTATUS=" + OneLine(status));

    /// <summary>A one-line state shown by <c>systemctl status</c>.</summary>
    public bool Status(string status) => Send("STATUS=" + OneLine(status));

    /// <summary>Sends one message (newline-separated assignments); false when there is no socket or it failed.</summary>
    /// <remarks>A failure is not an error of the daemon: systemd may have stopped listening, the job goes on.</remarks>
    public bool Send(string message)
    {
        if (_endpoint is null)
        {
            return false;
        }

        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            socket.SendTo(Encoding.UTF8.GetBytes(message), _endpoint);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>
    /// CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC with (Stopwatch reads that clock
    /// on Linux). Split in whole seconds and a remainder so that the product cannot overflow.
    /// </summary>
    public static long MonotonicMicroseconds()
    {
        long ticks = Stopwatch.GetTimestamp();
        long frequency = Stopwatch.Frequency;
        return (ticks / frequency * 1_000_000) + (ticks % frequency * 1_000_000 / frequency);
    }

    // A newline would start a new assignment systemd does not know.
    private static string OneLine(string text) => text.ReplaceLineEndings(" ");

    /// <summary>The end of a reload: sends READY=1 when disposed.</summary>
    public readonly struct ReloadScope : IDisposable
    {
        private readonly SystemdNotifier? _notifier;

        internal ReloadScope(SystemdNotifier notifier) => _notifier = notifier;

        public void Dispose() => _notifier?.Send("READY=1");
    }
}
