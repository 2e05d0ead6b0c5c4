using System.Buffers.Text;
using Offload.Engine.Helpers;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Engine.Tests.Expectations;

/// <summary>
/// An expected connection whose NAT its helper chooses when it arrives (the kernel's expectation callback, as
/// nf_nat_sip_expected): the helper sees what arrived and translates its source, its destination, both or neither;
/// a choice made for another kind of expectation, after the call, or by a helper that then fails changes nothing.
/// </summary>
public class ExpectedNatOnArrivalTests
{
    private const ushort ControlPort = 5000;

    private delegate void Choose(in ExpectedConnection connection, List<bool> answers);

    /// <summary>"E port" expects a connection from the peer to the sender on that port, its NAT left to <see cref="OnExpectedConnection"/>.</summary>
    private sealed class ArrivalHelper(Choose choose, ExpectationNat nat = ExpectationNat.OnArrival, bool fail = false)
        : ConntrackHelper("arrival", new ExpectationPolicy(4, TimeSpan.FromMinutes(1)))
    {
        public List<bool> Answers { get; } = [];

        public ExpectedConnection Kept { get; private set; }

        public override HelperVerdict Help(ref HelperContext context)
        {
            if (context.Payload.Length > 2 && Utf8Parser.TryParse(context.Payload[2..], out ushort port, out _))
            {
                var request = context.FromPeer(IpProtocol.Udp, port);
                request.SourcePrefixLength = 0;
                request.Nat = nat;
                context.Expect(ref request);
            }

            return HelperVerdict.Accept;
        }

        public override HelperVerdict OnExpectedConnection(in ExpectedConnection connection)
        {
            choose(connection, Answers);
            Kept = connection;
            return fail ? throw new InvalidOperationException("after choosing") : HelperVerdict.Accept;
        }
    }

    private static RouterRig Rig(ArrivalHelper helper, string client = Client)
    {
        var rig = new RouterRig(null, [new HelperBinding(helper, 17, ControlPort)]);
        Assert.True(rig.Out(UdpPacket(client, 3000, Server, ControlPort, Ascii("E 6000"))).Accepted);
        Assert.True(rig.Out(UdpPacket(client, 3000, Server, ControlPort, Ascii("E 6002"))).Accepted);
        return rig;
    }

    [Fact]
    public void The_helper_sends_each_arriving_connection_where_what_arrived_says()
    {
        // From source port 9000 to the announcer, from any other to a second host: decided on arrival.
        var helper = new ArrivalHelper((in ExpectedConnection c, List<bool> answers) =>
            answers.Add(c.Tuple.SourcePort == 9000 || c.TranslateDestination(A(Client2), 7000)));
        var rig = Rig(helper);

        var first = rig.In(UdpPacket(Server, 9000, Client, 6000, Ascii("one")));
        Assert.Equal(CtInfo.Related, first.CtInfo);
        Assert.Equal((Ip(Client), (ushort)6000), (Destination(first.Packet), DestinationPort(first.Packet)));

        var second = rig.In(UdpPacket(Server, 9001, Client, 6002, Ascii("two")));
        Assert.Equal(CtInfo.Related, second.CtInfo);
        Assert.Equal((Ip(Client2), (ushort)7000), (Destination(second.Packet), DestinationPort(second.Packet)));
        AssertValid(second.Packet);
        Assert.Equal([true, true], helper.Answers);

        // The reply of the redirected one leaves as if from where the peer sent it.
        var reply = rig.Out(UdpPacket(Client2, 7000, Server, 9001, Ascii("back")));
        Assert.Equal((Ip(Client), (ushort)6002), (Source(reply.Packet), SourcePort(reply.Packet)));
    }

    [Fact]
    public void The_helper_may_translate_the_source_too_and_a_port_of_zero_keeps_the_arriving_one()
    {
        var helper = new ArrivalHelper((in ExpectedConnection c, List<bool> answers) =>
            answers.Add(c.TranslateSource(A(LanAddress), 0)));
        var rig = Rig(helper);
        var hop = rig.In(UdpPacket(Server, 9000, Client, 6000, Ascii("one")));
        Assert.Equal((Ip(LanAddress), (ushort)9000, Ip(Client)), (Source(hop.Packet), SourcePort(hop.Packet), Destination(hop.Packet)));
        AssertValid(hop.Packet);
    }

    [Fact]
    public void Choosing_nothing_leaves_it_untranslated_and_choosing_for_another_kind_of_expectation_is_refused()
    {
        var silent = Rig(new ArrivalHelper((in ExpectedConnection _, List<bool> _) => { }));
        var hop = silent.In(UdpPacket(Server, 9000, Client, 6000, Ascii("one")));
        Assert.Equal((CtInfo.Related, Ip(Client), (ushort)6000), (hop.CtInfo, Destination(hop.Packet), DestinationPort(hop.Packet)));

        var following = new ArrivalHelper((in ExpectedConnection c, List<bool> answers) => answers.Add(c.TranslateDestination(A(Client2), 7000)), ExpectationNat.FollowMaster);
        var rig = Rig(following);
        hop = rig.In(UdpPacket(Server, 9000, Client, 6000, Ascii("one")));
        Assert.Equal([false], following.Answers);
        Assert.Equal(Ip(Client), Destination(hop.Packet));
    }

    [Fact]
    public void A_choice_made_after_the_call_or_by_a_helper_that_then_fails_changes_nothing()
    {
        var helper = new ArrivalHelper((in ExpectedConnection _, List<bool> _) => { });
        var rig = Rig(helper);
        rig.In(UdpPacket(Server, 9000, Client, 6000, Ascii("one")));
        Assert.False(helper.Kept.TranslateDestination(A(Client2), 7000)); // too late: the call is over
        var next = rig.In(UdpPacket(Server, 9001, Client, 6002, Ascii("two")));
        Assert.Equal(Ip(Client), Destination(next.Packet));

        var failing = new ArrivalHelper((in ExpectedConnection c, List<bool> answers) => answers.Add(c.TranslateDestination(A(Client2), 7000)), fail: true);
        var broken = Rig(failing);
        var hop = broken.In(UdpPacket(Server, 9000, Client, 6000, Ascii("one")));
        Assert.True(hop.Accepted); // a failed helper lets its expected connection in, untranslated
        Assert.Equal(Ip(Client), Destination(hop.Packet));
        Assert.Equal(1, broken[EngineCounter.HelperFailures]);
    }
}
