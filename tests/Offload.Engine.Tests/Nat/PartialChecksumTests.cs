using System.Buffers.Binary;
using Offload.Engine.Nat;
using Offload.Engine.Routing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Nat;

/// <summary>
/// Packets queued with the GSO flag may carry an offloaded (partial) checksum: the field holds only the folded
/// pseudo-header sum, for the device to finish. The kernel takes a packet given back with a verdict as final
/// (it marks it CHECKSUM_NONE), so the engine must give it back with a complete, correct checksum.
/// </summary>
public sealed class PartialChecksumTests
{
    [Theory]
    [InlineData(Client, Server)]
    [InlineData(Client6, Server6)]
    public void A_partial_checksum_leaves_complete_and_correct_after_nat(string client, string server)
    {
        var rig = new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }]);
        var packet = TcpPacket(client, 40000, server, 80, payload: new byte[1200]);
        int l4 = L4Offset(packet);
        int l4Length = packet.Length - l4;
        WritePartial(packet, l4, l4Length);

        var buffer = WithRoom(packet, 256);
        var ctx = new PacketContext(buffer, packet.Length, Lan) { OutInterface = Wan, ChecksumPartial = true };
        Assert.Equal(Verdict.Accept, rig.Engine.Process(ref ctx));
        var output = ctx.Packet.ToArray();

        AssertValid(output);
        Assert.NotEqual(Source(packet), Source(output));
    }

    private static void WritePartial(byte[] packet, int l4, int l4Length) =>
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(l4 + 16), OnesComplementSum([], StartSum(packet, l4Length)));
}
