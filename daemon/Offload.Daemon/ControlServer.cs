using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Offload.Daemon;

/// <summary>
/// The control socket offloadctl talks to: a Unix stream socket only root may open (mode 0600). One request
/// per connection: a command line, answered with text, then the connection closes.
/// </summary>
internal sealed class ControlServer : IDisposable
{
    public const string DefaultPath = "/run/offload/offloadd.sock";
    private const int MaxRequest = 256;

    private readonly string _path;
    private readonly Func<string, string> _handle;
    private readonly ILogger _logger;
    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private Thread? _thread;
    private volatile bool _stopping;

    public ControlServer(string path, Func<string, string> handle, ILogger logger)
    {
        _path = path;
        _handle = handle;
        _logger = logger;
    }

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
        while (!_stopping)
        {
            Socket client;
            try
            {
                client = _listener.Accept();
            }
            catch (SocketException) when (_stopping)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }

            using (client)
            {
                try
                {
                    Serve(client);
                }
                catch (Exception e) when (e is SocketException or IOException)
                {
                    Log.ControlError(_logger, e.Message);
                }
            }
        }
    }

    private void Serve(Socket client)
    {
        client.ReceiveTimeout = 2000;
        client.SendTimeout = 5000;
        var buffer = new byte[MaxRequest];
        int length = 0;
        while (length < buffer.Length)
        {
            int n = client.Receive(buffer, length, buffer.Length - length, SocketFlags.None);
            if (n == 0)
            {
                break;
            }

            length += n;
            if (Array.IndexOf(buffer, (byte)'\n', 0, length) >= 0)
            {
                break;
            }
        }

        string request = Encoding.ASCII.GetString(buffer, 0, length).Trim();
        string response;
        try
        {
            response = _handle(request);
        }
        catch (ArgumentException e)
        {
            response = "error: " + e.Message + "\n";
        }

        client.Send(Encoding.UTF8.GetBytes(response));
        client.Shutdown(SocketShutdown.Both);
    }

    public void Dispose()
    {
        _stopping = true;
        _listener.Dispose();
        _thread?.Join(TimeSpan.FromSeconds(2));
        try
        {
            File.Delete(_path);
        }
        catch (IOException)
        {
        }
    }
}
