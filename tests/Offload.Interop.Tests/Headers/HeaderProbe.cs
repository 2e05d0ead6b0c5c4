using System.Globalization;
using System.Text;
using Offload.Interop.Tests.Support;

namespace Offload.Interop.Tests.Headers;

/// <summary>
/// Compiles a small C program against the system's kernel and libc headers and collects what it prints
/// ("key value" lines): the headers, not our memory of them, are the authority on numbers and layouts.
/// </summary>
internal static class HeaderProbe
{
    internal const string Includes = """
        #define _GNU_SOURCE
        #include <stddef.h>
        #include <stdio.h>
        #include <errno.h>
        #include <fcntl.h>
        #include <limits.h>
        #include <sys/stat.h>
        #include <sched.h>
        #include <sys/socket.h>
        #include <sys/uio.h>
        #include <sys/time.h>
        #include <linux/netlink.h>
        #include <linux/netfilter.h>
        #include <linux/netfilter/nfnetlink.h>
        #include <linux/netfilter/nfnetlink_queue.h>
        #include <linux/netfilter/ipset/ip_set.h>
        #include <linux/netfilter/ipset/ip_set_hash.h>
        #include <linux/netfilter/nfnetlink_conntrack.h>
        #include <linux/netfilter/nf_conntrack_common.h>
        #include <linux/netfilter/nf_conntrack_tcp.h>
        """;

    internal static string? WhyUnavailable()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "Linux only: compares our constants with the Linux headers.";
        }

        if (Shell.Which("cc") is null)
        {
            return "Needs a C compiler 'cc' (Debian package gcc, listed in tests/lab/packages.txt).";
        }

        if (!File.Exists("/usr/include/linux/netfilter/nfnetlink_queue.h"))
        {
            return "Needs the kernel's userspace headers (Debian package linux-libc-dev, listed in tests/lab/packages.txt).";
        }

        return null;
    }

    /// <summary>Compiles and runs a program whose main body is <paramref name="body"/>; returns its key/value lines.</summary>
    internal static Dictionary<string, long> Run(string body)
    {
        string dir = Directory.CreateTempSubdirectory("offload-headers-").FullName;
        try
        {
            string source = Path.Combine(dir, "probe.c"), binary = Path.Combine(dir, "probe");
            File.WriteAllText(source, $"{Includes}\nint main(void)\n{{\n{body}\n    return 0;\n}}\n");
            Shell.Run("cc", "-Wall", "-Werror", "-o", binary, source);
            var values = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (string line in Shell.Run(binary).Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                int space = line.LastIndexOf(' ');
                values[line[..space]] = long.Parse(line[(space + 1)..], CultureInfo.InvariantCulture);
            }

            return values;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    internal static string PrintValue(string key, string cExpression) =>
        $"    printf(\"%s %lld\\n\", \"{key}\", (long long)({cExpression}));";

    internal static string PrintAll(IEnumerable<(string Key, string Expression)> items)
    {
        var sb = new StringBuilder();
        foreach ((string key, string expression) in items)
        {
            sb.AppendLine(PrintValue(key, expression));
        }

        return sb.ToString();
    }
}
