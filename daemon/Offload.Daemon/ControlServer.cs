using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Offload.Interop.Posix;

namespace Offload.Daemon;

/// <summary>
/// The control socket offloadctl talks to: a Unix stream socket only root may open (mode 0600), whose peers are
/// checked once more by the kernel's record of who connected (SO_PEERCRED: root, or the daemon's own user). One
/// request per connection: a command line, answered with text, then the connection closes.
/// </summary>
/// <remarks>
/// Each connection is read on its own, with a deadline, so that a client that connects and sends nothing, or too
/// much, or bytes that are not a command, gets an error and a closed connection without holding up the others or the
/// daemon. Requests are then answered one at a time, as the daemon's handlers expect. At most
/// <see cref="MaxClients"/> connections are served at once; one more is told the daemon is busy.
/// </remarks>
internal sealed class ControlServer : IDisposable
{
    public const string DefaultPath = "/run/offload/offloadd.sock";

    /// <summary>The longest request: a command and a path of PATH_MAX bytes (<c>helper load PATH</c>).</summary>
    public const int MaxRequest = 4096 + 64;

    public const int MaxClients = 16;

    private const int LoggedProblems = 10;
    private static readonly TimeSpan SendTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromMilliseconds(500);
    private const int MaxDrained = 64 * 1024;
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly string _path;
    private readonly Func<string, string> _handle;
    private readonly ILogger _logger;
    private readonly IReadOnlySet<uint> _trustedUsers;
    private readonly TimeSpan _requestTimeout;
    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly SemaphoreSlim _clients = new(MaxClients, MaxClients);
    private readonly CancellationTokenSource _stopping = new();
    private readonly object _answering = new();
    private Thread? _thread;
    private long _served;
    private long _refusedPeers;
    private long _badRequests;

    /// <param name="path">Where the socket is made.</param>
    /// <param name="handle">Answers a request (one at a time); an <see cref="ArgumentException"/> becomes an error line.</param>
    /// <param name="logger">The daemon's log.</param>
    /// <param name="trustedUsers">The uids that may talk to the daemon: root and the daemon's own effective uid unless given.</param>
    /// <param name="requestTimeout">How long a client has to send its whole request (2 s unless given).</param>
    public ControlServer(string path, Func<string, string> handle, ILogger logger, IEnumerable<uint>? trustedUsers = null, TimeSpan? requestTimeout = null)
    {
        _path = path;
        _handle = handle;
        _logger = logger;
        _trustedUsers = new HashSet<uint>(trustedUsers ?? [0, PosixFiles.EffectiveUserId]);
        _requestTimeout = requestTimeout ?? TimeSpan.FromSeconds(2);
    }

    /// <summary>Requests answered.</summary>
    public long Served => Interlocked.Read(ref _served);

    /// <summary>Connections refused because their peer was neither root nor the daemon's user.</summary>
    public long RefusedPeers => Interlocked.Read(ref _refusedPeers);

    /// <summary>Connections closed with an error because the request was too long, malformed, or did not arrive in time (or the daemon was busy).</summary>
    public long BadRequests => Interlocked.Read(ref _badRequests);

    public void Start()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        if (File.Exists(_path))
        {
            File.Delete(_path); // A socket left by a daemon that died; bind would fail on it.
        }

        _listener.Bind(new UnixDomainSocketEndPoint(_path));
        File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        _listener.Listen(16);
        _thread = new Thread(AcceptLoop) { IsBackground = true, Name = "control" };
        _thread.Start();
        Log.ControlListening(_logger, _path);
    }

    private void AcceptLoop()
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = _listener.Accept();
            }
            catch (SocketException) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }

            if (!_clients.Wait(0))
            {
                // Never wait here: the accept loop must stay free for the clients that will finish.
                Problem("busy: too many control connections at once", null);
                _ = CloseWithAsync(client, $"error: offloadd is busy: more than {MaxClients} control connections at once; try again\n");
                continue;
            }

            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(Socket client)
    {
        try
        {
            using (client)
            {
                var peer = PeerCredentials.Of(client);
                if (!_trustedUsers.Contains(peer.UserId))
                {
                    long refused = Interlocked.Increment(ref _refusedPeers);
                    if (refused <= LoggedProblems)
                    {
                        Log.ControlPeerRefused(_logger, peer.UserId, peer.ProcessId);
                    }

                    await SendAsync(client, $"error: refused: uid {peer.UserId} is not root or the daemon's user\n").ConfigureAwait(false);
                    return;
                }

                var (request, problem) = await ReadRequestAsync(client).ConfigureAwait(false);
                string response;
                if (request is null)
                {
                    Problem(problem!, peer.ProcessId);
                    response = "error: " + problem + "\n";
                }
                else
                {
                    response = Answer(request);
                    Interlocked.Increment(ref _served);
                }

                await SendAsync(client, response).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            if (!_stopping.IsCancellationRequested)
            {
                Log.ControlError(_logger, e.Message);
            }
        }
        finally
        {
            _clients.Release();
        }
    }

    private string Answer(string request)
    {
        lock (_answering)
        {
            try
            {
                return _handle(request);
            }
            catch (ArgumentException e)
            {
                return "error: " + e.Message + "\n";
            }
#pragma warning disable CA1031 // Whatever failed, the client is answered and the control socket goes on.
            catch (Exception e)
#pragma warning restore CA1031
            {
                Log.ControlHandlerFailed(_logger, request, e);
                return $"error: offloadd failed to answer: {e.GetType().Name}: {e.Message}\n";
            }
        }
    }

    /// <summary>Reads one request line within the deadline: the request, or null and what is wrong with it.</summary>
    private async Task<(string? Request, string? Problem)> ReadRequestAsync(Socket client)
    {
        var buffer = new byte[MaxRequest];
        int length = 0;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        deadline.CancelAfter(_requestTimeout);
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    return (null, $"request too long (more than {MaxRequest} bytes without a newline)");
                }

                int n = await client.ReceiveAsync(buffer.AsMemory(length), SocketFlags.None, deadline.Token).ConfigureAwait(false);
                int newline = Array.IndexOf(buffer, (byte)'\n', length, n);
                length += n;
                if (newline >= 0 || n == 0)
                {
                    return Parse(buffer.AsSpan(0, newline >= 0 ? newline : length));
                }
            }
        }
        catch (OperationCanceledException) when (!_stopping.IsCancellationRequested)
        {
            return (null, $"no complete request within {_requestTimeout.TotalSeconds:0.#} s");
        }
    }

    /// <summary>A request is printable UTF-8 text (a trailing carriage return is forgiven).</summary>
    private static (string? Request, string? Problem) Parse(ReadOnlySpan<byte> line)
    {
        string text;
        try
        {
            text = StrictUtf8.GetString(line).TrimEnd('\r');
        }
        catch (DecoderFallbackException)
        {
            return (null, "malformed request: not UTF-8 text");
        }

        if (text.Any(char.IsControl))
        {
            return (null, "malformed request: control characters in it");
        }

        text = text.Trim();
        return text.Length == 0 ? (null, "malformed request: empty") : (text, null);
    }

    private void Problem(string problem, int? pid)
    {
        if (Interlocked.Increment(ref _badRequests) <= LoggedProblems)
        {
            Log.ControlBadRequest(_logger, problem, pid?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?");
        }
    }

    /// <summary>
    /// Sends the answer and ends the connection cleanly: our side is shut down first, then what the client may still
    /// send is read and dropped (for a short while, up to a bound), because closing a Unix socket with unread data in
    /// it makes the client's next read fail with ECONNRESET instead of ending, and it would lose the error it was sent.
    /// </summary>
    private static async Task SendAsync(Socket client, string response)
    {
        using var deadline = new CancellationTokenSource(SendTimeout);
        await client.SendAsync(Encoding.UTF8.GetBytes(response), SocketFlags.None, deadline.Token).ConfigureAwait(false);
        client.Shutdown(SocketShutdown.Send);
        deadline.CancelAfter(DrainTimeout);
        var sink = new byte[4096];
        try
        {
            int drained = 0;
            while (drained < MaxDrained)
            {
                int n = await client.ReceiveAsync(sink, SocketFlags.None, deadline.Token).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }

                drained += n;
            }
        }
        catch (OperationCanceledException)
        {
            // A client that goes on sending is cut off.
        }
    }

    private async Task CloseWithAsync(Socket client, string response)
    {
        try
        {
            using (client)
            {
                await SendAsync(client, response).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
        {
            Log.ControlError(_logger, e.Message);
        }
    }

    public void Dispose()
    {
        _stopping.Cancel();
        _listener.Dispose();
        _thread?.Join(TimeSpan.FromSeconds(2));
        // Let the connections being served finish (a request being read is cancelled above), for 5 s at most.
        var waited = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < MaxClients; i++)
        {
            var left = TimeSpan.FromSeconds(5) - waited.Elapsed;
            if (left <= TimeSpan.Zero || !_clients.Wait(left))
            {
                break;
            }
        }

        try
        {
            File.Delete(_path);
        }
        catch (IOException)
        {
        }
    }
}
