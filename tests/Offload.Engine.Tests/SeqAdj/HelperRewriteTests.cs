using Offload.Engine.Helpers;
using Offload.Engine.Tests.Expectations;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

// Not "...Tests.SeqAdj": a namespace of that name would hide the engine's SeqAdj class from every test namespace.
namespace Offload.Engine.Tests.SequenceAdjustment;

/// <summary>
/// Helper rewrites outside TCP sequence adjustment: UDP datagrams, and the rules of the rewrite request itself
/// (bounds, order, what a refused request leaves behind).
/// </summary>
public class HelperRewriteTests
{
    private const ushort ServicePort = 5060;

    private static RouterRig With(ConntrackHelper helper, byte protocol = 17) => new(helpers: [new HelperBinding(helper, protocol, ServicePort)]);

    [Fact]
    public void Udp_rewrite_fixes_ip_and_udp_lengths_and_checksum()
    {
        var rig = With(new TokenRewriteHelper("ADDR", "ADDRESS-LONGER"));
        var p = rig.PassOut(UdpPacket(Client, 5060, Server, ServicePort, Ascii("INVITE ADDR ADDR")));

        Assert.Equal("INVITE ADDRESS-LONGER ADDRESS-LONGER", PayloadText(p)); // AssertValid checked the UDP length field too
        Assert.Equal(20 + 8 + 36, p.Length);
        Assert.NotEqual(0, TransportChecksum(p));
    }

    [Fact]
    public void Udp_rewrite_ipv4_without_checksum_keeps_it_zero()
    {
        var rig = With(new TokenRewriteHelper("ADDR", "ADDRESS-LONGER"));
        var p = rig.PassOut(UdpPacket(Client, 5060, Server, ServicePort, Ascii("INVITE ADDR"), withoutChecksum: true));

        Assert.Equal("INVITE ADDRESS-LONGER", PayloadText(p));
        Assert.Equal(0, TransportChecksum(p));
    }

    [Fact]
    public void Udp_rewrite_ipv6_fixes_payload_length_and_checksum()
    {
        var rig = With(new TokenRewriteHelper("ADDR", "A"));
        var p = rig.PassOut(UdpPacket(Client6, 5060, Server6, ServicePort, Ascii("INVITE ADDR;x")));
        Assert.Equal("INVITE A;x", PayloadText(p));
        Assert.Equal(40 + 8 + 10, p.Length);
    }

    [Fact]
    public void Rewrite_requests_out_of_bounds_or_out_of_order_are_refused_and_change_nothing()
    {
        var answers = new List<bool>();
        var helper = new ScriptedHelper((ref HelperContext context) =>
        {
            int length = context.Payload.Length;
            answers.Add(context.Rewrite(length - 1, 2, Ascii("x"))); // runs past the end
            answers.Add(context.Rewrite(-1, 1, Ascii("x"))); // before the start
            answers.Add(context.Rewrite(4, 2, Ascii("yy"))); // fine
            answers.Add(context.Rewrite(5, 1, Ascii("z"))); // overlaps the previous one
            answers.Add(context.Rewrite(0, 1, Ascii("z"))); // before the previous one
            return HelperVerdict.Accept;
        });
        var rig = With(helper);

        var p = rig.PassOut(UdpPacket(Client, 5060, Server, ServicePort, Ascii("0123456789")));

        Assert.Equal([false, false, true, false, false], answers);
        Assert.Equal("0123yy6789", PayloadText(p));
        Assert.Equal(1, rig[EngineCounter.PayloadRewrites]);
    }

    [Fact]
    public void Rewrites_are_forgotten_after_a_helper_drops_the_packet()
    {
        bool drop = true;
        var helper = new ScriptedHelper((ref HelperContext context) =>
        {
            if (drop)
            {
                context.Rewrite(0, 1, Ascii("DROPPED"));
                return HelperVerdict.Drop;
            }

            return HelperVerdict.Accept;
        });
        var rig = With(helper);
        var packet = UdpPacket(Client, 5060, Server, ServicePort, Ascii("hello"));

        Assert.Equal(Verdict.Drop, rig.Out(packet).Verdict);
        Assert.Equal(1, rig[EngineCounter.DroppedByHelper]);
        Assert.Equal(0, rig.Engine.Connections.Count);

        drop = false;
        var p = rig.PassOut(packet);
        Assert.Equal("hello", PayloadText(p));
        Assert.Equal(0, rig[EngineCounter.PayloadRewrites]);
    }
}
