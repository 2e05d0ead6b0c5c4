using System.Buffers.Binary;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Pptp;

/// <summary>PPTP control messages as RFC 2637 lays them out, and GRE packets of a call, for the helper's tests.</summary>
internal static class PptpMessages
{
    public const ushort Port = 1723;

    /// <summary>A control message of <paramref name="type"/> with <paramref name="bodyLength"/> body bytes, the first ones from <paramref name="fields"/>.</summary>
    public static byte[] Message(ushort type, int bodyLength, params byte[] fields)
    {
        var message = new byte[12 + bodyLength];
        BinaryPrimitives.WriteUInt16BigEndian(message, (ushort)message.Length);
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(2), 1);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(4), 0x1A2B3C4D);
        BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(8), type);
        fields.CopyTo(message, 12);
        return message;
    }

    private static byte[] Id(ushort value) => [(byte)(value >> 8), (byte)value];

    public static byte[] StartRequest() => Message(1, 144, 1, 0);

    public static byte[] StartReply(byte result = 1) => Message(2, 144, 1, 0, result, 0);

    public static byte[] OutgoingCallRequest(ushort callId) => Message(7, 156, [.. Id(callId), 0, 1]);

    public static byte[] OutgoingCallReply(ushort callId, ushort peerCallId, byte result = 1) => Message(8, 20, [.. Id(callId), .. Id(peerCallId), result]);

    public static byte[] IncomingCallRequest(ushort callId) => Message(9, 208, Id(callId));

    public static byte[] IncomingCallReply(ushort callId, ushort peerCallId, byte result = 1) => Message(10, 12, [.. Id(callId), .. Id(peerCallId), result]);

    public static byte[] IncomingCallConnected(ushort peerCallId) => Message(11, 16, Id(peerCallId));

    public static byte[] CallClearRequest(ushort callId) => Message(12, 4, Id(callId));

    public static byte[] CallDisconnectNotify(ushort callId) => Message(13, 136, [.. Id(callId), 1]);

    public static byte[] WanErrorNotify(ushort peerCallId) => Message(14, 28, Id(peerCallId));

    public static byte[] SetLinkInfo(ushort peerCallId) => Message(15, 12, Id(peerCallId));

    /// <summary>The 16-bit field at <paramref name="bodyOffset"/> of the first message in a TCP packet's payload.</summary>
    public static ushort Field(byte[] packet, int bodyOffset) =>
        BinaryPrimitives.ReadUInt16BigEndian(Payload(packet).AsSpan(12 + bodyOffset));

    /// <summary>An enhanced GRE packet of PPTP (version 1, PPP, key present, a sequence number) to the peer with <paramref name="callId"/>.</summary>
    public static byte[] Gre(string source, string destination, ushort callId, int payloadLength = 4, ushort protocol = 0x880B, byte version = 1)
    {
        var gre = new byte[12 + payloadLength];
        gre[0] = 0x30; // K and S
        gre[1] = version;
        BinaryPrimitives.WriteUInt16BigEndian(gre.AsSpan(2), protocol);
        BinaryPrimitives.WriteUInt16BigEndian(gre.AsSpan(4), (ushort)payloadLength);
        BinaryPrimitives.WriteUInt16BigEndian(gre.AsSpan(6), callId);
        BinaryPrimitives.WriteUInt32BigEndian(gre.AsSpan(8), 1);
        for (int i = 0; i < payloadLength; i++)
        {
            gre[12 + i] = (byte)(0xC0 + i);
        }

        return IpPacket(source, destination, 47, gre);
    }

    /// <summary>The call ID of a GRE packet.</summary>
    public static ushort GreCallId(byte[] packet) => BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(L4Offset(packet) + 6));
}

/// <summary>A PPTP control connection through a rig: the TCP handshake, then messages each way with their sequence numbers.</summary>
internal sealed class PptpControl
{
    private readonly RouterRig _rig;
    private readonly string _client;
    private readonly ushort _clientPort;
    private readonly string _server;
    private readonly bool _outward;
    private uint _clientSeq = 1000;
    private uint _serverSeq = 9000;

    /// <summary>Opens the connection. <paramref name="outward"/>: the client is on the LAN and the server beyond the WAN (else both ways are routed from the LAN side out).</summary>
    public PptpControl(RouterRig rig, string client, ushort clientPort, string server, bool outward = true)
    {
        _rig = rig;
        _client = client;
        _clientPort = clientPort;
        _server = server;
        _outward = outward;
        var syn = Out(TcpPacket(client, clientPort, server, PptpMessages.Port, Syn, seq: _clientSeq++));
        SeenAddress = Source(syn);
        SeenPort = SourcePort(syn);
        In(TcpPacket(server, PptpMessages.Port, SeenAddress.ToString(), SeenPort, Syn | Ack, seq: _serverSeq++, ack: _clientSeq));
        Out(TcpPacket(client, clientPort, server, PptpMessages.Port, Ack, seq: _clientSeq, ack: _serverSeq));
    }

    /// <summary>The client's address as the server sees it.</summary>
    public System.Net.IPAddress SeenAddress { get; }

    /// <summary>The client's port as the server sees it.</summary>
    public ushort SeenPort { get; }

    /// <summary>Sends a message from the client; returns the packet as it left the router.</summary>
    public byte[] FromClient(byte[] message)
    {
        var packet = Out(TcpPacket(_client, _clientPort, _server, PptpMessages.Port, Ack | Psh, seq: _clientSeq, ack: _serverSeq, payload: message));
        _clientSeq += (uint)message.Length;
        return packet;
    }

    /// <summary>Sends a message from the server; returns the packet as it reached the client.</summary>
    public byte[] FromServer(byte[] message)
    {
        var packet = In(TcpPacket(_server, PptpMessages.Port, SeenAddress.ToString(), SeenPort, Ack | Psh, seq: _serverSeq, ack: _clientSeq, payload: message));
        _serverSeq += (uint)message.Length;
        return packet;
    }

    /// <summary>Start-Control-Connection both ways.</summary>
    public PptpControl Started()
    {
        FromClient(PptpMessages.StartRequest());
        FromServer(PptpMessages.StartReply());
        return this;
    }

    private byte[] Out(byte[] packet) => _rig.Pass(packet, Lan, Wan);

    private byte[] In(byte[] packet)
    {
        var hop = _rig.Forward(packet, Wan, Lan);
        Assert.True(hop.Accepted, _rig.DropSummary());
        AssertValid(hop.Packet);
        return hop.Packet;
    }
}
