using System.Globalization;
using System.Text;

namespace Offload.Rules;

/// <summary>
/// The iptables rules that hand exactly offloadd's packets to its queues, in <c>iptables-restore</c> form, in
/// chains of their own so they can be applied and removed without touching the administrator's rules.
/// </summary>
/// <remarks>
/// <para>Packets steered, per protocol (TCP, UDP by default) and family:</para>
/// <list type="bullet">
/// <item>raw PREROUTING, from a <c>from</c> interface, not to the router itself: <c>CT --notrack</c>, so the
/// kernel's conntrack and NAT leave the flow to us. They are queued after routing (below).</item>
/// <item>raw PREROUTING, on a <c>to</c> interface, to one of the router's own addresses and a port of the daemon's
/// NAT range: <c>CT --notrack</c> and queued (queue-pre). These are the replies of flows the daemon translated,
/// and the expected connections (e.g. FTP data) whose ports the daemon chose in that range. Their destination
/// is rewritten before the kernel routes them.</item>
/// <item>mangle POSTROUTING, untracked, leaving by a <c>to</c> interface: queued (queue-post). New connections and
/// original-direction packets get their source translated after routing, where the kernel does it too (a source
/// rewritten before routing would be dropped as a martian).</item>
/// </list>
/// <para>Without <c>fail-open</c> the queue rules have no <c>--queue-bypass</c>: while the daemon is absent the
/// packets are dropped (fail closed), so a flow whose NAT lives in the daemon never leaves un-NATed.</para>
/// </remarks>
public static class SteeringRules
{
    public const string PreChain = "OFFLOAD-PRE";
    public const string PostChain = "OFFLOAD-POST";

    /// <summary>The ipset set of one family's individually steered flows (helpers mode).</summary>
    public static string SetName(SteeringConfig steering, byte family) => steering.SetPrefix + family.ToString(CultureInfo.InvariantCulture);

    /// <summary>The (protocol, port) pairs of the configured helpers: what helpers mode steers by itself.</summary>
    /// <param name="config">The configuration.</param>
    /// <param name="helpers">Creates the configured helpers, whose own ports apply where the configuration names none.</param>
    public static IReadOnlyList<(byte Protocol, ushort Port)> HelperPorts(OffloadConfig config, EngineBuilder.HelperFactory helpers) =>
        [.. config.Helpers.SelectMany(h => helpers(h) is { } helper ? h.PortsOf(helper).Select(p => (h.ProtocolOf(helper), p)) : []).Distinct()];

    /// <summary>The rules of a configuration for one family (4: iptables-restore, 6: ip6tables-restore).</summary>
    /// <param name="config">The configuration.</param>
    /// <param name="family">4 or 6.</param>
    /// <param name="helpers">Creates the configured helpers (for their ports).</param>
    public static string Render(OffloadConfig config, byte family, EngineBuilder.HelperFactory helpers) =>
        Render(config.Steering ?? throw new ArgumentException("The configuration has no steering section.", nameof(config)), family, HelperPorts(config, helpers));

    /// <summary>The rules for one family (4: iptables-restore, 6: ip6tables-restore).</summary>
    /// <param name="steering">The steering section.</param>
    /// <param name="family">4 or 6.</param>
    /// <param name="helperPorts">The helpers' (protocol, port) pairs, steered in helpers mode.</param>
    public static string Render(SteeringConfig steering, byte family, IReadOnlyList<(byte Protocol, ushort Port)> helperPorts)
    {
        var text = new StringBuilder();
        text.Append("# offloadd steering rules (IPv").Append(family).Append("), from the configuration; apply with ")
            .Append(family == 4 ? "iptables" : "ip6tables").Append("-restore --noflush\n");
        string bypass = steering.FailOpen ? " --queue-bypass" : string.Empty;
        string range = string.Create(CultureInfo.InvariantCulture, $"{steering.NatPortMin}:{steering.NatPortMax}");

        text.Append("*raw\n:").Append(PreChain).Append(" - [0:0]\n");
        string set = SetName(steering, family);
        if (steering.Flows == SteeredFlows.Helpers)
        {
            // Helpers mode: the control flows by port, and each connection they expect by its entry in the set
            // (destination, port, source), added and removed by the daemon; the rest stays with the kernel.
            foreach (var from in steering.From)
            {
                foreach (var (protocol, port) in helperPorts)
                {
                    string p = ProtocolName(protocol);
                    text.Append($"-A {PreChain} -i {from} -p {p} -m addrtype ! --dst-type LOCAL -m {p} --dport {port} -j CT --notrack\n");
                }

                text.Append($"-A {PreChain} -i {from} -m addrtype ! --dst-type LOCAL -m set --match-set {set} dst,dst,src -j CT --notrack\n");
            }
        }

        foreach (byte protocol in steering.Protocols)
        {
            string p = ProtocolName(protocol);
            if (steering.Flows == SteeredFlows.All)
            {
                foreach (var from in steering.From)
                {
                    text.Append($"-A {PreChain} -i {from} -p {p} -m addrtype ! --dst-type LOCAL -j CT --notrack\n");
                }
            }

            foreach (var to in steering.To)
            {
                text.Append($"-A {PreChain} -i {to} -p {p} -m addrtype --dst-type LOCAL -m {p} --dport {range} -j CT --notrack\n");
                text.Append($"-A {PreChain} -i {to} -p {p} -m addrtype --dst-type LOCAL -m {p} --dport {range} -j NFQUEUE --queue-num {steering.QueuePre}{bypass}\n");
            }
        }

        text.Append("COMMIT\n*mangle\n:").Append(PostChain).Append(" - [0:0]\n");
        foreach (byte protocol in steering.Protocols)
        {
            string p = ProtocolName(protocol);
            foreach (var to in steering.To)
            {
                text.Append($"-A {PostChain} -o {to} -p {p} -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num {steering.QueuePost}{bypass}\n");
            }
        }

        text.Append("COMMIT\n");
        return text.ToString();
    }

    /// <summary>The jumps from the built-in chains into ours, as (table, built-in chain, our chain).</summary>
    public static IReadOnlyList<(string Table, string Chain, string Target)> Jumps { get; } =
    [
        ("raw", "PREROUTING", PreChain),
        ("mangle", "POSTROUTING", PostChain),
    ];

    private static string ProtocolName(byte protocol) => protocol switch
    {
        6 => "tcp",
        17 => "udp",
        _ => throw new ArgumentOutOfRangeException(nameof(protocol), protocol, "Only TCP and UDP are steered."),
    };
}
