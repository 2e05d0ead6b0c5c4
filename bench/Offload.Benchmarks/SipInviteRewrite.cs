using System.Buffers.Binary;
using System.Text;
using BenchmarkDotNet.Attributes;
using Offload.Alg.Sip;
using Offload.Engine;
using Offload.Engine.Helpers;
using Offload.Engine.Packets;

namespace Offload.Benchmarks;

/// <summary>
/// The SIP helper's expensive path, beside the FTP one: a phone's INVITE with an SDP body (one audio stream), over UDP
/// on a MASQUERADE'd signalling flow. The helper parses the message, expects RTP and RTCP as a pair at the router
/// (replacing the pair the previous INVITE expected: a retransmission), and rewrites what nf_nat_sip rewrites: the
/// topmost Via, Contact and From, the SDP's o= and c= lines, and Content-Length (3 bytes per address, 198.51.100.1
/// against 192.0.2.2). The engine fixes the lengths and the UDP checksum. The baseline is the same
/// datagram on the same flow without the helper (NAT only).
/// </summary>
public class SipInviteRewrite
{
    private const ushort PhonePort = 5060;

    private static readonly string Body =
        "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n" +
        "m=audio 6000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n";

    private static readonly string Invite =
        "INVITE sip:bob@198.51.100.2 SIP/2.0\r\n" +
        "Via: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK776asdhds;rport\r\n" +
        "Max-Forwards: 70\r\n" +
        "To: Bob <sip:bob@198.51.100.2>\r\n" +
        "From: Alice <sip:alice@192.0.2.2:5060>;tag=1928301774\r\n" +
        "Call-ID: a84b4c76e66710@pc33\r\n" +
        "CSeq: 314159 INVITE\r\n" +
        "Contact: <sip:alice@192.0.2.2:5060>\r\n" +
        "Content-Type: application/sdp\r\n" +
        $"Content-Length: {Body.Length}\r\n\r\n" + Body;

    private readonly byte[] _buffer = new byte[Lab.BufferSize];
    private ConntrackEngine _plain = null!;
    private ConntrackEngine _helped = null!;
    private byte[] _invite = null!;

    [GlobalSetup]
    public void Setup()
    {
        _invite = BuildUdp(Lab.Client, PhonePort, Lab.Server, SipHelper.DefaultPort, Encoding.ASCII.GetBytes(Invite));
        _plain = Lab.CreateEngine();
        _helped = Lab.CreateEngine(helpers: [new HelperBinding(new SipHelper(), IpProtocol.Udp, SipHelper.DefaultPort)]);
        Lab.ForwardOrThrow(_plain, _invite, Lab.Lan);

        // A dry run: the INVITE must leave naming the router only, with its length following the body, and the pair expected.
        var sent = Lab.ForwardOrThrow(_helped, _invite, Lab.Lan);
        string text = Encoding.ASCII.GetString(sent.AsSpan(28));
        int grown = 5 * ("198.51.100.1".Length - "192.0.2.2".Length); // Via, From, Contact, o=, c=; Content-Length keeps its 3 digits
        if (text.Contains("192.0.2.2", StringComparison.Ordinal) || !text.Contains("c=IN IP4 198.51.100.1", StringComparison.Ordinal)
            || sent.Length - _invite.Length != grown || _helped.Expectations.Count != 2 || !UdpChecksumIsValid(sent))
        {
            throw new InvalidOperationException($"The INVITE is not rewritten as expected ({sent.Length - _invite.Length} bytes more): {Lab.DescribeCounters(_helped)}\n{text}");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var engine in new[] { _plain, _helped })
        {
            if (engine[EngineCounter.PacketsDropped] != 0)
            {
                throw new InvalidOperationException($"Packets were dropped: {Lab.DescribeCounters(engine)}");
            }
        }

        if (_helped.Expectations.Count != 2)
        {
            throw new InvalidOperationException($"The INVITEs left {_helped.Expectations.Count} expectations, not their one pair.");
        }
    }

    /// <summary>Baseline: the same INVITE on the same kind of flow, without the helper (NAT only).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Lab.Burst)]
    public int WithoutHelper() => Lab.ForwardBurst(_plain, _invite, _buffer, Lab.Lan);

    [Benchmark(OperationsPerInvoke = Lab.Burst)]
    public int SipHelperRewritesInvite() => Lab.ForwardBurst(_helped, _invite, _buffer, Lab.Lan);

    private static byte[] BuildUdp(uint source, ushort sourcePort, uint destination, ushort destinationPort, ReadOnlySpan<byte> payload)
    {
        var packet = new byte[28 + payload.Length];
        var ip = packet.AsSpan(0, 20);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip.Slice(2), (ushort)packet.Length);
        BinaryPrimitives.WriteUInt16BigEndian(ip.Slice(6), 0x4000); // DF
        ip[8] = 64;
        ip[9] = IpProtocol.Udp;
        BinaryPrimitives.WriteUInt32BigEndian(ip.Slice(12), source);
        BinaryPrimitives.WriteUInt32BigEndian(ip.Slice(16), destination);
        BinaryPrimitives.WriteUInt16BigEndian(ip.Slice(10), Checksum.Compute(ip));
        var udp = packet.AsSpan(20);
        BinaryPrimitives.WriteUInt16BigEndian(udp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(udp.Slice(2), destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp.Slice(4), (ushort)udp.Length);
        payload.CopyTo(udp.Slice(8));
        ulong sum = Checksum.PseudoHeader(ip.Slice(12, 4), ip.Slice(16, 4), IpProtocol.Udp, udp.Length);
        BinaryPrimitives.WriteUInt16BigEndian(udp.Slice(6), Checksum.Finish(Checksum.Add(sum, udp)));
        return packet;
    }

    private static bool UdpChecksumIsValid(ReadOnlySpan<byte> packet)
    {
        var udp = packet.Slice(20);
        ulong sum = Checksum.PseudoHeader(packet.Slice(12, 4), packet.Slice(16, 4), IpProtocol.Udp, udp.Length);
        return Checksum.Fold(Checksum.Add(sum, udp)) == 0xFFFF;
    }
}
