using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.Sane;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Sane;

/// <summary>
/// The SANE helper inside the engine: a scanning client on the LAN (behind MASQUERADE in the translated cases)
/// talks to saned on the WAN side; after a GOOD answer to SANE_NET_START the client opens the data connection to
/// the port the answer names.
/// </summary>
public class SaneHelperTests
{
    private const ushort DataPort = 50000;

    private static readonly NatRule Masquerade = new() { Action = NatAction.Masquerade, OutInterface = Wan };

    /// <summary>A SANE request: an RPC code and a handle word.</summary>
    internal static byte[] RequestOf(uint code, uint handle = 0) => Words(code, handle);

    /// <summary>A reply to START: status, port word, byte order, and an empty resource string.</summary>
    internal static byte[] StartReply(uint status, uint portWord) => Words(status, portWord, 0x1234, 0);

    private static byte[] Words(params uint[] words)
    {
        var bytes = new byte[words.Length * 4];
        for (int i = 0; i < words.Length; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(i * 4), words[i]);
        }

        return bytes;
    }

    /// <summary>One control connection through the router, with its sequence numbers kept in step.</summary>
    private sealed class Session
    {
        private readonly RouterRig _rig;
        private readonly string _client;
        private readonly ushort _clientPort;
        private readonly string _server;
        private uint _clientSeq = 1000;
        private uint _serverSeq = 90000;
        private string _seenAddress = "";
        private ushort _seenPort;

        public Session(RouterRig rig, ushort clientPort = 40000, string client = Client, string server = RouterRig.Server)
        {
            _rig = rig;
            _client = client;
            _clientPort = clientPort;
            _server = server;
        }

        public Connection? Connection { get; private set; }

        public Session Open()
        {
            var syn = _rig.Out(TcpPacket(_client, _clientPort, _server, SaneHelper.DefaultPort, Syn, seq: _clientSeq));
            Assert.True(syn.Accepted, _rig.DropSummary());
            Connection = syn.Connection;
            _seenAddress = Source(syn.Packet).ToString();
            _seenPort = SourcePort(syn.Packet);
            _clientSeq++;
            var synAck = _rig.In(TcpPacket(_server, SaneHelper.DefaultPort, _seenAddress, _seenPort, Syn | Ack, seq: _serverSeq, ack: _clientSeq));
            Assert.True(synAck.Accepted, _rig.DropSummary());
            _serverSeq++;
            Assert.True(_rig.Out(TcpPacket(_client, _clientPort, _server, SaneHelper.DefaultPort, Ack, seq: _clientSeq, ack: _serverSeq)).Accepted);
            return this;
        }

        public Hop ClientSends(byte[] payload)
        {
            var hop = _rig.Out(TcpPacket(_client, _clientPort, _server, SaneHelper.DefaultPort, Psh | Ack, seq: _clientSeq, ack: _serverSeq, payload: payload));
            _clientSeq += (uint)payload.Length;
            return hop;
        }

        public Hop ServerSends(byte[] payload)
        {
            var hop = _rig.In(TcpPacket(_server, SaneHelper.DefaultPort, _seenAddress, _seenPort, Psh | Ack, seq: _serverSeq, ack: _clientSeq, payload: payload));
            _serverSeq += (uint)payload.Length;
            return hop;
        }
    }

    private static (RouterRig Rig, SaneHelper Helper) Setup(bool natted, int maxExpectations = 0)
    {
        var helper = new SaneHelper();
        var rig = new RouterRig(natted ? [Masquerade] : [], [new HelperBinding(helper, helper.Protocol, helper.Ports[0])], maxExpectations: maxExpectations);
        return (rig, helper);
    }

    private static Hop OpenData(RouterRig rig, ushort port, ushort from = 41000) =>
        rig.Out(TcpPacket(Client, from, RouterRig.Server, port, Syn, seq: 5));

    [Fact]
    public void Helper_is_bound_to_tcp_6566_by_its_own_defaults()
    {
        var helper = new SaneHelper();
        Assert.Equal("sane", helper.Name);
        Assert.Equal(IpProtocol.Tcp, helper.Protocol);
        Assert.Equal([(ushort)6566], helper.Ports);
        Assert.Equal(new ExpectationPolicy(1, TimeSpan.FromMinutes(5)), helper.Policy);
        Assert.IsType<SaneHelper>(BuiltInHelpers.Create("sane", loose: false));
    }

    [Fact]
    public void Good_start_reply_expects_the_data_connection_without_touching_the_reply()
    {
        var (rig, _) = Setup(natted: false);
        var session = new Session(rig).Open();
        Assert.True(session.ClientSends(RequestOf(SaneParser.NetStart, handle: 3)).Accepted);
        var reply = StartReply(SaneParser.StatusGood, DataPort);
        var hop = session.ServerSends(reply);

        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(reply, Payload(hop.Packet));
        var expectation = rig.Engine.Expectations.Entries().Single();
        Assert.Equal(session.Connection, expectation.Master);
        Assert.Equal(A(Client), expectation.Tuple.Source);
        Assert.Equal(A(RouterRig.Server), expectation.Tuple.Destination);
        Assert.Equal(DataPort, expectation.Tuple.DestinationPort);
        Assert.Equal(IpProtocol.Tcp, expectation.Tuple.Protocol);

        var data = OpenData(rig, DataPort);
        Assert.True(data.Accepted);
        Assert.Equal(CtInfo.Related, data.CtInfo);
        Assert.Equal(session.Connection, data.Connection!.Value.Master);
    }

    [Fact]
    public void Translated_client_opens_the_data_connection_as_its_control_connection_is_translated()
    {
        var (rig, _) = Setup(natted: true);
        var session = new Session(rig).Open();
        session.ClientSends(RequestOf(SaneParser.NetStart));
        var reply = StartReply(SaneParser.StatusGood, DataPort);
        var hop = session.ServerSends(reply);

        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal(reply, Payload(hop.Packet)); // nothing moved: no rewrite, as the kernel
        Assert.True(rig.Engine.Expectations.Entries().Single().FollowMasterNat);

        var data = OpenData(rig, DataPort);
        Assert.True(data.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, data.CtInfo);
        AssertValid(data.Packet);
        Assert.Equal(Ip(WanAddress), Source(data.Packet));
        Assert.Equal(Ip(RouterRig.Server), Destination(data.Packet));
        Assert.Equal(DataPort, DestinationPort(data.Packet));
    }

    [Fact]
    public void A_port_the_engine_moves_is_rewritten_in_the_reply()
    {
        var (rig, _) = Setup(natted: true);
        var first = new Session(rig, clientPort: 40000).Open();
        var second = new Session(rig, clientPort: 40001).Open();
        first.ClientSends(RequestOf(SaneParser.NetStart));
        Assert.True(first.ServerSends(StartReply(SaneParser.StatusGood, DataPort)).Accepted);
        second.ClientSends(RequestOf(SaneParser.NetStart));
        var hop = second.ServerSends(StartReply(SaneParser.StatusGood, DataPort));

        Assert.True(hop.Accepted, rig.DropSummary());
        AssertValid(hop.Packet);
        Assert.Equal(StartReply(SaneParser.StatusGood, DataPort + 1), Payload(hop.Packet));
        Assert.Equal(1, rig[EngineCounter.PayloadRewrites]);

        var data = OpenData(rig, DataPort + 1);
        Assert.True(data.Accepted, rig.DropSummary());
        Assert.Equal(second.Connection, data.Connection!.Value.Master);
        Assert.Equal(DataPort, DestinationPort(data.Packet)); // where the server listens
    }

    [Fact]
    public void Reply_without_a_start_request_is_ignored()
    {
        var (rig, _) = Setup(natted: false);
        var session = new Session(rig).Open();
        Assert.True(session.ServerSends(StartReply(SaneParser.StatusGood, DataPort)).Accepted);

        Assert.Equal(0, rig.Engine.Expectations.Count);
        Assert.Equal(CtInfo.New, OpenData(rig, DataPort).CtInfo);
    }

    [Fact]
    public void Refused_start_is_ignored_and_ends_the_wait()
    {
        var (rig, _) = Setup(natted: false);
        var session = new Session(rig).Open();
        session.ClientSends(RequestOf(SaneParser.NetStart));
        Assert.True(session.ServerSends(StartReply(11 /* SANE_STATUS_ACCESS_DENIED */, DataPort)).Accepted);

        // The next reply answers something else, even if it looks like a GOOD start.
        Assert.True(session.ServerSends(StartReply(SaneParser.StatusGood, DataPort)).Accepted);
        Assert.Equal(0, rig.Engine.Expectations.Count);
        Assert.Equal(0, rig[EngineCounter.HelperMalformedCommand]);
    }

    [Fact]
    public void Another_request_after_start_cancels_the_wait()
    {
        var (rig, _) = Setup(natted: false);
        var session = new Session(rig).Open();
        session.ClientSends(RequestOf(SaneParser.NetStart));
        session.ClientSends(RequestOf(8 /* SANE_NET_CANCEL */));
        session.ServerSends(StartReply(SaneParser.StatusGood, DataPort));

        Assert.Equal(0, rig.Engine.Expectations.Count);
    }

    [Theory]
    [InlineData(new byte[] { 0, 0, 0, 7 })] // half a request
    [InlineData(new byte[] { 0, 0, 0, 7, 0, 0, 0, 0, 0 })] // one byte too many
    [InlineData(new byte[] { 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0 })]
    public void Only_a_segment_of_exactly_one_request_is_a_start(byte[] request)
    {
        var (rig, _) = Setup(natted: false);
        var session = new Session(rig).Open();
        session.ClientSends(request);
        session.ServerSends(StartReply(SaneParser.StatusGood, DataPort));

        Assert.Equal(0, rig.Engine.Expectations.Count);
    }

    [Theory]
    [InlineData(new byte[] { 0, 0, 0, 0 })] // truncated: status only
    [InlineData(new byte[] { 0, 0, 0, 0, 0, 0, 0xC3 })]
    [InlineData(new byte[] { 0, 0, 0, 0, 0, 1, 0xC3, 0x50 })] // a port word above 65535
    [InlineData(new byte[] { 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF })]
    [InlineData(new byte[] { 0, 0, 0, 0, 0, 0, 0, 0 })] // port 0
    public void Malformed_start_reply_is_counted_and_not_expected(byte[] reply)
    {
        var (rig, helper) = Setup(natted: true);
        var session = new Session(rig).Open();
        session.ClientSends(RequestOf(SaneParser.NetStart));
        var hop = session.ServerSends(reply);

        Assert.True(hop.Accepted);
        Assert.Equal(reply, Payload(hop.Packet));
        Assert.Equal(1, rig[EngineCounter.HelperMalformedCommand]);
        Assert.Equal(0, rig.Engine.Expectations.Count);
        Assert.Null(ConntrackEngine.DisabledReason(helper));
    }

    [Fact]
    public void Start_reply_is_dropped_when_the_data_connection_cannot_be_expected()
    {
        // Another client's control connection holds the one expectation the table allows.
        var (rig, _) = Setup(natted: false, maxExpectations: 1);
        var other = new Session(rig, clientPort: 40001, client: Client2).Open();
        other.ClientSends(RequestOf(SaneParser.NetStart));
        Assert.True(other.ServerSends(StartReply(SaneParser.StatusGood, DataPort)).Accepted);

        var session = new Session(rig).Open();
        session.ClientSends(RequestOf(SaneParser.NetStart));
        var hop = session.ServerSends(StartReply(SaneParser.StatusGood, DataPort + 1));

        Assert.False(hop.Accepted);
        Assert.Equal(1, rig[EngineCounter.HelperExpectationFailed]);
    }

    [Fact]
    public void Directions_are_not_confused()
    {
        var (rig, _) = Setup(natted: false);
        var session = new Session(rig).Open();

        // A START sent by the server and a GOOD reply sent by the client mean nothing.
        session.ServerSends(RequestOf(SaneParser.NetStart));
        session.ClientSends(StartReply(SaneParser.StatusGood, DataPort));
        Assert.Equal(0, rig.Engine.Expectations.Count);
    }

    [Fact]
    public void Parser_reads_only_whole_fields()
    {
        Assert.Equal(SaneMessage.StartRequest, SaneParser.ReadRequest(RequestOf(7, 0xFFFFFFFF)));
        Assert.Equal(SaneMessage.OtherRequest, SaneParser.ReadRequest(RequestOf(0x07000000)));
        Assert.Equal(SaneMessage.Other, SaneParser.ReadRequest([]));
        Assert.Equal(SaneMessage.StartGood, SaneParser.ReadStartReply(StartReply(0, 65535), out ushort port));
        Assert.Equal(65535, port);
        Assert.Equal(SaneMessage.StartGood, SaneParser.ReadStartReply(StartReply(0, 1)[..8], out port));
        Assert.Equal(1, port);
        Assert.Equal(SaneMessage.StartRefused, SaneParser.ReadStartReply(StartReply(1, 6000), out port));
        Assert.Equal(0, port);
        Assert.Equal(SaneMessage.StartMalformed, SaneParser.ReadStartReply([], out _));
    }

    [Fact]
    public void Random_conversations_never_fail_the_helper_and_rewrites_touch_only_the_port()
    {
        // Each conversation: a few segments either way, with requests and replies of the shapes that matter.
        Gen<byte[]> segment = Gen.Frequency(
            (2, Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b))),
            (2, Gen.Choose(0, 12).SelectMany(code => Gen.Choose(0, 3).Select(h => RequestOf((uint)code, (uint)h)))),
            (3, Gen.Elements(0u, 0u, 1u, 11u).SelectMany(status => Gen.Elements(0u, 1u, 6566u, 50000u, 65535u, 65536u, 0xFFFFFFFFu)
                .SelectMany(port => Gen.Choose(0, 16).Select(cut => StartReply(status, port)[..cut])))));
        Gen<(bool FromServer, byte[] Payload)[]> conversations = Gen.ArrayOf(Gen.Elements(false, true).SelectMany(s => segment.Select(p => (s, p))));

        Check.One(Config.QuickThrowOnFailure.WithMaxTest(300), Prop.ForAll(conversations.ToArbitrary(), conversation =>
        {
            var (rig, helper) = Setup(natted: true);
            var blocker = new Session(rig, clientPort: 40001).Open(); // holds port 50000, so that some replies move
            blocker.ClientSends(RequestOf(SaneParser.NetStart));
            blocker.ServerSends(StartReply(SaneParser.StatusGood, 50000));
            var session = new Session(rig).Open();
            foreach (var (fromServer, payload) in conversation.Where(c => c.Payload.Length > 0))
            {
                var hop = fromServer ? session.ServerSends(payload) : session.ClientSends(payload);
                if (!hop.Accepted)
                {
                    // Only a reply whose data connection could not be expected is dropped (the rest of this
                    // conversation would be out of the window: stop here).
                    return rig[EngineCounter.HelperExpectationFailed] > 0 && ConntrackEngine.DisabledReason(helper) is null;
                }

                AssertValid(hop.Packet);
                var after = Payload(hop.Packet);
                if (after.Length != payload.Length)
                {
                    return false;
                }

                // Only the low half of the port word may change.
                for (int i = 0; i < after.Length; i++)
                {
                    if (after[i] != payload[i] && (!fromServer || i is not (6 or 7)))
                    {
                        return false;
                    }
                }
            }

            return ConntrackEngine.DisabledReason(helper) is null;
        }));
    }
}
