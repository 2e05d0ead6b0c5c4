using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Offload.Interop.Tests.Support;

/// <summary>
/// Two network namespaces joined by a veth pair, wholly apart from the host's network: A (192.0.2.1, where the
/// queue and the sender live) and B (192.0.2.2, the receiver). Removed on Dispose whatever happened; namespaces
/// left behind by a test process that died are removed by the next one.
/// </summary>
internal sealed class Lab : IDisposable
{
    internal const string Prefix = "offl-nfq-";
    internal static readonly IPAddress AddressA = IPAddress.Parse("192.0.2.1");
    internal static readonly IPAddress AddressB = IPAddress.Parse("192.0.2.2");
    private static int s_counter;

    private Lab(string a, string b)
    {
        A = a;
        B = b;
    }

    internal string A { get; }

    internal string B { get; }

    internal static string? WhyUnavailable()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "Linux only: needs netlink, network namespaces and iptables.";
        }

        if (!Environment.IsPrivilegedProcess)
        {
            return "Needs root (network namespaces, iptables, NFQUEUE need CAP_NET_ADMIN); run the tests as root, e.g. sudo scripts/test.";
        }

        foreach (string tool in new[] { "ip", "iptables" })
        {
            if (Shell.Which(tool) is null)
            {
                return $"Needs '{tool}' (Debian packages iproute2 and iptables; see tests/lab/packages.txt).";
            }
        }

        return null;
    }

    internal static Lab Create()
    {
        RemoveStale();
        int n = Interlocked.Increment(ref s_counter);
        string a = $"{Prefix}{Environment.ProcessId}-{n}-a", b = $"{Prefix}{Environment.ProcessId}-{n}-b";
        var lab = new Lab(a, b);
        try
        {
            Shell.Run("ip", "netns", "add", a);
            Shell.Run("ip", "netns", "add", b);
            Shell.Run("ip", "link", "add", "veth-a", "netns", a, "type", "veth", "peer", "name", "veth-b", "netns", b);
            Shell.Run("ip", "-n", a, "link", "set", "lo", "up");
            Shell.Run("ip", "-n", b, "link", "set", "lo", "up");
            Shell.Run("ip", "-n", a, "addr", "add", "192.0.2.1/24", "dev", "veth-a");
            Shell.Run("ip", "-n", b, "addr", "add", "192.0.2.2/24", "dev", "veth-b");
            Shell.Run("ip", "-n", a, "link", "set", "veth-a", "up");
            Shell.Run("ip", "-n", b, "link", "set", "veth-b", "up");
            return lab;
        }
        catch
        {
            lab.Dispose();
            throw;
        }
    }

    /// <summary>Runs a command inside namespace <paramref name="ns"/> (ip netns exec) and returns its output.</summary>
    internal static string Exec(string ns, params string[] command) => Shell.Run("ip", ["netns", "exec", ns, .. command]);

    /// <summary>
    /// Runs <paramref name="action"/> on a fresh thread moved into namespace <paramref name="ns"/>: sockets it
    /// creates belong to that namespace for good, whichever thread uses them later.
    /// </summary>
    internal static T In<T>(string ns, Func<T> action)
    {
        T? result = default;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var handle = File.OpenHandle($"/var/run/netns/{ns}");
                Errno e = Interop.Sys.SetNetworkNamespace(handle);
                if (e != Errno.None)
                {
                    throw new NetlinkException(e, $"setns into {ns}");
                }

                result = action();
            }
            catch (Exception ex)
            {
                failure = ex;
            }
        });
        thread.Start();
        thread.Join();
        if (failure is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
        }

        return result!;
    }

    /// <summary>A UDP socket in namespace <paramref name="ns"/>, bound when <paramref name="bindTo"/> is given.</summary>
    internal static Socket Udp(string ns, IPEndPoint? bindTo = null) => In(ns, () =>
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        if (bindTo is not null)
        {
            s.Bind(bindTo);
        }

        return s;
    });

    /// <summary>The /proc/net/netfilter/nfnetlink_queue line of <paramref name="queue"/> in namespace <paramref name="ns"/>, split.</summary>
    internal static long[]? QueueStatus(string ns, int queue)
    {
        foreach (string line in Exec(ns, "cat", "/proc/net/netfilter/nfnetlink_queue").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            long[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray();
            if (f.Length > 0 && f[0] == queue)
            {
                return f;
            }
        }

        return null;
    }

    public void Dispose()
    {
        Shell.TryRun("ip", "netns", "del", A);
        Shell.TryRun("ip", "netns", "del", B);
    }

    private static void RemoveStale()
    {
        string list = Shell.TryRun("ip", "netns", "list") ?? "";
        foreach (string line in list.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string name = line.Split(' ')[0];
            if (!name.StartsWith(Prefix, StringComparison.Ordinal))
            {
                continue;
            }

            string[] parts = name[Prefix.Length..].Split('-');
            if (parts.Length > 0 && int.TryParse(parts[0], out int pid) && pid != Environment.ProcessId && !Directory.Exists($"/proc/{pid}"))
            {
                Shell.TryRun("ip", "netns", "del", name);
            }
        }
    }
}

internal static class Shell
{
    internal static string? Which(string tool)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/sbin", "/sbin", "/usr/bin", "/bin"]))
        {
            string path = Path.Combine(dir, tool);
            if (File.Exists(path))
            {
                return path;
            }
        }

        return null;
    }

    internal static string Run(string file, params string[] args)
    {
        (int code, string stdout, string stderr) = Execute(file, args);
        if (code != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited with {code}: {stderr.Trim()}");
        }

        return stdout;
    }

    internal static string? TryRun(string file, params string[] args)
    {
        try
        {
            (int code, string stdout, _) = Execute(file, args);
            return code == 0 ? stdout : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    internal static (int Code, string Stdout, string Stderr) Execute(string file, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(Which(file) ?? file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using Process p = Process.Start(psi)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout, stderr.Result);
    }
}
