using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.Rtsp;
using Offload.Alg.Tests.Support;
using Offload.Engine;
using Xunit;
using static Offload.Alg.Tests.Rtsp.RtspText;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Rtsp;

/// <summary>
/// Bad input through both RTSP parsers and the helper: the message framer and the Transport reader never read past
/// what they were given, never loop on hostile lengths, and report offsets inside the message; the helper never
/// fails (a throw would disable it), what leaves is a valid packet, and expectations stay within the policy.
/// </summary>
public class RtspPropertyTests
{
    private static readonly Config Runs = Config.QuickThrowOnFailure.WithMaxTest(1500);

    private static readonly string[] Valid =
    [
        Setup("RTP/AVP/UDP;unicast;client_port=33758-33759"),
        Setup("RTP/AVP/TCP;unicast;interleaved=0-1, RTP/AVP;unicast;client_port=5000-5001;destination=192.168.1.10,RTP/AVP;unicast;client_port=5002/5005"),
        Reply("RTP/AVP;unicast;client_port=61000-61001;server_port=55564-55565;source=192.0.2.80;ssrc=A993E813;mode=\"PLAY\""),
        // The answer to the SETUP each run below starts with (the client's ports are free at the router: kept).
        Reply("RTP/AVP;unicast;client_port=33758-33759;destination=203.0.113.1;server_port=6970-6971;source=192.168.1.20;ssrc=1"),
        Teardown(),
        "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: 20\r\n\r\nv=0\r\no=- 1 1 IN IP4 x",
        "$\u0000\u0000\u0004abcd" + Setup("RTP/AVP;unicast;client_port=5000"),
    ];

    private static readonly byte[] Interesting = Encoding.Latin1.GetBytes("0123456789 -/;,=:\"$\r\n\tRTSPclient_portserver_portdestinationsourceinterleavedTransportCSeqContent-Length");

    private static readonly Gen<byte> AnyByte = Gen.Frequency(
        (1, Gen.Choose(0, 255).Select(b => (byte)b)),
        (3, Gen.Elements(Interesting)));

    private static readonly Gen<byte[]> Mutated = ByteMutations.Of(Gen.Elements(Valid).Select(text => Encoding.Latin1.GetBytes(text)), AnyByte, maxPosition: 400, maxEdits: 6);

    private static bool ParserStaysInside(byte[] data)
    {
        var status = RtspParser.Parse(data, out var message);
        return status switch
        {
            RtspParseStatus.Ok => message.BodyStart > 0 && message.BodyStart <= data.Length && message.Length >= message.BodyStart
                && (message.TransportStart < 0 || (message.TransportStart <= message.TransportEnd && message.TransportEnd <= message.BodyStart)),
            RtspParseStatus.Interleaved => message.Length >= 4 && message.Length <= 4 + ushort.MaxValue,
            _ => true,
        };
    }

    [Fact]
    public void The_framer_reports_offsets_inside_mutated_messages()
    {
        Check.One(Runs, Prop.ForAll(Mutated.ToArbitrary(), ParserStaysInside));
    }

    [Fact]
    public void The_framer_reports_offsets_inside_random_bytes()
    {
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), ParserStaysInside));
    }

    private static bool TransportStaysInside(byte[] value, bool v6)
    {
        var reader = new RtspTransportReader(value, 0, value.Length, v6 ? (byte)6 : (byte)4);
        int specs = 0;
        while (reader.Next(out var spec))
        {
            if (++specs > RtspTransportReader.MaxSpecs)
            {
                return false;
            }

            foreach (var (present, start, length) in new[]
                     {
                         (spec.ClientPorts.Present, spec.ClientPorts.Start, spec.ClientPorts.Length),
                         (spec.ServerPorts.Present, spec.ServerPorts.Start, spec.ServerPorts.Length),
                         (spec.Destination.Present, spec.Destination.Start, spec.Destination.Length),
                         (spec.Source.Present, spec.Source.Start, spec.Source.Length),
                     })
            {
                if (present && (start < 0 || length < 0 || start + length > value.Length))
                {
                    return false;
                }
            }

            if (spec.ClientPorts.Present && (spec.ClientPorts.Rtp == 0 || spec.ClientPorts.Rtcp < spec.ClientPorts.Rtp))
            {
                return false;
            }
        }

        return true;
    }

    private static readonly Gen<byte[]> MutatedTransport = ByteMutations.Of(
        Gen.Elements(Valid.Select(Transport).Where(t => t.Length > 0).ToArray()).Select(text => Encoding.Latin1.GetBytes(text)), AnyByte, maxPosition: 200, maxEdits: 8);

    [Fact]
    public void The_transport_reader_stays_inside_mutated_headers()
    {
        Check.One(Runs, Prop.ForAll(MutatedTransport.ToArbitrary(), ArbMap.Default.ArbFor<bool>(), TransportStaysInside));
    }

    [Fact]
    public void The_transport_reader_stays_inside_random_bytes()
    {
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), ArbMap.Default.ArbFor<bool>(), TransportStaysInside));
    }

    [Fact]
    public void Restoring_any_bytes_gives_a_state_or_null_and_never_throws()
    {
        var helper = new RtspHelper();
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), bytes =>
        {
            var state = helper.RestoreState(bytes, helper.StateVersion);
            return state is null || (state is RtspSessionState restored && bytes.Length == 19 + (bytes[18] * 12)
                && restored.StartOf(ConnDirection.Original, 0, 10) >= -1);
        }));
    }

    [Fact]
    public void A_header_with_hundreds_of_specs_is_read_up_to_the_bound_and_counted()
    {
        var control = Control.Masqueraded();
        string many = string.Join(",", Enumerable.Range(0, 300).Select(i => FormattableString.Invariant($"RTP/AVP;unicast;client_port={10000 + (2 * i)}-{10001 + (2 * i)}")));
        var hop = control.FromClient(Setup(many));
        Assert.True(hop.Accepted, control.Rig.DropSummary());
        Assert.Equal(1, control.Rig[EngineCounter.HelperMalformedCommand]);
        Assert.True(control.Rig.Expectations.Count <= RtspHelper.DefaultPolicy.MaxExpected);
    }

    [Theory]
    [InlineData("SETUP rtsp://x/ RTSP/1.0\r\nCSeq: 3\r\nContent-Length: 99999999999\r\n\r\n", "MalformedCommand")]
    [InlineData("SETUP rtsp://x/ RTSP/1.0\r\nCSeq: x\r\nTransport: RTP/AVP;client_port=5000-5001\r\n\r\n", "MalformedCommand")]
    [InlineData("SETUP rtsp://x/ RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;client_port=5001-5000\r\n\r\n", "MalformedCommand")]
    [InlineData("SETUP rtsp://x/ RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;client_port=5000-5001\r\n", "PartialCommand")]
    public void Bad_messages_are_counted_open_nothing_and_pass_untouched(string text, string counter)
    {
        var control = Control.Masqueraded();
        var hop = control.FromClient(text);
        Assert.True(hop.Accepted);
        Assert.Equal(text, PayloadText(hop.Packet));
        Assert.Empty(control.Rig.Expectations);
        Assert.Equal(1, control.Rig[Enum.Parse<EngineCounter>("Helper" + counter)]);
    }

    // Whatever the client or the server sends, masqueraded or through a port forward, the helper never fails, what
    // leaves is valid, and expectations stay within the per-class limit.
    private static bool Survives(byte[] payload, bool fromServer, bool forwarded)
    {
        var control = forwarded ? Control.PortForward() : Control.Masqueraded(natPorts: false);
        control.FromClient(Setup("RTP/AVP/UDP;unicast;client_port=33758-33759", cseq: 3));
        var hop = fromServer ? control.FromServer(payload) : control.FromClient(payload);
        if (control.Rig[EngineCounter.HelperFailures] != 0)
        {
            return false;
        }

        if (hop.Accepted)
        {
            AssertValid(hop.Packet);
        }

        return control.Rig.Expectations.GroupBy(e => e.Class).All(g => g.Count() <= RtspHelper.DefaultPolicy.MaxExpected);
    }

    [Fact]
    public void Mutated_messages_never_fail_the_helper()
    {
        Check.One(Runs.WithMaxTest(800), Prop.ForAll(Mutated.ToArbitrary(), ArbMap.Default.ArbFor<bool>(), ArbMap.Default.ArbFor<bool>(), Survives));
    }

    [Fact]
    public void Random_bytes_never_fail_the_helper()
    {
        Check.One(Runs.WithMaxTest(500), Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), ArbMap.Default.ArbFor<bool>(), ArbMap.Default.ArbFor<bool>(), Survives));
    }
}
