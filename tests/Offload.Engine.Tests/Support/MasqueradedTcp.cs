using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Support;

/// <summary>
/// One MASQUERADE'd TCP connection through a <see cref="RouterRig"/>, for the tests that carry an engine's state
/// elsewhere (a snapshot, a standby router) and check that the connection goes on there.
/// </summary>
internal static class MasqueradedTcp
{
    /// <summary>The client's initial sequence number.</summary>
    public const uint C = 1000;

    /// <summary>The server's initial sequence number.</summary>
    public const uint S = 5000;

    public const ushort ClientPort = 40000;
    public const ushort ServicePort = 2121;

    /// <summary>MASQUERADE out of the WAN into a small port range.</summary>
    public static readonly NatRule[] Masquerade = [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan, Range = Ports(61000, 61010) }];

    /// <summary>SYN, SYN/ACK, ACK from the client to the server; returns the SYN as it left (its source port is the NAT port).</summary>
    public static byte[] Establish(RouterRig rig, ushort clientPort = ClientPort)
    {
        var syn = rig.PassOut(TcpPacket(Client, clientPort, Server, ServicePort, Syn, seq: C));
        rig.PassIn(TcpPacket(Server, ServicePort, WanAddress, SourcePort(syn), Syn | Ack, seq: S, ack: C + 1));
        rig.PassOut(TcpPacket(Client, clientPort, Server, ServicePort, Ack, seq: C + 1, ack: S + 1));
        return syn;
    }
}
