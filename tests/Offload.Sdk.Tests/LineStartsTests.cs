using System.Buffers;
using Offload.Sdk;
using Xunit;

namespace Offload.Sdk.Tests;

/// <summary>
/// LineStarts keeps what the kernel's FTP helper keeps as seq_aft_nl: per direction, the two latest positions right after
/// a line's end, a newer one replacing the older (in sequence space, across the 32-bit wrap), and nothing else; its
/// saved form is the FTP helper's state of version 1, and an impossible one is refused.
/// </summary>
public class LineStartsTests
{
    [Fact]
    public void A_segment_starts_a_line_only_after_a_newline_seen_in_its_own_direction()
    {
        var starts = new LineStarts();
        Assert.False(starts.IsAt(ConnDirection.Original, 100));
        starts.RememberIfLineEnds(ConnDirection.Original, 100, "USER x\r\n"u8);
        starts.RememberIfLineEnds(ConnDirection.Original, 108, "PASS "u8); // no line end: nothing to remember
        Assert.True(starts.IsAt(ConnDirection.Original, 108));
        Assert.False(starts.IsAt(ConnDirection.Original, 113));
        Assert.False(starts.IsAt(ConnDirection.Reply, 108));
        Assert.Equal((1, 0), (starts.Known(ConnDirection.Original), starts.Known(ConnDirection.Reply)));
    }

    [Fact]
    public void Two_positions_are_kept_and_a_newer_one_replaces_the_older_across_the_wrap()
    {
        var starts = new LineStarts();
        starts.Remember(ConnDirection.Reply, 0xFFFF_FFF0);
        starts.Remember(ConnDirection.Reply, 0xFFFF_FFF8);
        starts.Remember(ConnDirection.Reply, 0x0000_0004); // after the wrap: newer than both
        Assert.False(starts.IsAt(ConnDirection.Reply, 0xFFFF_FFF0));
        Assert.True(starts.IsAt(ConnDirection.Reply, 0xFFFF_FFF8));
        Assert.True(starts.IsAt(ConnDirection.Reply, 0x0000_0004));

        starts.Remember(ConnDirection.Reply, 0xFFFF_FF00); // older than both: a retransmission's, ignored
        Assert.False(starts.IsAt(ConnDirection.Reply, 0xFFFF_FF00));
        Assert.Equal(2, starts.Known(ConnDirection.Reply));
    }

    [Fact]
    public void What_it_writes_reads_back_the_same_and_impossible_bytes_are_refused()
    {
        var starts = new LineStarts();
        starts.Remember(ConnDirection.Original, 0x10);
        starts.Remember(ConnDirection.Original, 0x20);
        starts.Remember(ConnDirection.Reply, 0xFFFF_FFFF);
        var writer = new ArrayBufferWriter<byte>();
        starts.WriteTo(writer);
        byte[] saved = writer.WrittenSpan.ToArray();
        Assert.Equal([2, 0x10, 0, 0, 0, 0x20, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], saved);

        var again = LineStarts.ReadFrom(saved);
        Assert.NotNull(again);
        Assert.True(again.IsAt(ConnDirection.Original, 0x20) && again.IsAt(ConnDirection.Reply, 0xFFFF_FFFF));
        var damaged = saved.ToArray();
        damaged[9] = 3;
        Assert.Null(LineStarts.ReadFrom(damaged));
        Assert.Null(LineStarts.ReadFrom(saved.AsSpan(1)));
    }
}
