using System.Buffers;
using Offload.Alg.Ftp;
using Xunit;

namespace Offload.Alg.Tests.Ftp;

/// <summary>
/// The FTP helper carries its per-connection state (where, in each direction, a segment starts after a newline: the
/// only place it reads commands) across a restart of the daemon. What it saves, it restores to the same; what another
/// version or a damaged snapshot holds, it refuses, and the connection starts afresh as after a reload.
/// </summary>
public class FtpStateTests
{
    // Direction 0: two positions known; direction 1: one.
    private static readonly byte[] Saved = [2, 0x10, 0, 0, 0, 0x20, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

    [Fact]
    public void What_it_restores_saves_back_to_the_same_bytes()
    {
        var helper = new FtpHelper();
        var state = helper.RestoreState(Saved, version: 1);

        Assert.NotNull(state);
        var writer = new ArrayBufferWriter<byte>();
        Assert.True(helper.SaveState(state, writer));
        Assert.Equal(Saved, writer.WrittenSpan.ToArray());
        Assert.Equal(1, helper.StateVersion);
    }

    [Fact]
    public void Another_version_a_wrong_length_or_impossible_counts_give_fresh_state()
    {
        var helper = new FtpHelper();
        var impossible = Saved.ToArray();
        impossible[0] = 3;

        Assert.Null(helper.RestoreState(Saved, version: 2));
        Assert.Null(helper.RestoreState(Saved.AsSpan(1), version: 1));
        Assert.Null(helper.RestoreState(impossible, version: 1));
        Assert.False(helper.SaveState(new object(), new ArrayBufferWriter<byte>()));
    }
}
