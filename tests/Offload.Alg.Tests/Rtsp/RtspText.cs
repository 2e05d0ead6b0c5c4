using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Alg.Rtsp;
using Offload.Sdk.Testing;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Rtsp;

/// <summary>RTSP messages as ffmpeg and GStreamer's RTSP server send them (captured in the lab), and one control connection through a router.</summary>
internal static class RtspText
{
    public static string Setup(string transport, int cseq = 3, string url = "rtsp://192.0.2.80:554/test/stream=0") =>
        $"SETUP {url} RTSP/1.0\r\nTransport: {transport}\r\nCSeq: {cseq}\r\nUser-Agent: Lavf59.27.100\r\n\r\n";

    public static string Reply(string transport, int cseq = 3) =>
        $"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nTransport: {transport}\r\nServer: GStreamer RTSP server\r\nSession: nIUhXk.gEXk_0XyL\r\nDate: Thu, 03 Dec 2026 09:00:00 GMT\r\n\r\n";

    public static string Teardown(int cseq = 6) =>
        $"TEARDOWN rtsp://192.0.2.80:554/test/ RTSP/1.0\r\nCSeq: {cseq}\r\nUser-Agent: Lavf59.27.100\r\nSession: nIUhXk.gEXk_0XyL\r\n\r\n";

    /// <summary>The value of the Transport header of a message.</summary>
    public static string Transport(string message)
    {
        foreach (var line in message.Split("\r\n"))
        {
            if (line.StartsWith("Transport: ", StringComparison.Ordinal))
            {
                return line["Transport: ".Length..];
            }
        }

        return "";
    }

    /// <summary>
    /// A control connection from a LAN client to a server beyond the WAN through a masquerading router (or, with
    /// <see cref="PortForward"/>, from a client beyond the WAN to a LAN server behind a DNAT of port 554), the
    /// handshake done; each side's next sequence number kept as the messages go.
    /// </summary>
    public sealed class Control
    {
        public const ushort ClientPort = 40000;
        private uint _clientSeq = 1001, _serverSeq = 5001;

        // What the router's rewrites added to each side's stream so far: the peer acknowledges what it received.
        private int _clientShift, _serverShift;

        private Control(RouterRig rig, bool forward)
        {
            Rig = rig;
            Forwarded = forward;
            if (forward)
            {
                var syn = rig.In(TcpPacket(Server, ClientPort, WanAddress, 554, Syn, seq: 1000));
                Check(syn);
                Check(rig.Out(TcpPacket(InternalServer, 554, Server, ClientPort, Syn | Ack, seq: 5000, ack: 1001)));
                Check(rig.In(TcpPacket(Server, ClientPort, WanAddress, 554, Ack, seq: 1001, ack: 5001)));
            }
            else
            {
                var syn = rig.Out(TcpPacket(Client, ClientPort, Server, 554, Syn, seq: 1000));
                Check(syn);
                WanPort = SourcePort(syn.Packet);
                Check(rig.In(TcpPacket(Server, 554, WanAddress, WanPort, Syn | Ack, seq: 5000, ack: 1001)));
                Check(rig.Out(TcpPacket(Client, ClientPort, Server, 554, Ack, seq: 1001, ack: 5001)));
            }
        }

        public RouterRig Rig { get; }

        public bool Forwarded { get; }

        /// <summary>The control connection's port at the router (masquerading).</summary>
        public ushort WanPort { get; }

        /// <summary>A masquerading router with the rtsp helper; with <paramref name="natPorts"/>, the daemon's port range.</summary>
        public static Control Masqueraded(ConntrackHelper? helper = null, bool natPorts = true) =>
            new(new RouterRig([new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }],
                [.. HelperBinding.Defaults(helper ?? new RtspHelper())], natPorts: natPorts ? ((ushort)61000, (ushort)65535) : default), forward: false);

        /// <summary>A port forward of TCP 554 at the router's WAN address to a LAN server, the LAN masqueraded, with the daemon's port range.</summary>
        public static Control PortForward(RtspHelper? helper = null) =>
            new(new RouterRig(
                [
                    new NatRule { Action = NatAction.Dnat, InInterface = Wan, Protocol = IpProtocol.Tcp, DestinationPortMin = 554, DestinationPortMax = 554, Range = Range(InternalServer, minPort: 554) },
                    new NatRule { Action = NatAction.Masquerade, OutInterface = Wan },
                ],
                [.. HelperBinding.Defaults(helper ?? new RtspHelper())], natPorts: (61000, 65535)), forward: true);

        /// <summary>The client sends <paramref name="text"/> in one segment; the hop is checked valid when accepted.</summary>
        public Hop FromClient(string text) => FromClient(Ascii(text));

        public Hop FromClient(byte[] payload)
        {
            var packet = Forwarded
                ? TcpPacket(Server, ClientPort, WanAddress, 554, Ack | Psh, seq: _clientSeq, ack: (uint)(_serverSeq + _serverShift), payload: payload)
                : TcpPacket(Client, ClientPort, Server, 554, Ack | Psh, seq: _clientSeq, ack: (uint)(_serverSeq + _serverShift), payload: payload);
            _clientSeq += (uint)payload.Length;
            var hop = Forwarded ? Rig.In(packet) : Rig.Out(packet);
            if (hop.Accepted)
            {
                AssertValid(hop.Packet);
                _clientShift += Payload(hop.Packet).Length - payload.Length;
            }

            return hop;
        }

        public Hop FromServer(string text) => FromServer(Ascii(text));

        public Hop FromServer(byte[] payload)
        {
            var packet = Forwarded
                ? TcpPacket(InternalServer, 554, Server, ClientPort, Ack | Psh, seq: _serverSeq, ack: (uint)(_clientSeq + _clientShift), payload: payload)
                : TcpPacket(Server, 554, WanAddress, WanPort, Ack | Psh, seq: _serverSeq, ack: (uint)(_clientSeq + _clientShift), payload: payload);
            _serverSeq += (uint)payload.Length;
            var hop = Forwarded ? Rig.Out(packet) : Rig.In(packet);
            if (hop.Accepted)
            {
                AssertValid(hop.Packet);
                _serverShift += Payload(hop.Packet).Length - payload.Length;
            }

            return hop;
        }

        /// <summary>The client's next (empty) segment, as it numbers it.</summary>
        public Hop ClientAck() => Forwarded
            ? Rig.In(TcpPacket(Server, ClientPort, WanAddress, 554, Ack, seq: _clientSeq, ack: (uint)(_serverSeq + _serverShift)))
            : Rig.Out(TcpPacket(Client, ClientPort, Server, 554, Ack, seq: _clientSeq, ack: (uint)(_serverSeq + _serverShift)));

        public uint ClientSequence => _clientSeq;

        private void Check(Hop hop)
        {
            if (!hop.Accepted)
            {
                throw new RigAssertionException("handshake dropped: " + Rig.DropSummary());
            }
        }
    }
}
