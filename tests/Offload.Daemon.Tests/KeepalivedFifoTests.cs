using Microsoft.Extensions.Logging.Abstractions;
using Offload.Daemon.Replication;
using Xunit;

namespace Offload.Daemon.Tests;

/// <summary>
/// keepalived's notify_fifo lines give the role: MASTER is active; BACKUP, FAULT and STOP standby; a sync group's
/// line speaks for its instances, and another group's or instance's line changes nothing.
/// </summary>
public sealed class KeepalivedFifoTests
{
    private static KeepalivedFifo Fifo(string? name) => new("/nonexistent", name, (_, _) => { }, NullLogger.Instance);

    [Fact]
    public void The_named_groups_state_is_the_role_and_other_lines_are_ignored()
    {
        var fifo = Fifo("G1");
        Assert.True(fifo.Parse("GROUP \"G1\" MASTER"));
        Assert.False(fifo.Parse("GROUP \"G1\" BACKUP"));
        Assert.False(fifo.Parse("GROUP \"G1\" FAULT"));
        Assert.Null(fifo.Parse("GROUP \"G2\" MASTER"));
        Assert.Null(fifo.Parse("INSTANCE \"VI_LAN\" MASTER 100"));
        Assert.Null(fifo.Parse("garbage"));
        Assert.Null(fifo.Parse(""));
    }

    [Fact]
    public void Without_a_name_instances_count_until_a_group_speaks()
    {
        var fifo = Fifo(null);
        Assert.True(fifo.Parse("INSTANCE \"VI_LAN\" MASTER 100"));
        Assert.False(fifo.Parse("GROUP \"G1\" BACKUP"));
        Assert.Null(fifo.Parse("INSTANCE \"VI_LAN\" MASTER 100"));
        Assert.True(fifo.Parse("GROUP \"G1\" MASTER"));
    }
}
