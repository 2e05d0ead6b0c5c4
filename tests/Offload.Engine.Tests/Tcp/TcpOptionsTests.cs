using Offload.Engine.Conntrack.Tcp;
using Xunit;

namespace Offload.Engine.Tests.Tcp;

public class TcpOptionsTests
{
    [Fact]
    public void Typical_linux_syn_options()
    {
        // MSS, SACK permitted, timestamps, NOP, window scale 7: what a Linux client sends.
        byte[] options = Opt.Of(Opt.Mss(1460), Opt.SackPermitted, Opt.Timestamp(123, 0), Opt.Nop, Opt.WindowScale(7));
        TcpHandshakeOptions parsed = TcpOptions.ParseHandshake(options);
        Assert.True(parsed.HasWindowScale);
        Assert.Equal(7, parsed.WindowScale);
        Assert.True(parsed.SackPermitted);
    }

    [Fact]
    public void Empty_options()
    {
        TcpHandshakeOptions parsed = TcpOptions.ParseHandshake([]);
        Assert.False(parsed.HasWindowScale);
        Assert.False(parsed.SackPermitted);
        Assert.Equal(0, parsed.WindowScale);
        Assert.Equal(77u, TcpOptions.HighestSackRightEdge([], 77));
    }

    [Fact]
    public void Window_scale_above_14_is_clamped()
    {
        TcpHandshakeOptions parsed = TcpOptions.ParseHandshake(Opt.WindowScale(200));
        Assert.True(parsed.HasWindowScale);
        Assert.Equal(TcpOptions.MaxWindowScale, parsed.WindowScale);
    }

    [Fact]
    public void Window_scale_with_wrong_length_is_skipped()
    {
        // Kind 3 with length 4 is not a window scale option; the SACK-permitted after it still counts.
        TcpHandshakeOptions parsed = TcpOptions.ParseHandshake([3, 4, 7, 0, 4, 2]);
        Assert.False(parsed.HasWindowScale);
        Assert.True(parsed.SackPermitted);
    }

    [Fact]
    public void End_of_list_stops_parsing()
    {
        TcpHandshakeOptions parsed = TcpOptions.ParseHandshake(Opt.Of(Opt.SackPermitted, Opt.End, Opt.WindowScale(7)));
        Assert.True(parsed.SackPermitted);
        Assert.False(parsed.HasWindowScale);
    }

    [Theory]
    [InlineData(new byte[] { 4, 2, 8, 1, 3, 3, 7 })] // length 1: "silly" option, stop
    [InlineData(new byte[] { 4, 2, 8, 0, 3, 3, 7 })] // length 0: would loop for ever, stop
    [InlineData(new byte[] { 4, 2, 8, 30, 3, 3, 7 })] // length past the end: partial option, stop
    [InlineData(new byte[] { 4, 2, 8 })] // kind without a length byte
    public void Malformed_option_stops_parsing_but_keeps_what_came_before(byte[] options)
    {
        TcpHandshakeOptions parsed = TcpOptions.ParseHandshake(options);
        Assert.True(parsed.SackPermitted);
        Assert.False(parsed.HasWindowScale);
    }

    [Fact]
    public void Truncated_window_scale_is_not_read()
    {
        TcpHandshakeOptions parsed = TcpOptions.ParseHandshake([1, 1, 3, 3]);
        Assert.False(parsed.HasWindowScale);
    }

    [Fact]
    public void Highest_sack_edge_among_blocks()
    {
        byte[] options = Opt.Of(Opt.Nop, Opt.Nop, Opt.Timestamp(1, 2), Opt.Nop, Opt.Nop,
            Opt.Sack((3000, 4000), (6000, 7000), (5000, 5500)));
        Assert.Equal(7000u, TcpOptions.HighestSackRightEdge(options, 2000));
    }

    [Fact]
    public void Sack_edges_below_the_ack_do_not_lower_it()
    {
        // A D-SACK block reports data below the cumulative ack.
        byte[] options = Opt.Of(Opt.Nop, Opt.Nop, Opt.Sack((1000, 1500)));
        Assert.Equal(2000u, TcpOptions.HighestSackRightEdge(options, 2000));
    }

    [Fact]
    public void Sack_edges_compare_across_the_wrap()
    {
        byte[] options = Opt.Of(Opt.Nop, Opt.Nop, Opt.Sack((0xFFFF_FF00, 0x100)));
        Assert.Equal(0x100u, TcpOptions.HighestSackRightEdge(options, 0xFFFF_FE00));
    }

    [Fact]
    public void Only_the_first_well_formed_sack_option_counts()
    {
        byte[] options = Opt.Of(Opt.Sack((3000, 4000)), Opt.Sack((3000, 9000)));
        Assert.Equal(4000u, TcpOptions.HighestSackRightEdge(options, 2000));
    }

    [Fact]
    public void Sack_with_a_bad_length_is_skipped_and_a_later_one_read()
    {
        // Kind 5, length 6: not 2 + 8n, so skipped like an unknown option.
        byte[] options = Opt.Of([5, 6, 0, 0, 0x27, 0x10], Opt.Sack((3000, 4000)));
        Assert.Equal(4000u, TcpOptions.HighestSackRightEdge(options, 2000));
    }

    [Fact]
    public void Sack_block_running_past_the_options_is_ignored()
    {
        byte[] options = Opt.Sack((3000, 4000));
        Assert.Equal(2000u, TcpOptions.HighestSackRightEdge(options.AsSpan(0, options.Length - 1), 2000));
    }
}
