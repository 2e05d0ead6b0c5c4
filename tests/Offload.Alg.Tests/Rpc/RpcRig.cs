using Offload.Alg.Rpc;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Rpc;

/// <summary>
/// The two routers of the RPC tests: a LAN masqueraded towards a portmapper on the WAN, and a port forward of
/// port 111 (TCP and UDP) from the router's WAN address to a portmapper on the LAN, with the daemon's port range
/// (so that expected connections are placed at the router in it); and a TCP portmapper connection through either.
/// </summary>
internal static class RpcRig
{
    public const ushort NatMin = 61000;
    public const ushort NatMax = 65535;

    public static RouterRig Masquerade() => new(
        [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }],
        HelperBinding.Defaults(new RpcHelper()));

    public static RouterRig PortForward() => new(
        [
            new NatRule { Action = NatAction.Dnat, InInterface = Wan, Protocol = ProtoTcp, DestinationPortMin = 111, DestinationPortMax = 111, Range = Range(InternalServer) },
            new NatRule { Action = NatAction.Dnat, InInterface = Wan, Protocol = ProtoUdp, DestinationPortMin = 111, DestinationPortMax = 111, Range = Range(InternalServer) },
            new NatRule { Action = NatAction.Masquerade, OutInterface = Wan },
        ],
        HelperBinding.Defaults(new RpcHelper()),
        natPorts: (NatMin, NatMax));

    public static RouterRig Routed() => new(null, HelperBinding.Defaults(new RpcHelper()));
}

/// <summary>
/// One TCP connection to a portmapper through a rig: the client's segments and the server's, each side's sequence
/// numbers kept as that side numbers them. Masqueraded: the client on the LAN calls <see cref="RouterRig.Server"/>;
/// port-forwarded: <see cref="RouterRig.Server"/> on the WAN calls the router, which forwards to
/// <see cref="RouterRig.InternalServer"/>.
/// </summary>
internal sealed class RpcTcpFlow
{
    private RouterRig _rig;
    private readonly bool _forwarded;
    private readonly string _client;
    private readonly string _server;
    private readonly ushort _clientPort;
    private readonly ushort _serverPortAsClientSees;
    private readonly ushort _serverPort;
    private readonly string _clientAsServerSees;
    private readonly ushort _clientPortAsServerSees;
    private uint _clientSeq = 101;
    private uint _serverSeq = 901;

    public RpcTcpFlow(RouterRig rig, bool forwarded, ushort clientPort = 40000, string? client = null, ushort serverPort = 111)
    {
        _rig = rig;
        _forwarded = forwarded;
        _clientPort = clientPort;
        _client = client ?? (forwarded ? Server : Client);
        _server = forwarded ? InternalServer : Server;
        _serverPortAsClientSees = serverPort;
        var syn = FromClient(TcpPacket(_client, _clientPort, forwarded ? WanAddress : Server, serverPort, Syn, seq: 100));
        Xunit.Assert.True(syn.Accepted, "the SYN passes");
        _serverPort = DestinationPort(syn.Packet);
        _clientAsServerSees = Source(syn.Packet).ToString();
        _clientPortAsServerSees = SourcePort(syn.Packet);
        Xunit.Assert.True(FromServer(TcpPacket(_server, _serverPort, _clientAsServerSees, _clientPortAsServerSees, Syn | Ack, seq: 900, ack: 101)).Accepted, "the SYN/ACK passes");
        Xunit.Assert.True(FromClient(TcpPacket(_client, _clientPort, forwarded ? WanAddress : Server, serverPort, Ack, seq: 101, ack: 901)).Accepted, "the ACK passes");
    }

    /// <summary>The address the client connects to for the server (the router's, when forwarded).</summary>
    public string ServerAsClientSees => _forwarded ? WanAddress : Server;

    /// <summary>The server's own address.</summary>
    public string ServerAddress => _server;

    public string ClientAddress => _client;

    /// <summary>A segment from the client, at its next sequence number (or at <paramref name="seq"/>).</summary>
    public Hop Call(byte[] payload, uint? seq = null)
    {
        uint at = seq ?? _clientSeq;
        var hop = FromClient(TcpPacket(_client, _clientPort, ServerAsClientSees, _serverPortAsClientSees, Ack | Psh, seq: at, ack: _serverSeq, payload: payload));
        if (seq is null)
        {
            _clientSeq += (uint)payload.Length;
        }

        return hop;
    }

    /// <summary>A segment from the server, at its next sequence number (or at <paramref name="seq"/>: a retransmission).</summary>
    public Hop Answer(byte[] payload, uint? seq = null)
    {
        uint at = seq ?? _serverSeq;
        var hop = FromServer(TcpPacket(_server, _serverPort, _clientAsServerSees, _clientPortAsServerSees, Ack | Psh, seq: at, ack: _clientSeq, payload: payload));
        if (seq is null)
        {
            _serverSeq += (uint)payload.Length;
        }

        return hop;
    }

    /// <summary>Goes on through another router (the same one after a restart of its daemon).</summary>
    public void MoveTo(RouterRig rig) => _rig = rig;

    /// <summary>The server's next sequence number, as it numbers its bytes.</summary>
    public uint ServerSeq => _serverSeq;

    private Hop FromClient(byte[] packet) => _forwarded ? _rig.In(packet) : _rig.Out(packet);

    private Hop FromServer(byte[] packet) => _forwarded ? _rig.Out(packet) : _rig.In(packet);
}
