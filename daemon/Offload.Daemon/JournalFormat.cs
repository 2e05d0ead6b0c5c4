using Serilog;
using Serilog.Configuration;
using Serilog.Events;
using Serilog.Formatting;
using Serilog.Formatting.Display;

namespace Offload.Daemon;

/// <summary>
/// How log lines are written: for a terminal or a file, stamped with the time and level; for the journal,
/// without a time (the journal stamps each line itself) and with the level as a syslog priority prefix,
/// <c>&lt;3&gt;</c> for an error, <c>&lt;6&gt;</c> for information (sd-daemon(3)), which journald strips and
/// records as the line's priority, so that <c>journalctl -p warning</c> finds the daemon's warnings.
/// </summary>
internal static class JournalFormat
{
    /// <summary>The console format when the output is not the journal.</summary>
    public const string ConsoleTemplate = "{Timestamp:HH:mm:ss.fff} [{Level:u3}] {Message:lj}{NewLine}{Exception}";

    /// <summary>The console sink: journal lines when <paramref name="journal"/>, otherwise <see cref="ConsoleTemplate"/>.</summary>
    public static LoggerConfiguration ConsoleOrJournal(this LoggerSinkConfiguration sink, bool journal) =>
        journal ? sink.Console(new JournalFormatter()) : sink.Console(outputTemplate: ConsoleTemplate);

    /// <summary>The syslog priority of a level: 2 critical, 3 error, 4 warning, 6 informational, 7 debug.</summary>
    public static int Priority(LogEventLevel level) => level switch
    {
        LogEventLevel.Fatal => 2,
        LogEventLevel.Error => 3,
        LogEventLevel.Warning => 4,
        LogEventLevel.Information => 6,
        _ => 7, // Debug, Verbose
    };

    /// <summary>
    /// True when standard output is the journal's stream: systemd sets <c>$JOURNAL_STREAM</c> to the
    /// "device:inode" of that stream, and a process started from a service inherits the variable even when its
    /// output goes elsewhere (a file, a pipe), so the inode must be the one of our standard output too.
    /// </summary>
    public static bool StandardOutputIsJournal()
    {
        string? stdout = null;
        try
        {
            stdout = new FileInfo("/proc/self/fd/1").LinkTarget;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }

        return IsJournal(Environment.GetEnvironmentVariable("JOURNAL_STREAM"), stdout);
    }

    /// <summary>
    /// Whether a <c>$JOURNAL_STREAM</c> value ("device:inode") names the socket standard output is linked to
    /// (<c>socket:[inode]</c>, as /proc/self/fd shows it). The journal's stream is always a socket.
    /// </summary>
    public static bool IsJournal(string? journalStream, string? standardOutputTarget)
    {
        if (journalStream is null || standardOutputTarget is null)
        {
            return false;
        }

        int colon = journalStream.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0 || colon == journalStream.Length - 1)
        {
            return false;
        }

        return standardOutputTarget == "socket:[" + journalStream[(colon + 1)..] + "]";
    }

    /// <summary>Each line of an event (an exception's too) prefixed with its priority, so none falls back to the default.</summary>
    internal sealed class JournalFormatter : ITextFormatter
    {
        private readonly MessageTemplateTextFormatter _text = new("{Message:lj}{NewLine}{Exception}");

        public void Format(LogEvent logEvent, TextWriter output)
        {
            using var buffer = new StringWriter();
            _text.Format(logEvent, buffer);
            string prefix = "<" + Priority(logEvent.Level).ToString(System.Globalization.CultureInfo.InvariantCulture) + ">";
            foreach (var line in buffer.ToString().Split('\n'))
            {
                string trimmed = line.TrimEnd('\r');
                if (trimmed.Length > 0)
                {
                    output.Write(prefix);
                    output.Write(trimmed);
                    output.Write('\n');
                }
            }
        }
    }
}
