using Offload.Daemon;
using Serilog.Events;
using Serilog.Parsing;
using Xunit;

namespace Offload.Daemon.Tests;

public class JournalFormatTests
{
    [Theory]
    [InlineData(LogEventLevel.Fatal, 2)]
    [InlineData(LogEventLevel.Error, 3)]
    [InlineData(LogEventLevel.Warning, 4)]
    [InlineData(LogEventLevel.Information, 6)]
    [InlineData(LogEventLevel.Debug, 7)]
    [InlineData(LogEventLevel.Verbose, 7)]
    public void Levels_map_to_syslog_priorities(LogEventLevel level, int priority) =>
        Assert.Equal(priority, JournalFormat.Priority(level));

    [Fact]
    public void A_journal_line_has_its_priority_and_no_time()
    {
        string text = Format(LogEventLevel.Warning, "Queue {Queue}: the socket buffer overflowed", null, ("Queue", 1));

        Assert.Equal("<4>Queue 1: the socket buffer overflowed\n", text);
    }

    [Fact]
    public void Every_line_of_an_exception_carries_the_priority()
    {
        Exception exception;
        try
        {
            throw new InvalidOperationException("first line\nsecond line");
        }
        catch (InvalidOperationException e)
        {
            exception = e;
        }

        string text = Format(LogEventLevel.Error, "Queue {Queue}: the engine failed", exception, ("Queue", 0));
        string[] lines = text.TrimEnd('\n').Split('\n');

        Assert.True(lines.Length >= 4, text); // message, two lines of exception text, a stack frame
        Assert.All(lines, line => Assert.StartsWith("<3>", line, StringComparison.Ordinal));
        Assert.Equal("<3>Queue 0: the engine failed", lines[0]);
        Assert.Contains(lines, line => line.Contains("second line", StringComparison.Ordinal));
    }

    [Fact]
    public void The_console_format_outside_the_journal_keeps_time_and_level()
    {
        Assert.StartsWith("{Timestamp:HH:mm:ss.fff} [{Level:u3}] ", JournalFormat.ConsoleTemplate, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("8:123456", "socket:[123456]", true)]
    [InlineData("8:123456", "socket:[123457]", false)] // another socket: started from a service, writing elsewhere
    [InlineData("8:123456", "pipe:[123456]", false)]
    [InlineData("8:123456", "/var/log/offloadd.log", false)]
    [InlineData("8:123456", null, false)]
    [InlineData(null, "socket:[123456]", false)]
    [InlineData("123456", "socket:[123456]", false)] // not device:inode
    [InlineData("8:", "socket:[]", false)]
    public void The_journal_is_the_stream_JOURNAL_STREAM_names(string? journalStream, string? stdout, bool expected) =>
        Assert.Equal(expected, JournalFormat.IsJournal(journalStream, stdout));

    private static string Format(LogEventLevel level, string template, Exception? exception, params (string Name, object Value)[] properties)
    {
        var parsed = new MessageTemplateParser().Parse(template);
        var logEvent = new LogEvent(
            DateTimeOffset.Now,
            level,
            exception,
            parsed,
            properties.Select(p => new LogEventProperty(p.Name, new ScalarValue(p.Value))));
        using var output = new StringWriter();
        new JournalFormat.JournalFormatter().Format(logEvent, output);
        return output.ToString();
    }
}
