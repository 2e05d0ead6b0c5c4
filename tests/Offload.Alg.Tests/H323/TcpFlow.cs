using Offload.Engine.Conntrack;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.H323;

/// <summary>A TCP connection through the rig, opened from one side, with data both ways (sequence numbers kept).</summary>
internal sealed class TcpFlow
{
    private readonly RouterRig _rig;
    private readonly bool _fromLan;
    private readonly string _opener;
    private readonly ushort _openerPort;
    private uint _openerSeq = 1000;
    private uint _answerSeq = 5000;

    /// <summary>Opens the connection: the opener's SYN goes out (LAN to WAN) or in, the SYN-ACK and ACK follow.</summary>
    public TcpFlow(RouterRig rig, bool fromLan, string opener, ushort openerPort, string target, ushort targetPort)
    {
        _rig = rig;
        _fromLan = fromLan;
        _opener = opener;
        _openerPort = openerPort;
        var syn = Send(TcpPacket(opener, openerPort, target, targetPort, Syn, seq: _openerSeq++), opener: true);
        Assert.True(syn.Accepted, rig.DropSummary());
        Opened = syn;
        Connection = syn.Connection;
        Answerer = Destination(syn.Packet).ToString();
        AnswererPort = DestinationPort(syn.Packet);
        SeenOpener = Source(syn.Packet).ToString();
        SeenOpenerPort = SourcePort(syn.Packet);
        Assert.True(Send(TcpPacket(Answerer, AnswererPort, SeenOpener, SeenOpenerPort, Syn | Ack, seq: _answerSeq++, ack: _openerSeq), opener: false).Accepted);
        Assert.True(Send(TcpPacket(opener, openerPort, target, targetPort, Ack, seq: _openerSeq, ack: _answerSeq), opener: true).Accepted);
        Target = target;
        TargetPort = targetPort;
    }

    public Hop Opened { get; }

    public Connection? Connection { get; }

    public string Target { get; }

    public ushort TargetPort { get; }

    /// <summary>The answering side, as it is reached (after the router's DNAT, if any).</summary>
    public string Answerer { get; }

    public ushort AnswererPort { get; }

    /// <summary>The opener as the answering side sees it (after the router's SNAT, if any).</summary>
    public string SeenOpener { get; }

    public ushort SeenOpenerPort { get; }

    public Hop OpenerSends(byte[] payload)
    {
        var hop = Send(TcpPacket(_opener, _openerPort, Target, TargetPort, Psh | Ack, seq: _openerSeq, ack: _answerSeq, payload: payload), opener: true);
        _openerSeq += (uint)payload.Length;
        return hop;
    }

    public Hop AnswererSends(byte[] payload)
    {
        var hop = Send(TcpPacket(Answerer, AnswererPort, SeenOpener, SeenOpenerPort, Psh | Ack, seq: _answerSeq, ack: _openerSeq, payload: payload), opener: false);
        _answerSeq += (uint)payload.Length;
        return hop;
    }

    private Hop Send(byte[] packet, bool opener) => opener == _fromLan ? _rig.Out(packet) : _rig.In(packet);
}
