using System.Buffers;
using Offload.Alg.Rpc;
using Offload.Engine;
using Offload.Engine.Snapshot;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Rpc.RpcMessages;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Rpc;

/// <summary>
/// The portmapper helper carries its per-connection state across a restart of the daemon: the lookups a connection made
/// (an answer after the restart is still matched and expected) and where each TCP direction stands in its record
/// marking. What it saves it restores to the same; another version or damaged bytes give fresh state.
/// </summary>
public class RpcStateTests
{
    private const long WrittenAt = 1_800_000_000_000_000_000L;

    [Fact]
    public void A_lookup_made_before_a_restart_is_answered_expected_and_rewritten_after_it()
    {
        var before = RpcRig.PortForward();
        var flow = new RpcTcpFlow(before, forwarded: true);
        Assert.True(flow.Call(Concat(Record(GetAddrCall(0x42, "tcp")), Record(GetPortCall(0x43, protocol: ProtoUdp)))).Accepted);

        using var image = EngineSnapshot.Capture(before.Engine, WrittenAt, final: true);
        using var stream = new MemoryStream();
        image.WriteTo(stream);
        var after = RpcRig.PortForward();
        var loaded = EngineSnapshot.Load(after.Engine, new MemoryStream(stream.ToArray()), WrittenAt + 1_000_000_000L);
        Assert.Equal(1, loaded.HelperStatesRestored);

        flow.MoveTo(after);
        var answer = flow.Answer(Concat(Record(GetAddrReply(0x42, Universal(InternalServer, 2049))), Record(GetPortReply(0x43, 20048))));
        Assert.True(answer.Accepted, after.DropSummary());
        Assert.Equal(2, after.Expectations.Count);
        Assert.DoesNotContain(InternalServer, System.Text.Encoding.ASCII.GetString(Payload(answer.Packet)));
    }

    [Fact]
    public void What_it_restores_saves_back_to_the_same_bytes_and_damage_gives_fresh_state()
    {
        var helper = new RpcHelper();
        var state = new RpcState();
        state.Remember(new RpcCall(7, RpcLookup.GetAddr, 17));
        state.Remember(new RpcCall(8, RpcLookup.GetPort, 6));
        state.Reply.Known = true;
        state.Reply.NextHeader = 0xfffffff0;
        state.Reply.SkipRecord = true;
        state.Reply.Remember(5, 9, true);
        state.Reply.Remember(0xfffffff0, 0xfffffff8, false);
        var writer = new ArrayBufferWriter<byte>();
        Assert.True(helper.SaveState(state, writer));
        var saved = writer.WrittenSpan.ToArray();
        Assert.Equal(RpcState.SavedLength, saved.Length);
        Assert.Equal(1, helper.StateVersion);

        var restored = Assert.IsType<RpcState>(helper.RestoreState(saved, 1));
        var again = new ArrayBufferWriter<byte>();
        Assert.True(helper.SaveState(restored, again));
        Assert.Equal(saved, again.WrittenSpan.ToArray());
        Assert.True(restored.TryFind(7, out var call) && call == new RpcCall(7, RpcLookup.GetAddr, 17));

        Assert.Null(helper.RestoreState(saved, 2));
        Assert.Null(helper.RestoreState(saved.AsSpan(1), 1));
        Assert.True(restored.Reply.TryRecall(5, out uint header, out bool skip) && header == 9 && skip);
        foreach (int at in new[] { 0, 1, 6, 7, RpcState.SavedLength - RpcStream.SavedLength, RpcState.SavedLength - RpcStream.SavedLength + 5, RpcState.SavedLength - 1 })
        {
            var damaged = saved.ToArray();
            damaged[at] = 0xee;
            Assert.Null(helper.RestoreState(damaged, 1));
        }

        Assert.False(helper.SaveState(new object(), new ArrayBufferWriter<byte>()));
    }
}
