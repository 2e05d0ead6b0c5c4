using Microsoft.Extensions.Logging;

namespace Offload.Daemon.Replication;

/// <summary>
/// Learns the router's VRRP role from keepalived's <c>notify_fifo</c>, where keepalived writes a line per change:
/// <c>INSTANCE "VI_1" MASTER 100</c>, <c>GROUP "G1" BACKUP</c>. Reading a FIFO costs no fork per change, unlike
/// notify scripts, and keepalived writes it even when a script would not run.
/// </summary>
internal sealed class KeepalivedFifo
{
    private readonly string _path;
    private readonly string? _name;
    private readonly Action<bool, string> _role;
    private readonly ILogger _logger;
    private volatile bool _stopping;
    private bool _groupSeen;

    /// <param name="path">The FIFO.</param>
    /// <param name="name">The sync group or instance whose state is the role; null: any group, else any instance.</param>
    /// <param name="role">Told (active?, the line) on each change.</param>
    /// <param name="logger">Where a FIFO that cannot be read is reported.</param>
    public KeepalivedFifo(string path, string? name, Action<bool, string> role, ILogger logger)
    {
        _path = path;
        _name = name;
        _role = role;
        _logger = logger;
    }

    public void Start()
    {
        var thread = new Thread(Run) { IsBackground = true, Name = "keepalived fifo" };
        thread.Start();
    }

    public void Stop() => _stopping = true;

    /// <summary>
    /// The role a line gives: true (MASTER), false (BACKUP, FAULT, STOP), or null when the line is not about the
    /// group or instance followed, or is not a state line.
    /// </summary>
    public bool? Parse(string line)
    {
        string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (f.Length < 3 || f[0] is not ("INSTANCE" or "GROUP"))
        {
            return null;
        }

        string name = f[1].Trim('"');
        bool group = f[0] == "GROUP";
        if (_name is not null ? name != _name : (!group && _groupSeen))
        {
            return null; // another group's or instance's, or an instance's while a group speaks for it
        }

        _groupSeen |= group;
        return f[2] switch
        {
            "MASTER" => true,
            "BACKUP" or "FAULT" or "STOP" or "DELETED" => false,
            _ => null,
        };
    }

    private void Run()
    {
        while (!_stopping)
        {
            try
            {
                // Opened for writing too, so that keepalived restarting (the last writer gone) is no end of file.
                using var stream = new FileStream(_path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite, 1);
                using var reader = new StreamReader(stream);
                while (!_stopping && reader.ReadLine() is { } line)
                {
                    if (Parse(line) is { } active)
                    {
                        _role(active, line);
                    }
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Log.ReplicationFifoError(_logger, _path, e.Message);
                Thread.Sleep(1000);
            }
        }
    }
}
