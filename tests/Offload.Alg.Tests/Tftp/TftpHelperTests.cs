using Offload.Alg.Tftp;
using Offload.Engine;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Tftp;

/// <summary>The TFTP helper driven through the real engine: a client behind a masquerading router reads and writes files.</summary>
public class TftpHelperTests
{
    private const ushort TftpPort = 69;
    private const ushort ClientPort = 40000;
    private const ushort ServerTransferPort = 50123;

    private static readonly byte[] ReadRequest = [0, 1, .. Ascii("file.bin"), 0, .. Ascii("octet"), 0];
    private static readonly byte[] WriteRequest = [0, 2, .. Ascii("up.bin"), 0, .. Ascii("octet"), 0, .. Ascii("blksize"), 0, .. Ascii("1428"), 0];
    private static readonly byte[] FirstBlock = [0, 3, 0, 1, .. Ascii("data")];

    private static RouterRig Rig(bool masquerade = true) => new(
        masquerade ? [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }] : null,
        [new HelperBinding(new TftpHelper(), 17, TftpPort)]);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_request_expects_the_servers_answer_from_a_new_port_and_it_reaches_the_client(bool read)
    {
        var rig = Rig();
        var request = rig.Out(UdpPacket(Client, ClientPort, Server, TftpPort, read ? ReadRequest : WriteRequest));
        Assert.True(request.Accepted, rig.DropSummary());
        Assert.Equal(Ip(WanAddress), Source(request.Packet));
        ushort natPort = SourcePort(request.Packet);

        var expectation = Assert.Single(rig.Engine.Expectations.Entries());
        Assert.Equal(A(Server), expectation.Tuple.Source);
        Assert.Equal(A(WanAddress), expectation.Tuple.Destination);
        Assert.Equal(natPort, expectation.Tuple.DestinationPort);
        Assert.Equal((byte)17, expectation.Tuple.Protocol);

        var answer = rig.In(UdpPacket(Server, ServerTransferPort, WanAddress, natPort, read ? FirstBlock : [0, 4, 0, 0]));
        Assert.True(answer.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, answer.CtInfo);
        AssertValid(answer.Packet);
        Assert.Equal(Ip(Client), Destination(answer.Packet));
        Assert.Equal(ClientPort, DestinationPort(answer.Packet));
        Assert.Equal(Ip(Server), Source(answer.Packet));

        // The client's next packet goes back out through the new flow, translated as the request was.
        var back = rig.PassOut(UdpPacket(Client, ClientPort, Server, ServerTransferPort, [0, 4, 0, 1]));
        Assert.Equal(Ip(WanAddress), Source(back));
        Assert.Equal(natPort, SourcePort(back));
        Assert.Empty(rig.Engine.Expectations.Entries()); // taken
    }

    [Fact]
    public void When_masquerade_moves_the_clients_port_the_answer_still_reaches_the_clients_own_port()
    {
        var rig = Rig();

        // Two clients with the same source port: the second one's port is moved by the masquerade.
        var first = rig.Out(UdpPacket(Client, ClientPort, Server, TftpPort, ReadRequest));
        var second = rig.Out(UdpPacket(Client2, ClientPort, Server, TftpPort, ReadRequest));
        ushort firstPort = SourcePort(first.Packet);
        ushort secondPort = SourcePort(second.Packet);
        Assert.NotEqual(firstPort, secondPort);
        Assert.Equal(2, rig.Engine.Expectations.Count);

        var toSecond = rig.In(UdpPacket(Server, ServerTransferPort, WanAddress, secondPort, FirstBlock));
        Assert.Equal(CtInfo.Related, toSecond.CtInfo);
        Assert.Equal(Ip(Client2), Destination(toSecond.Packet));
        Assert.Equal(ClientPort, DestinationPort(toSecond.Packet));

        var toFirst = rig.In(UdpPacket(Server, ServerTransferPort + 1, WanAddress, firstPort, FirstBlock));
        Assert.Equal(CtInfo.Related, toFirst.CtInfo);
        Assert.Equal(Ip(Client), Destination(toFirst.Packet));
        Assert.Equal(ClientPort, DestinationPort(toFirst.Packet));
    }

    [Fact]
    public void Without_nat_and_over_ipv6_the_answer_is_expected_at_the_client()
    {
        var rig = Rig(masquerade: false);
        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, ReadRequest));
        Assert.Equal(A(Client), Assert.Single(rig.Engine.Expectations.Entries()).Tuple.Destination);
        Assert.Equal(CtInfo.Related, rig.In(UdpPacket(Server, ServerTransferPort, Client, ClientPort, FirstBlock)).CtInfo);

        var rig6 = Rig();
        rig6.PassOut(UdpPacket(Client6, ClientPort, Server6, TftpPort, ReadRequest));
        var expectation = Assert.Single(rig6.Engine.Expectations.Entries());
        Assert.Equal(A(Server6), expectation.Tuple.Source);
        var answer = rig6.In(UdpPacket(Server6, ServerTransferPort, expectation.Tuple.Destination.ToString(6), expectation.Tuple.DestinationPort, FirstBlock));
        Assert.Equal(CtInfo.Related, answer.CtInfo);
        Assert.Equal(Ip(Client6), Destination(answer.Packet));
        Assert.Equal(ClientPort, DestinationPort(answer.Packet));
    }

    [Fact]
    public void Other_opcodes_expect_nothing_and_only_nonsense_is_counted()
    {
        var rig = Rig();
        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, FirstBlock)); // DATA
        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, [0, 4, 0, 1])); // ACK
        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, [0, 5, 0, 1, 0])); // ERROR
        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, [0, 6, 0])); // OACK
        Assert.Equal(0, rig[EngineCounter.HelperMalformedCommand]);

        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, [0, 9, 1, 2])); // no such opcode
        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, [0, 0])); // nor this
        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, [1])); // too short for an opcode
        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, [])); // empty
        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, [0, 1, .. Ascii("file")])); // no terminator
        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, [0, 1, 0, .. Ascii("octet"), 0])); // no file name
        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, [0, 2, .. Ascii("f"), 0, .. Ascii("octet")])); // mode unterminated
        Assert.Equal(7, rig[EngineCounter.HelperMalformedCommand]);
        Assert.Empty(rig.Engine.Expectations.Entries());
    }

    [Fact]
    public void A_repeated_request_refreshes_the_one_expectation()
    {
        var rig = Rig();
        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, ReadRequest));
        rig.PassOut(UdpPacket(Client, ClientPort, Server, TftpPort, ReadRequest));
        Assert.Single(rig.Engine.Expectations.Entries());
        Assert.Equal(0, rig[EngineCounter.HelperExpectationFailed]);
    }

    [Theory]
    [InlineData(new byte[] { 0, 1, 0, 0 }, false)]
    [InlineData(new byte[] { 0, 1, 0 }, false)]
    [InlineData(new byte[] { 0, 1, (byte)'f', 0, (byte)'m', 0 }, true)]
    [InlineData(new byte[] { 0, 1, (byte)'f', 0, (byte)'m', 0, (byte)'x' }, true)]
    public void Well_formed_requests_have_a_name_and_a_mode(byte[] packet, bool wellFormed)
    {
        Assert.Equal(wellFormed, TftpHelper.IsWellFormedRequest(packet.AsSpan(2)));
    }
}
