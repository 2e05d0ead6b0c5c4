using Offload.Alg.Snmp;
using Offload.Engine;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Snmp.SnmpMessages;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Snmp;

/// <summary>
/// The SNMP helpers through the engine (the kernel's nf_nat_snmp_basic): when the sender of an SNMPv1/v2c message is
/// translated, the IpAddress values that are its own address become the address the peer knows it by, in variable
/// bindings and in a v1 trap's agent-addr (which the kernel cannot parse and drops), same length, checksum valid;
/// anything else is left alone.
/// </summary>
public class SnmpHelperTests
{
    private const string Other = "10.9.9.9";

    private static RouterRig Masquerade() => Masquerading(new SnmpHelper(trap: false), new SnmpHelper(trap: true));

    /// <summary>A port forward of UDP 161 on the WAN to the LAN's agent.</summary>
    private static RouterRig Forward() => new(
        [
            new NatRule { Action = NatAction.Masquerade, OutInterface = Wan },
            new NatRule { Action = NatAction.Dnat, Family = 4, Protocol = 17, InInterface = Wan, DestinationPortMin = 161, DestinationPortMax = 161, Range = Range(InternalServer) },
        ],
        [.. HelperBinding.Defaults(new SnmpHelper(trap: false))]);

    private static byte[] Sent(RouterRig rig, byte[] packet)
    {
        var hop = rig.Out(packet);
        Assert.True(hop.Accepted, rig.DropSummary());
        AssertValid(hop.Packet);
        return Payload(hop.Packet);
    }

    [Fact]
    public void A_v2c_trap_from_behind_the_nat_names_the_public_address_instead_of_the_agents_own()
    {
        var rig = Masquerade();
        byte[] trap = TrapV2Message(Client);
        byte[] sent = Sent(rig, UdpPacket(Client, 40000, Server, 162, trap));
        byte[] expected = (byte[])trap.Clone();
        Ip(WanAddress).GetAddressBytes().CopyTo(expected, OffsetOf(trap, Client));
        Assert.Equal(expected, sent);
        Assert.Equal(0, rig[EngineCounter.HelperMalformedCommand]);
    }

    [Fact]
    public void A_v1_traps_agent_addr_and_bindings_are_translated_where_the_kernel_drops_the_trap()
    {
        var rig = Masquerade();
        byte[] trap = TrapV1Message(Client, Binding(AddressOid, IpAddress(Client)), Binding(SysUpTime, IpAddress(Other)));
        byte[] sent = Sent(rig, UdpPacket(Client, 40000, Server, 162, trap));
        Assert.Equal(trap.Length, sent.Length);
        Assert.Equal(-1, sent.AsSpan().IndexOf(Ip(Client).GetAddressBytes()));
        Assert.Equal(OffsetOf(trap, Client), OffsetOf(sent, WanAddress));      // agent-addr
        Assert.Equal(OffsetOf(trap, Client, 1), OffsetOf(sent, WanAddress, 1)); // the binding
        Assert.Equal(OffsetOf(trap, Other), OffsetOf(sent, Other));             // another address stays
    }

    [Fact]
    public void A_set_request_from_a_masqueraded_manager_naming_itself_is_translated_and_the_answer_passes_as_sent()
    {
        var rig = Masquerade();
        byte[] set = Message(1, SetRequest, Binding(AddressOid, IpAddress(Client)));
        var request = rig.Out(UdpPacket(Client, 40000, Server, 161, set));
        Assert.True(request.Accepted, rig.DropSummary());
        Assert.Equal(OffsetOf(set, Client), OffsetOf(Payload(request.Packet), WanAddress));

        // The agent echoes the public address, and, being no one's translation, nothing in its answer changes; the
        // kernel would map the manager's private address there too, which an outside agent cannot know.
        byte[] answer = Message(1, Response, Binding(AddressOid, IpAddress(WanAddress)), Binding(SysUpTime, IpAddress(Client)));
        var back = rig.In(UdpPacket(Server, 161, WanAddress, SourcePort(request.Packet), answer));
        Assert.True(back.Accepted, rig.DropSummary());
        Assert.Equal(answer, Payload(back.Packet));
    }

    [Fact]
    public void An_agent_behind_a_port_forward_answers_with_the_forwarded_address_in_place_of_its_own()
    {
        var rig = Forward();
        var get = rig.In(UdpPacket(Server, 50000, WanAddress, 161, Message(1, GetRequest, Binding(AddressOid, Null))));
        Assert.True(get.Accepted, rig.DropSummary());
        Assert.Equal(Ip(InternalServer), Destination(get.Packet));

        byte[] answer = Message(1, Response, Binding(AddressOid, IpAddress(InternalServer)));
        byte[] sent = Sent(rig, UdpPacket(InternalServer, 161, Server, 50000, answer));
        Assert.Equal(OffsetOf(answer, InternalServer), OffsetOf(sent, WanAddress));
    }

    [Fact]
    public void Without_translation_nothing_is_read_even_garbage()
    {
        var rig = new RouterRig(null, [.. HelperBinding.Defaults(new SnmpHelper(trap: true))]);
        byte[] garbage = [0x30, 0x84, 0xff, 0xff, 0xff, 0xff];
        Assert.Equal(garbage, Sent(rig, UdpPacket(Client, 40000, Server, 162, garbage)));
        Assert.Equal(0, rig[EngineCounter.HelperMalformedCommand]);
    }

    [Theory]
    [InlineData(new byte[] { 0x30, 0x03, 0x02, 0x01 })]                     // the version cut off
    [InlineData(new byte[] { 0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00 })]   // the indefinite form
    [InlineData(new byte[] { 0x04, 0x02, 0x01, 0x01 })]                     // not a SEQUENCE
    public void A_malformed_message_from_a_translated_sender_is_dropped_and_counted(byte[] message)
    {
        var rig = Masquerade();
        Assert.False(rig.Out(UdpPacket(Client, 40000, Server, 161, message)).Accepted);
        Assert.Equal(1, rig[EngineCounter.HelperMalformedCommand]);
    }

    [Fact]
    public void An_ip_address_value_of_another_length_than_four_is_malformed_as_in_the_kernel()
    {
        var rig = Masquerade();
        byte[] message = Message(1, TrapV2, Binding(AddressOid, Tlv(0x40, [192, 168, 1, 10, 0])));
        Assert.False(rig.Out(UdpPacket(Client, 40000, Server, 162, message)).Accepted);
        Assert.Equal(1, rig[EngineCounter.HelperMalformedCommand]);
    }

    [Fact]
    public void An_snmpv3_message_passes_untouched_and_uncounted()
    {
        var rig = Masquerade();
        // version 3, then what SNMPv3 carries (header data, security parameters, scoped PDU): not read.
        byte[] message = Seq(Int(3), Seq(Int(1), Int(65507), OctetString("\u0004"), Int(3)), OctetString("usm"), IpAddress(Client));
        Assert.Equal(message, Sent(rig, UdpPacket(Client, 40000, Server, 161, message)));
        Assert.Equal(0, rig[EngineCounter.HelperMalformedCommand]);
    }

    [Fact]
    public void Long_form_lengths_are_read()
    {
        var rig = Masquerade();
        byte[] bindings = Tlv(0x30, Binding(AddressOid, IpAddress(Client)), longForm: true);
        byte[] message = Tlv(0x30, [.. Int(1), .. OctetString("public"), .. Tlv(TrapV2, [.. Int(7), .. Int(0), .. Int(0), .. bindings], longForm: true)], longForm: true);
        byte[] sent = Sent(rig, UdpPacket(Client, 40000, Server, 162, message));
        Assert.Equal(OffsetOf(message, Client), OffsetOf(sent, WanAddress));
    }

    [Theory]
    [InlineData(3)]
    [InlineData(SnmpHelper.SeparateRewrites)]
    [InlineData(SnmpHelper.SeparateRewrites + 1)]
    [InlineData(80)] // 40 occurrences, 50 bytes apart: within one rewrite's span
    public void Every_occurrence_is_translated_however_many(int count)
    {
        var rig = Masquerade();
        byte[] message = Message(1, Response, [.. Enumerable.Range(0, count).Select(i => Binding(AddressOid, IpAddress(i % 2 == 0 ? Client : Other)))]);
        byte[] sent = Sent(rig, UdpPacket(Client, 40000, Server, 161, message));
        Assert.Equal(message.Length, sent.Length);
        Assert.Equal(-1, sent.AsSpan().IndexOf(Ip(Client).GetAddressBytes()));
        Assert.Equal((count + 1) / 2, Occurrences(sent, WanAddress));
        Assert.Equal(count / 2, Occurrences(sent, Other));
        for (int i = 0; i < (count + 1) / 2; i++)
        {
            Assert.Equal(OffsetOf(message, Client, i), OffsetOf(sent, WanAddress, i));
        }
    }

    [Fact]
    public void Occurrences_spread_wider_than_one_rewrite_can_span_drop_the_message_rather_than_leak_the_address()
    {
        var rig = Masquerade();
        byte[] message = Message(1, Response, [.. Enumerable.Range(0, 300).Select(_ => Binding(AddressOid, IpAddress(Client)))]);
        Assert.False(rig.Out(UdpPacket(Client, 40000, Server, 161, message)).Accepted);
        Assert.Equal(1, rig[EngineCounter.HelperRewriteFailed]);
    }

    [Fact]
    public void The_two_helpers_carry_the_kernels_names_and_ports()
    {
        var agent = Assert.IsType<SnmpHelper>(BuiltInHelpers.Create("snmp", loose: false));
        var trap = Assert.IsType<SnmpHelper>(BuiltInHelpers.Create("snmp_trap", loose: false));
        Assert.Equal(("snmp", 161, (byte)17), (agent.Name, (int)Assert.Single(agent.Ports), agent.Protocol));
        Assert.Equal(("snmp_trap", 162, (byte)17), (trap.Name, (int)Assert.Single(trap.Ports), trap.Protocol));
        Assert.Equal((byte)4, trap.Family);
    }

    [Fact]
    public void A_request_to_a_broadcast_address_lets_in_the_answers_of_the_agents_there_as_the_kernels_snmp_helper()
    {
        var rig = Masquerade();
        var request = rig.Out(UdpPacket(Client, 40000, "198.51.100.255", 161, Message(1, GetRequest, Binding(SysUpTime, Null))));
        Assert.True(request.Accepted, rig.DropSummary());
        var expectation = Assert.Single(rig.Expectations);
        Assert.Equal((A("198.51.100.0"), A(WanAddress2)), (expectation.Tuple.Source, expectation.Tuple.Destination));

        byte[] answer = Message(1, Response, Binding(SysUpTime, TimeTicks(7)));
        var back = rig.In(UdpPacket("198.51.100.7", 161, WanAddress2, SourcePort(request.Packet), answer));
        Assert.True(back.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, back.CtInfo);
        Assert.Equal((Ip(Client), (ushort)40000), (Destination(back.Packet), DestinationPort(back.Packet)));
        Assert.Equal(answer, Payload(back.Packet));
    }

    [Fact]
    public void A_trap_to_a_broadcast_address_expects_nothing_as_the_kernels_snmp_trap()
    {
        var rig = Masquerade();
        Assert.True(rig.Out(UdpPacket(Client, 40000, "198.51.100.255", 162, TrapV2Message(Other))).Accepted);
        Assert.Empty(rig.Expectations);
    }
}
