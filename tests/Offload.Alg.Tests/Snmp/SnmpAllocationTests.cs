using Offload.Alg.Snmp;
using Offload.Alg.Tests.Support;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Snmp.SnmpMessages;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Snmp;

/// <summary>
/// The SNMP helper's share of a message's cost on an established flow: scanning and translating allocate nothing (the
/// offsets and the replacement live on the stack), measured against the same packets through the same router without
/// the helper.
/// </summary>
public class SnmpAllocationTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(40)] // more than the engine's rewrites per packet: one span
    public void Translating_a_message_allocates_nothing_beyond_the_rewritten_packet(int addresses)
    {
        byte[] message = Message(1, TrapV2, [.. Enumerable.Range(0, addresses).Select(_ => Binding(AddressOid, IpAddress(Client)))]);
        var packet = UdpPacket(Client, 40000, Server, 162, message);
        long without = Allocations.PerPacket(Masquerading(), packet);
        var rig = Masquerading(new SnmpHelper(trap: true));
        long with = Allocations.PerPacket(rig, packet);
        Assert.Equal(-1, Payload(rig.Out(packet).Packet).AsSpan().IndexOf(Ip(Client).GetAddressBytes())); // it did translate
        Assert.True(with - without <= 16, $"{with} bytes per packet with the helper, {without} without");
    }
}
