using System.Buffers.Binary;
using Offload.Engine.Nat;
using Offload.Engine.Routing;
using Xunit;
using static Offload.Engine.Tests.Nat.RouterRig;
using static Offload.Engine.Tests.Support.TestPackets;

namespace Offload.Engine.Tests.Nat;

/// <summary>
/// Packets queued with the GSO flag may carry an offloaded (partial) checksum: the field holds only the folded
/// pseudo-header sum, which the device completes later. NAT must move that sum with the addresses, leave it alone
/// for the ports, and never "fix" it into a full checksum.
/// </summary>
public sealed class PartialChecksumTests
{
    [Theory]
    [InlineData(Client, Server)]
    [InlineData(Client6, Server6)]
    public void Nat_moves_a_partial_checksum_with_the_addresses_only(string client, string server)
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

        // What the kernel would hold now: the pseudo-header sum over the translated addresses, same length.
        ushort expected = OnesComplementSum([], StartSum(output, l4Length));
        Assert.Equal(expected, BinaryPrimitives.ReadUInt16BigEndian(output.AsSpan(l4 + 16)));
        Assert.NotEqual(Source(packet), Source(output));
    }

    private static void WritePartial(byte[] packet, int l4, int l4Length) =>
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(l4 + 16), OnesComplementSum([], StartSum(packet, l4Length)));
}
