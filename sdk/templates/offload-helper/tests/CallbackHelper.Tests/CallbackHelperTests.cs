using Offload.Sdk;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

/// <summary>The helper on the engine: a client masqueraded behind a router (RouterRig), its server beyond the WAN.</summary>
public class CallbackHelperTests
{
    private static readonly ushort Port = new CallbackHelper().Ports[0];

    /// <summary>Opens the control connection from the client and sends a command on it; returns it as it left the router.</summary>
    private static byte[] Send(RouterRig rig, ushort clientPort, string command)
    {
        var syn = rig.PassOut(TcpPacket(Client, clientPort, Server, Port, Syn, seq: 100));
        // The server answers the client as it sees it: the router's address, the port NAT gave it.
        rig.PassIn(TcpPacket(Server, Port, WanAddress, SourcePort(syn), Syn | Ack, seq: 900, ack: 101));
        rig.PassOut(TcpPacket(Client, clientPort, Server, Port, Ack, seq: 101, ack: 901));
        return rig.PassOut(TcpPacket(Client, clientPort, Server, Port, Ack | Psh, seq: 101, ack: 901, payload: Ascii(command)));
    }

    [Fact]
    public void The_server_reaches_the_masqueraded_client_as_a_related_connection()
    {
        var rig = Masquerading(new CallbackHelper());

        Assert.Equal("CALLBACK 40000\n", PayloadText(Send(rig, 3000, "CALLBACK 40000\n")));
        var expectation = Assert.Single(rig.Expectations);
        Assert.Equal(40000, expectation.Tuple.DestinationPort);

        var back = rig.In(TcpPacket(Server, 5555, WanAddress, 40000, Syn, seq: 7));
        Assert.True(back.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, back.CtInfo);
        AssertValid(back.Packet);
        Assert.Equal(Ip(Client), Destination(back.Packet));
    }

    [Fact]
    public void When_nat_moves_the_port_the_command_is_rewritten()
    {
        var rig = Masquerading(new CallbackHelper());
        Send(rig, 3000, "CALLBACK 40000\n");

        // A second client asks for the same port of the router's address: the engine picks another, the helper says so.
        string rewritten = PayloadText(Send(rig, 3001, "CALLBACK 40000\n"));
        Assert.Matches(@"^CALLBACK \d+\n$", rewritten);
        Assert.NotEqual("CALLBACK 40000\n", rewritten);
    }

    [Fact]
    public void Other_payloads_announce_nothing()
    {
        var rig = Masquerading(new CallbackHelper());
        Send(rig, 3000, "CALLBACK x\n");
        Send(rig, 3001, "HELLO 40000\n");
        Assert.Empty(rig.Expectations);
    }
}
