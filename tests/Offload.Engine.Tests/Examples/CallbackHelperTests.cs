using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Examples;

/// <summary>The walk-through's example helper (examples/helpers/callback) does what docs/helpers.md says it does.</summary>
public class CallbackHelperTests
{
    private static readonly NatRule[] Masquerade = [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }];

    private static RouterRig Rig(CallbackHelper helper) =>
        new(Masquerade, [.. HelperBinding.Defaults(helper)]);

    /// <summary>Opens the control connection and sends a command on it; returns what left the router.</summary>
    private static byte[] Send(RouterRig rig, ushort clientPort, string command)
    {
        Assert.True(rig.Out(TcpPacket(Client, clientPort, Server, 111, Syn, seq: 100)).Accepted);
        Assert.True(rig.In(TcpPacket(Server, 111, WanAddress, clientPort, Syn | Ack, seq: 900, ack: 101)).Accepted);
        Assert.True(rig.Out(TcpPacket(Client, clientPort, Server, 111, Ack, seq: 101, ack: 901)).Accepted);
        var hop = rig.Out(TcpPacket(Client, clientPort, Server, 111, Ack | Psh, seq: 101, ack: 901, payload: Ascii(command)));
        Assert.True(hop.Accepted, rig.DropSummary());
        AssertValid(hop.Packet);
        return hop.Packet;
    }

    [Fact]
    public void The_server_can_call_back_the_masqueraded_client()
    {
        var helper = new CallbackHelper();
        Assert.Equal([(ushort)111], helper.Ports);
        var rig = Rig(helper);

        Assert.Equal("CALLBACK 40000\n", PayloadText(Send(rig, 3000, "CALLBACK 40000\n")));

        // The server calls the address it sees (the router's) and reaches the client, as a RELATED connection.
        var hop = rig.In(TcpPacket(Server, 5555, WanAddress, 40000, Syn, seq: 7));
        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, hop.CtInfo);
        AssertValid(hop.Packet);
        Assert.Equal(Ip(Client), Destination(hop.Packet));
        Assert.Equal((ushort)40000, DestinationPort(hop.Packet));
    }

    [Fact]
    public void When_nat_moves_the_port_the_command_is_rewritten_and_sequence_numbers_follow()
    {
        var rig = Rig(new CallbackHelper());
        Send(rig, 3000, "CALLBACK 40000\n");

        // A second client behind the same address asks for the same port: the engine picks another one.
        var rewritten = Send(rig, 3001, "CALLBACK 40000\n");
        string text = PayloadText(rewritten);
        Assert.Matches(@"^CALLBACK \d+\n$", text);
        ushort moved = ushort.Parse(text[9..^1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.NotEqual(40000, moved);

        var hop = rig.In(TcpPacket(Server, 5555, WanAddress, moved, Syn, seq: 7));
        Assert.Equal(CtInfo.Related, hop.CtInfo);
        Assert.Equal(Ip(Client), Destination(hop.Packet));
        Assert.Equal((ushort)40000, DestinationPort(hop.Packet));
    }

    [Fact]
    public void Other_payloads_and_the_reply_direction_are_left_alone()
    {
        var rig = Rig(new CallbackHelper());
        Send(rig, 3000, "CALLBACK x\n");
        Send(rig, 3001, "HELLO 40000\n");
        Assert.Equal(0, rig.Engine.Expectations.Count);
    }
}
