using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Offload.Engine.Tests.Conntrack;
using Offload.Engine.Tests.Packets;
using Xunit;

namespace Offload.Engine.Tests.Fuzz;

/// <summary>What the fuzz tests found, each reduced to a plain, deterministic case.</summary>
public class FuzzFindingsTests
{
    /// <summary>A helper that asks for a fixed list of rewrites on every packet with a payload.</summary>
    private sealed class ScriptedHelper((int Offset, int Length, string Text)[] rewrites) : ConntrackHelper("scripted", new ExpectationPolicy(1, TimeSpan.FromMinutes(1)))
    {
        public bool AllQueued { get; private set; } = true;

        public override HelperVerdict Help(ref HelperContext context)
        {
            if (context.Payload.Length == 0)
            {
                return HelperVerdict.Accept;
            }

            foreach (var (offset, length, text) in rewrites)
            {
                AllQueued &= context.Rewrite(offset, length, System.Text.Encoding.ASCII.GetBytes(text));
            }

            return HelperVerdict.Accept;
        }
    }

    private static EngineRig RigWith(ConntrackHelper helper) =>
        new(helpers: [new HelperBinding(helper, IpProtocol.Udp, 69)]);

    [Fact]
    public void Rewrites_that_shrink_the_packet_fit_in_a_buffer_with_no_spare_room()
    {
        // Control: a single shrinking rewrite with zero spare bytes works.
        var helper = new ScriptedHelper([(0, 10, "")]);
        var rig = RigWith(helper);
        var packet = Wire.V4("192.168.1.2", "198.51.100.1", 17, Wire.Udp(1000, 69, "0123456789abcdefghij"u8.ToArray()));
        var outcome = rig.Send(packet, EngineRig.Lan, EngineRig.Wan, spare: 0);
        Assert.True(outcome.Accepted);
        Assert.True(helper.AllQueued);
        Assert.Equal("abcdefghij", System.Text.Encoding.ASCII.GetString(outcome.Output.AsSpan(28)));
        Assert.True(FuzzPackets.ChecksumsHold(outcome.Output, PacketParser.Parse(outcome.Output)));
    }

    [Fact]
    public void Rewrites_that_grow_then_shrink_never_throw_when_the_result_fits()
    {
        // Shrink 10 bytes at the start, grow by 2 later: net -8, so the result fits in the packet's own length.
        var helper = new ScriptedHelper([(0, 10, ""), (15, 1, "xyz")]);
        var rig = RigWith(helper);
        var packet = Wire.V4("192.168.1.2", "198.51.100.1", 17, Wire.Udp(1000, 69, "0123456789abcdefghij"u8.ToArray()));
        var outcome = rig.Send(packet, EngineRig.Lan, EngineRig.Wan, spare: 0);
        Assert.True(helper.AllQueued);
        Assert.True(outcome.Accepted);
        Assert.Equal("abcdexyzghij", System.Text.Encoding.ASCII.GetString(outcome.Output.AsSpan(28)));
        Assert.True(FuzzPackets.ChecksumsHold(outcome.Output, PacketParser.Parse(outcome.Output)));
    }

    [Fact]
    public void Translated_icmpv4_errors_have_valid_checksums()
    {
        // Control for the ICMPv6 case below: the same scenario over IPv4 passes for every payload.
        var rig = new EngineRig(rules: [new NatRule { Action = NatAction.Masquerade, OutInterface = EngineRig.Wan }]);
        for (int i = 0; i < 64; i++)
        {
            var payload = Enumerable.Range(0, 24).Select(b => (byte)((b * 37) + (i * 101))).ToArray();
            var sent = rig.Out(Wire.V4("192.168.1.2", "198.51.100.1", 17, Wire.Udp((ushort)(2000 + i), 53, payload)));
            Assert.True(sent.Accepted);
            var error = rig.In(Wire.V4("198.51.100.254", "203.0.113.1", 1, Wire.IcmpError(3, 4, sent.Output, rest: 1400)));
            Assert.True(error.Accepted);
            var info = PacketParser.Parse(error.Output);
            Assert.Equal("192.168.1.2", new System.Net.IPAddress(error.Output.AsSpan(16, 4)).ToString());
            Assert.True(FuzzPackets.ChecksumsHold(error.Output, info), $"payload {i}: {Convert.ToHexString(error.Output)}");
        }
    }

    /// <summary>
    /// Found by the engine fuzz (seeds 6 and 12) and fixed since (a1fe992): the ICMPv6 checksum of a translated error
    /// lost the carry of a plain 64-bit add, for 8 of these 64 errors. Packet Too Big must survive MASQUERADE (PMTU discovery).
    /// </summary>
    [Fact]
    public void Translated_icmpv6_errors_have_valid_checksums()
    {
        var rig = new EngineRig(rules: [new NatRule { Action = NatAction.Masquerade, OutInterface = EngineRig.Wan }]);
        int broken = 0;
        for (int i = 0; i < 64; i++)
        {
            var payload = Enumerable.Range(0, 24).Select(b => (byte)((b * 37) + (i * 101))).ToArray();
            var sent = rig.Out(Wire.V6("fd00::2", "2001:db8::1", 17, Wire.Udp((ushort)(2000 + i), 53, payload)));
            Assert.True(sent.Accepted);
            var error = rig.In(Wire.V6("2001:db8::fe", "2001:db8:ffff::1", 58, Wire.IcmpError(2, 0, sent.Output, rest: 1280)));
            Assert.True(error.Accepted);
            Assert.Equal(CtInfo.RelatedReply, error.CtInfo);
            Assert.Equal("fd00::2", new System.Net.IPAddress(error.Output.AsSpan(24, 16)).ToString());
            if (!FuzzPackets.ChecksumsHold(error.Output, PacketParser.Parse(error.Output)))
            {
                broken++;
            }
        }

        Assert.Equal(0, broken);
    }
}
