using Offload.Engine.Helpers;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Sdk.Tests;

/// <summary>
/// One helper may serve TCP and UDP on several ports (as the kernel registers one nf_conntrack_helper per protocol and
/// port, here one object), sees the ports it is bound to, and takes options; a helper of yesterday, which sets none of
/// this, keeps its one protocol and refuses options.
/// </summary>
public class SeveralProtocolsTests
{
    /// <summary>A portmapper-like helper: TCP and UDP, ports 111 and 1111; it records which protocol each packet had.</summary>
    private sealed class TwoProtocols : ConntrackHelper
    {
        public TwoProtocols() : base("two", new ExpectationPolicy(1, TimeSpan.FromSeconds(10)))
        {
            Protocols = [IpProtocol.Tcp, IpProtocol.Udp];
            Ports = [111, 1111];
        }

        public List<byte> Seen { get; } = [];

        public IReadOnlyDictionary<string, string>? Options { get; private set; }

        public override HelperVerdict Help(ref HelperContext context)
        {
            if (!context.Payload.IsEmpty)
            {
                Seen.Add(context.Protocol);
            }

            return HelperVerdict.Accept;
        }

        public override void Configure(IReadOnlyDictionary<string, string> options) => Options = options;
    }

    private sealed class Yesterday : ConntrackHelper
    {
        public Yesterday() : base("yesterday", new ExpectationPolicy(1, TimeSpan.FromSeconds(10))) => Ports = [7];

        public override HelperVerdict Help(ref HelperContext context) => HelperVerdict.Accept;
    }

    [Fact]
    public void A_helper_that_sets_no_protocols_serves_its_one_protocol()
    {
        var helper = new Yesterday();
        Assert.Equal([IpProtocol.Tcp], helper.Protocols);
        Assert.Equal(["tcp/7"], HelperBinding.Defaults(helper).Select(b => new HelperPort(b.Protocol, b.Port).ToString()));
    }

    [Fact]
    public void A_helper_for_tcp_and_udp_sees_both_on_each_of_its_ports()
    {
        var helper = new TwoProtocols();
        var rig = Masquerading(helper);

        rig.PassOut(UdpPacket(Client, 5000, Server, 111, Ascii("GETPORT")));
        rig.PassOut(TcpPacket(Client, 5001, Server, 1111, Syn, seq: 1));
        rig.PassIn(TcpPacket(Server, 1111, WanAddress, 5001, Syn | Ack, seq: 50, ack: 2));
        rig.PassOut(TcpPacket(Client, 5001, Server, 1111, Ack | Psh, seq: 2, ack: 51, payload: Ascii("GETPORT")));
        rig.PassOut(UdpPacket(Client, 5002, Server, 2222, Ascii("not bound")));

        Assert.Equal([IpProtocol.Udp, IpProtocol.Tcp], helper.Seen);
    }

    [Fact]
    public void A_helper_sees_the_ports_it_is_bound_to_and_loses_them_when_unbound()
    {
        var helper = new TwoProtocols();
        Assert.Empty(helper.BoundPorts);

        var rig = Masquerading(helper);
        Assert.Equal(["tcp/111", "tcp/1111", "udp/111", "udp/1111"], helper.BoundPorts.Select(p => p.ToString()).Order(StringComparer.Ordinal));

        rig.Engine.Reconfigure([], [new HelperBinding(helper, IpProtocol.Udp, 5353)]);
        Assert.Equal([new HelperPort(IpProtocol.Udp, 5353)], helper.BoundPorts);

        rig.Engine.Reconfigure([], []);
        Assert.Empty(helper.BoundPorts);
    }

    [Fact]
    public void A_helper_without_options_of_its_own_refuses_any_it_is_given()
    {
        var helper = new Yesterday();
        helper.Configure(new Dictionary<string, string>());
        var error = Assert.Throws<ArgumentException>(() => helper.Configure(new Dictionary<string, string> { ["timeout"] = "5", ["mode"] = "x" }));
        Assert.StartsWith("helper 'yesterday' takes no options (given: mode, timeout)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Protocols_cannot_be_set_empty()
    {
        Assert.Throws<ArgumentException>(() => new NoProtocol());
    }

    private sealed class NoProtocol : ConntrackHelper
    {
        public NoProtocol() : base("none", new ExpectationPolicy(1, TimeSpan.FromSeconds(1))) => Protocols = [];

        public override HelperVerdict Help(ref HelperContext context) => HelperVerdict.Accept;
    }

    [Fact]
    public void Protocol_names_are_iptables_names()
    {
        Assert.Equal(["tcp", "udp", "icmp", "ipv6-icmp", "gre", "sctp", "99"], new byte[] { 6, 17, 1, 58, 47, 132, 99 }.Select(IpProtocol.Name));
    }
}
