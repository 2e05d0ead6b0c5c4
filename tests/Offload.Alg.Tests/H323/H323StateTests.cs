using System.Buffers;
using Offload.Alg.H323;
using Xunit;

namespace Offload.Alg.Tests.H323;

/// <summary>
/// The H.323 helpers carry what a connection remembers (the signalling port announced and the one the peer was told,
/// the logical channels' RTP ports and the router's) across a restart of the daemon: what they save they restore to the
/// same; another version or length gives fresh state.
/// </summary>
public class H323StateTests
{
    [Fact]
    public void What_a_helper_saves_it_restores_to_the_same_ports()
    {
        var state = new H323State();
        state.SetSignalPorts(0, 5000, 61234);
        state.SetRtp(0, 0, 6000, 64408);
        state.SetRtp(1, 1, 7000, 62000);
        var writer = new ArrayBufferWriter<byte>();
        Assert.True(new H323Helper().SaveState(state, writer));

        var restored = Assert.IsType<H323State>(new H323RasHelper().RestoreState(writer.WrittenSpan, new H245Helper().StateVersion));

        Assert.Equal((5000, 61234), (restored.SignalPort(0), restored.SignalPort(1)));
        Assert.True(restored.TryGetRtp(0, 0, out ushort announced, out ushort translated));
        Assert.Equal((6000, 64408), (announced, translated));
        Assert.True(restored.TryGetRtp(1, 1, out announced, out translated));
        Assert.Equal((7000, 62000), (announced, translated));
        Assert.Equal(2, restored.FindRtp(0, 6002, out bool known)); // slots 0 and 1 are taken (as the kernel's rtp_port[i][dir])
        Assert.False(known);
        var again = new ArrayBufferWriter<byte>();
        Assert.True(H323State.Save(restored, again));
        Assert.Equal(writer.WrittenSpan.ToArray(), again.WrittenSpan.ToArray());
    }

    [Fact]
    public void Another_version_or_length_gives_fresh_state_and_foreign_state_is_not_saved()
    {
        var writer = new ArrayBufferWriter<byte>();
        Assert.True(H323State.Save(new H323State(), writer));
        var helper = new H323Helper();

        Assert.Null(helper.RestoreState(writer.WrittenSpan, version: 2));
        Assert.Null(helper.RestoreState(writer.WrittenSpan[1..], version: 1));
        Assert.False(helper.SaveState(new object(), new ArrayBufferWriter<byte>()));
    }
}
