using System.Globalization;
using System.Net;
using System.Text;
using Offload.Engine.Nat;
using Offload.Engine.Sharding;
using Offload.Sdk;

namespace Offload.Rules;

/// <summary>
/// The iptables rules that hand exactly offloadd's packets to its queues, and give the kernel what offloadd leaves
/// to it, in <c>iptables-restore</c> form, in chains of their own so they can be applied and removed without
/// touching the administrator's rules. docs/steering.md explains each rule with its reason.
/// </summary>
/// <remarks>
/// <para>Where each packet goes (per family; TCP, UDP and ICMP by default):</para>
/// <list type="bullet">
/// <item>raw PREROUTING, forwarded from a <c>from</c> interface: <c>CT --notrack</c>, queued after routing (mangle
/// POSTROUTING, queue-post), where source NAT belongs: a source rewritten before routing would be a martian.</item>
/// <item>raw PREROUTING, forwarded from a <c>to</c> interface (replies of routed flows, new inbound flows), the
/// packets of <c>dnat</c> rules, the replies to the daemon's NAT ports, echo replies to its ICMP ids and the ICMP
/// errors that quote them: <c>CT --notrack</c> and queued before routing (queue-pre), where destination NAT belongs
/// and before FORWARD, so the firewall there sees the daemon's state in the packet mark.</item>
/// <item>with the <c>pptp</c> helper, the enhanced GRE of PPTP calls (matched by its header), as TCP and UDP are:
/// after routing from a <c>from</c> interface, before routing from a <c>to</c> interface.</item>
/// <item><c>redirect</c> rules (the connection ends at the router itself) and every other protocol (plain GRE, ESP,
/// SCTP, an IPv6 packet whose transport header <c>-p</c> cannot find): left to the kernel's conntrack, with kernel
/// NAT rules that mirror the configured ones (nat table). Untracked packets never reach the nat table, so these
/// rules touch only what the daemon does not take; their TCP and UDP ports stay below <c>nat-ports</c>.</item>
/// <item>mangle FORWARD: a forwarded packet from a <c>from</c> to a <c>to</c> interface that the kernel's conntrack
/// calls INVALID (it could not track it, so no NAT rule would translate it) is dropped.</item>
/// </list>
/// <para>Without <c>fail-open</c> the queue rules have no <c>--queue-bypass</c>: while the daemon is absent the
/// packets are dropped (fail closed), so a flow whose NAT lives in the daemon never leaves un-NATed.</para>
/// </remarks>
public static class SteeringRules
{
    public const string PreChain = "OFFLOAD-PRE";
    public const string QueuePreChain = "OFFLOAD-QPRE";
    public const string ForwardChain = "OFFLOAD-FWD";
    public const string PostChain = "OFFLOAD-POST";
    public const string NatPreChain = "OFFLOAD-NAT-PRE";
    public const string NatPostChain = "OFFLOAD-NAT-POST";

    /// <summary>The ICMP types that quote a packet (IPv4: unreachable, time exceeded, parameter problem).</summary>
    private const string Icmp4Errors = "3,11,12";

    /// <summary>The ICMPv6 error types: unreachable, packet too big, time exceeded, parameter problem.</summary>
    private const string Icmp6Errors = "1:4";

    /// <summary>The most entries a steering set holds (ipset's maxelem).</summary>
    public const uint SetMaxElements = 1048576;

    /// <summary>The ipset set of one family's individually steered flows (helpers mode).</summary>
    public static string SetName(SteeringConfig steering, byte family) => steering.SetPrefix + family.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// The ipset set of one family's flows handed back to the kernel (hand-back): (the router's address, the port offloadd
    /// translated to, the peer) of the packets that arrive from outside, which would otherwise be queued as replies to
    /// offloadd's NAT ports, matched <c>dst,dst,src</c>; with <c>flows: all</c> also (the LAN host, its port, the peer)
    /// of the packets that arrive from a <c>from</c> interface, which would otherwise be untracked, matched
    /// <c>src,src,dst</c>.
    /// </summary>
    public static string HandbackSetName(SteeringConfig steering, byte family) => HandbackSetName(steering.SetPrefix, family);

    /// <summary>The hand-back set of a set prefix (see <see cref="HandbackSetName(SteeringConfig, byte)"/>).</summary>
    public static string HandbackSetName(string setPrefix, byte family) => setPrefix + "h" + family.ToString(CultureInfo.InvariantCulture);

    /// <summary>Whether a configuration hands flows back to the kernel (and so has the hand-back set and its rule).</summary>
    public static bool HandsBack(OffloadConfig config) =>
        config.Handback is { Enabled: true } && config.Steering is not null;

    /// <summary>The (protocol, port) pairs of the configured helpers: what helpers mode steers by itself.</summary>
    /// <param name="config">The configuration.</param>
    /// <param name="helpers">Creates the configured helpers, whose own ports apply where the configuration names none.</param>
    public static IReadOnlyList<(byte Protocol, ushort Port)> HelperPorts(OffloadConfig config, EngineBuilder.HelperFactory helpers) =>
        [.. config.Helpers.SelectMany(h => helpers(h) is { } helper ? h.ProtocolsOf(helper).SelectMany(protocol => h.PortsOf(helper).Select(p => (protocol, p))) : []).Distinct()];

    /// <summary>The rules of a configuration for one family (4: iptables-restore, 6: ip6tables-restore).</summary>
    /// <param name="config">The configuration.</param>
    /// <param name="family">4 or 6.</param>
    /// <param name="helpers">Creates the configured helpers (for their ports).</param>
    public static string Render(OffloadConfig config, byte family, EngineBuilder.HelperFactory helpers) =>
        Render(config, family, HelperPorts(config, helpers));

    /// <summary>The rules for one family (4: iptables-restore, 6: ip6tables-restore).</summary>
    /// <param name="config">The configuration; it must have a steering section.</param>
    /// <param name="family">4 or 6.</param>
    /// <param name="helperPorts">The helpers' (protocol, port) pairs, steered in helpers mode.</param>
    public static string Render(OffloadConfig config, byte family, IReadOnlyList<(byte Protocol, ushort Port)> helperPorts)
    {
        var steering = config.Steering ?? throw new ArgumentException("The configuration has no steering section.", nameof(config));
        var writer = new FamilyRules(config, steering, family, helperPorts);
        return writer.Render();
    }

    /// <summary>The jumps from the built-in chains into ours, as (table, built-in chain, our chain).</summary>
    public static IReadOnlyList<(string Table, string Chain, string Target)> Jumps { get; } =
    [
        ("raw", "PREROUTING", PreChain),
        ("mangle", "FORWARD", ForwardChain),
        ("mangle", "POSTROUTING", PostChain),
        ("nat", "PREROUTING", NatPreChain),
        ("nat", "POSTROUTING", NatPostChain),
    ];

    /// <summary>
    /// The interfaces where hairpin NAT brings packets whose source offloadd already translated to one of the router's
    /// own addresses: the <c>out:</c> interfaces of IPv4 source NAT rules other than the <c>to</c> ones. offloadd
    /// translates both addresses of such a packet before routing (where it is queued), and the kernel drops a packet
    /// with a local source address as a martian unless the interface has <c>accept_local</c>.
    /// </summary>
    public static IReadOnlyList<string> HairpinInterfaces(OffloadConfig config) =>
        config.Steering is not { } steering ? []
        : [.. config.Nat.Where(r => r.Action is NatAction.Masquerade or NatAction.Snat && r.Family != 6)
            .Select(r => r.OutInterface).OfType<string>()
            .Where(i => !steering.To.Contains(i, StringComparer.Ordinal))
            .Distinct(StringComparer.Ordinal)];

    /// <summary>Our chains that no built-in chain jumps to (removed after the ones that jump to them).</summary>
    public static IReadOnlyList<(string Table, string Chain)> InnerChains { get; } = [("raw", QueuePreChain)];

    /// <summary>
    /// The ports the kernel's own NAT of the flows the daemon leaves to it may use: below <c>nat-ports</c> (from 1024),
    /// or above it when it starts too low. Null when <c>nat-ports</c> leaves no room (the loader refuses that).
    /// </summary>
    public static (ushort Min, ushort Max)? KernelPorts(SteeringConfig steering) =>
        steering.NatPortMin > 1024 ? ((ushort)1024, (ushort)(steering.NatPortMin - 1))
        : steering.NatPortMax < 65535 ? ((ushort)Math.Max(1024, steering.NatPortMax + 1), (ushort)65535)
        : null;

    /// <summary>The iptables name of a protocol for one family: ICMP is icmpv6 in IPv6.</summary>
    public static string ProtocolName(byte protocol, byte family) => protocol switch
    {
        IpProtocol.Tcp => "tcp",
        IpProtocol.Udp => "udp",
        IpProtocol.Icmp or IpProtocol.IcmpV6 => family == 4 ? "icmp" : "icmpv6",
        IpProtocol.Sctp => "sctp",
        IpProtocol.Gre => "gre",
        _ => protocol.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>The mark value of one state bit inside the configured mask (bit 0 is the mask's lowest bit).</summary>
    public static uint MarkBit(SteeringConfig steering, int bit) => (steering.StateMark & (~steering.StateMark + 1)) << bit;

    /// <summary>Writes one family's rules.</summary>
    private sealed class FamilyRules(OffloadConfig config, SteeringConfig steering, byte family, IReadOnlyList<(byte Protocol, ushort Port)> helperPorts)
    {
        private readonly StringBuilder _text = new();
        private readonly string _bypass = steering.FailOpen ? " --queue-bypass" : string.Empty;
        private readonly string _offloaded = Hex(MarkBit(steering, StateMarkBits.Offloaded));
        private readonly int _shards = ShardCount.Effective(config);

        /// <summary>
        /// The NFQUEUE target for one direction's queues: one queue, or with several shards the balance over their
        /// range, where the kernel picks by a hash of the two addresses that is the same both ways and in both ranges
        /// (so a flow without address translation meets the same shard before and after routing).
        /// </summary>
        private string Queue(ushort first) => _shards == 1
            ? $"NFQUEUE --queue-num {first}{_bypass}"
            : $"NFQUEUE --queue-balance {first}:{first + _shards - 1}{_bypass}";

        private bool Icmp => steering.Protocols.Contains(IpProtocol.Icmp);

        /// <summary>
        /// With the pptp helper, the enhanced GRE of PPTP calls is offloadd's too (its call IDs are translated with the
        /// control connection's); plain GRE stays with the kernel. Matched by its header (version 1, PPP), no extension
        /// headers in IPv6.
        /// </summary>
        private bool PptpGre => config.Helpers.Any(h => h.Name == "pptp");

        private string PptpGreMatch => family == 4
            ? "-p gre -m u32 --u32 \"0>>22&0x3C@0&0x7FFFF=0x1880B\""
            : "-p gre -m u32 --u32 \"40&0x7FFFF=0x1880B\"";

        /// <summary>
        /// Forwarded: not to the router itself nor to a group. (IPv6 groups and link-local addresses leave the chain
        /// first: addrtype cannot tell an IPv6 group once LOCAL is asked too, nor judge a link-local address without
        /// its interface, and neighbour discovery goes to both.)
        /// </summary>
        private string NotLocal => family == 4 ? "-m addrtype ! --dst-type LOCAL,BROADCAST,MULTICAST" : "-m addrtype ! --dst-type LOCAL";

        private IEnumerable<NatRuleConfig> Rules(params NatAction[] actions) =>
            config.Nat.Where(r => (r.Family == 0 || r.Family == family) && actions.Contains(r.Action));

        public string Render()
        {
            _text.Append("# offloadd steering rules (IPv").Append(family).Append("), from the configuration; apply with ")
                .Append(family == 4 ? "iptables" : "ip6tables").Append("-restore --noflush\n");
            Raw();
            Mangle();
            Nat();
            return _text.ToString();
        }

        private void Line(string rule) => _text.Append(rule).Append('\n');

        // ------------------------------------------------------------ raw: what the daemon takes

        private void Raw()
        {
            _text.Append("*raw\n:").Append(PreChain).Append(" - [0:0]\n:").Append(QueuePreChain).Append(" - [0:0]\n");
            Line($"-A {QueuePreChain} -j CT --notrack");
            Line($"-A {QueuePreChain} -j {Queue(steering.QueuePre)}");
            if (family == 6)
            {
                Line($"-A {PreChain} -d ff00::/8 -j RETURN");
                Line($"-A {PreChain} -d fe80::/10 -j RETURN");
            }

            if (HandsBack(config))
            {
                // A flow handed back to the kernel: its packets from outside, to the router's port offloadd chose, would be
                // queued by the NAT replies rules below. They are the kernel's now: tracked, they find the entry offloadd
                // created with the same NAT.
                Line($"-A {PreChain} -m set --match-set {HandbackSetName(steering, family)} dst,dst,src -j RETURN");
                if (steering.Flows == SteeredFlows.All)
                {
                    // With every flow steered, its packets from the LAN would be untracked (and queued after routing) by the
                    // rules below: left tracked, they find the kernel's entry, which translates them as offloadd did. The
                    // daemon adds these entries only once the kernel has acknowledged that entry.
                    foreach (var from in steering.From)
                    {
                        Line($"-A {PreChain} -i {from} -m set --match-set {HandbackSetName(steering, family)} src,src,dst -j RETURN");
                    }
                }
            }

            // REDIRECT ends the connection at the router itself, whose traffic is the kernel's: leave it tracked, so the
            // mirrored kernel rule redirects it, before any rule below could take it.
            foreach (var rule in Rules(NatAction.Redirect))
            {
                foreach (string protocol in ProtocolsOf(rule, steeredOnly: false))
                {
                    Line($"-A {PreChain}{In(rule)}{protocol}{Addresses(rule)}{DestinationPorts(rule)} -j RETURN");
                }
            }

            NatReplies();
            ForwardedBroadcasts();
            if (steering.Flows == SteeredFlows.All)
            {
                // Helpers mode leaves port forwards to the kernel (the loader refuses one to a helper's port).
                DestinationNat();
                foreach (byte protocol in steering.Protocols)
                {
                    string p = ProtocolName(protocol, family);
                    foreach (var from in steering.From)
                    {
                        Line($"-A {PreChain} -i {from} -p {p} {NotLocal} -j CT --notrack");
                    }

                    // Routed replies and new flows from outside: tracked (and marked) before FORWARD judges them.
                    foreach (var to in steering.To)
                    {
                        Line($"-A {PreChain} -i {to} -p {p} {NotLocal} -j {QueuePreChain}");
                    }
                }
            }
            else
            {
                HelperFlows();
            }

            if (PptpGre)
            {
                // A call's GRE from the LAN is queued after routing (its source NAT), from outside before it: replies to the
                // router's address and routed calls alike. In helpers mode the set entries take the call's own flows first.
                foreach (var from in steering.From)
                {
                    Line($"-A {PreChain} -i {from} {PptpGreMatch} {NotLocal} -j CT --notrack");
                }

                foreach (var to in steering.To)
                {
                    Line($"-A {PreChain} -i {to} {PptpGreMatch} -j {QueuePreChain}");
                }
            }

            Line("COMMIT");
        }

        /// <summary>
        /// A query to a helper's UDP port sent to the directed broadcast address of another network, which the router
        /// forwards (its <c>bc_forwarding</c>): taken like any forwarded flow, so that the helper sees it (netbios-ns
        /// expects the answers of the hosts of that network). The rules below leave broadcasts to the kernel; the
        /// broadcast of the incoming interface's own network is the router's and stays so.
        /// </summary>
        private void ForwardedBroadcasts()
        {
            var udpPorts = helperPorts.Where(h => h.Protocol == IpProtocol.Udp).Select(h => h.Port).Distinct().ToList();
            if (family != 4 || udpPorts.Count == 0 || !steering.Protocols.Contains(IpProtocol.Udp))
            {
                return;
            }

            foreach (var from in steering.From)
            {
                Line($"-A {PreChain} -i {from} -p udp -m addrtype --dst-type BROADCAST --limit-iface-in -j RETURN");
                foreach (ushort port in udpPorts)
                {
                    Line($"-A {PreChain} -i {from} -p udp -m addrtype --dst-type BROADCAST -m udp --dport {port} -j CT --notrack");
                }
            }
        }

        /// <summary>The packets of <c>dnat</c> rules, before routing; ICMP only as echo requests (errors find their flow).</summary>
        private void DestinationNat()
        {
            foreach (var rule in Rules(NatAction.Dnat))
            {
                foreach (string protocol in ProtocolsOf(rule, steeredOnly: true))
                {
                    string icmpQuery = protocol.Contains("icmp", StringComparison.Ordinal) ? EchoMatch("request") : string.Empty;
                    string notLoopback = rule.InInterface is null ? " ! -i lo" : string.Empty;
                    Line($"-A {PreChain}{In(rule)}{notLoopback}{protocol}{icmpQuery}{Addresses(rule)}{DestinationPorts(rule)} -j {QueuePreChain}");
                }

                // ICMP errors about a forwarded port's flows arrive at its address and quote its port as their source.
                if (Icmp && rule.DestinationPortMin != 0)
                {
                    string to = rule.Destination is { } d ? $" -d {d}" : " -m addrtype --dst-type LOCAL";
                    Line($"-A {PreChain}{In(rule)} -p {ProtocolName(IpProtocol.Icmp, family)}{to} {QuotedPortMatch(rule.DestinationPortMin, rule.DestinationPortMax, transport: true)} -j {QueuePreChain}");
                }
            }
        }

        /// <summary>
        /// What comes back to the daemon's source NAT: replies to its ports (and expected connections it placed there),
        /// echo replies to its ICMP ids, and the ICMP errors that quote either, on every interface it translates out of.
        /// </summary>
        private void NatReplies()
        {
            var sourceNat = Rules(NatAction.Masquerade, NatAction.Snat).ToList();
            if (sourceNat.Count == 0)
            {
                return; // Nothing of this family is translated to the router's addresses.
            }

            var interfaces = steering.To.Concat(sourceNat.Select(r => r.OutInterface).OfType<string>()).Distinct(StringComparer.Ordinal);
            var ports = new List<(ushort, ushort)> { (steering.NatPortMin, steering.NatPortMax) };
            ports.AddRange(sourceNat.Where(r => r.PortMin != 0).Select(r => (r.PortMin, r.PortMax)));
            var destinations = new List<string> { "-m addrtype --dst-type LOCAL" };
            destinations.AddRange(sourceNat.Where(r => r.Action == NatAction.Snat && r.ToMin is not null)
                .Select(r => $"-m iprange --dst-range {r.ToMin}-{r.ToMax}"));

            // With several shards, each slice of the NAT ports goes to the queue of the shard that translates to it
            // (the two rules of ToShard); a rule's own port range goes to the balance, where the shards find the owner.
            var slices = new List<(ushort Min, ushort Max, int Shard)>();
            foreach (var (min, max) in ports.Distinct())
            {
                if (_shards > 1 && min == steering.NatPortMin && max == steering.NatPortMax)
                {
                    slices.AddRange(Enumerable.Range(0, _shards).Select(k => PortSlice.Of(min, max, k, _shards) is var (a, b) ? (a, b, k) : default));
                }
                else
                {
                    slices.Add((min, max, -1));
                }
            }

            foreach (var i in interfaces)
            {
                foreach (var destination in destinations.Distinct(StringComparer.Ordinal))
                {
                    foreach (var (min, max, shard) in slices)
                    {
                        foreach (byte protocol in steering.Protocols.Where(p => p != IpProtocol.Icmp))
                        {
                            string p = ProtocolName(protocol, family);
                            ToShard($"-A {PreChain} -i {i} -p {p} {destination} -m {p} --dport {min}:{max}", shard);
                        }

                        if (Icmp)
                        {
                            string p = ProtocolName(IpProtocol.Icmp, family);
                            string id = family == 4 ? "0>>22&0x3C@4>>16" : "44>>16";
                            ToShard($"-A {PreChain} -i {i} -p {p} {destination}{EchoMatch("reply")} -m u32 --u32 \"{id}={min}:{max}\"", shard);
                        }

                        // Errors are steered even when ICMP itself is not: they belong to the TCP and UDP flows they quote.
                        ToShard($"-A {PreChain} -i {i} -p {ProtocolName(IpProtocol.Icmp, family)} {destination} {QuotedPortMatch(min, max, transport: true)}", shard);
                        if (Icmp)
                        {
                            ToShard($"-A {PreChain} -i {i} -p {ProtocolName(IpProtocol.Icmp, family)} {destination} {QuotedPortMatch(min, max, transport: false)}", shard);
                        }
                    }
                }
            }
        }

        /// <summary>
        /// A rule that queues before routing: through the queue chain (balanced over the shards), or straight to one
        /// shard's queue, untracked first as the chain does it (CT is not a verdict: the next rule still runs).
        /// </summary>
        private void ToShard(string match, int shard)
        {
            if (shard < 0)
            {
                Line($"{match} -j {QueuePreChain}");
                return;
            }

            Line($"{match} -j CT --notrack");
            Line($"{match} -j NFQUEUE --queue-num {steering.QueuePre + shard}{_bypass}");
        }

        /// <summary>
        /// A u32 match for an ICMP error (no IPv6 extension headers, outer or quoted) whose quoted packet is TCP or UDP
        /// from a port in min–max (<paramref name="transport"/>), or an ICMP echo request with an id in it.
        /// </summary>
        private string QuotedPortMatch(ushort min, ushort max, bool transport)
        {
            string range = string.Create(CultureInfo.InvariantCulture, $"{min}:{max}");
            if (family == 4)
            {
                // "0>>22&0x3C@" moves past the outer header to the ICMP header; the quoted header starts 8 bytes on.
                const string Icmp = "0>>22&0x3C@";
                string quotedProtocol = transport ? "6,17" : "1";
                string port = transport ? "8>>16" : "12>>16";
                return $"-m u32 --u32 \"{Icmp}0>>24={Icmp4Errors}&&{Icmp}16>>16&0xFF={quotedProtocol}&&{Icmp}8>>22&0x3C@{port}={range}\"";
            }

            // Outer header 40, ICMPv6 header 8, quoted header 40: the quoted next header at 54, its transport at 88.
            return transport
                ? $"-m u32 --u32 \"40>>24={Icmp6Errors}&&52>>8&0xFF=6,17&&88>>16={range}\""
                : $"-m u32 --u32 \"40>>24={Icmp6Errors}&&52>>8&0xFF=58&&88>>24=128&&92>>16={range}\"";
        }

        private string EchoMatch(string kind) =>
            family == 4 ? $" -m icmp --icmp-type echo-{kind}" : $" -m icmp6 --icmpv6-type echo-{kind}";

        /// <summary>Helpers mode: the helpers' control flows by port, and each connection they expect by its set entry.</summary>
        private void HelperFlows()
        {
            // Each connection a helper expects is in the set as (destination, port, source), added and removed by the
            // daemon; the rest stays with the kernel. Routed (un-NATed) helper flows answer to a forwarded address.
            string set = SetName(steering, family);
            bool handsBack = HandsBack(config);
            foreach (var from in steering.From)
            {
                foreach (var (protocol, port) in helperPorts)
                {
                    string p = ProtocolName(protocol, family);
                    Line(handsBack
                        ? $"-A {PreChain} -i {from} -p {p} -m {p} --dport {port} {NotLocal} -j CT --notrack"
                        : $"-A {PreChain} -i {from} -p {p} {NotLocal} -m {p} --dport {port} -j CT --notrack");
                }

                // An expected connection may start on either side (FTP active data comes from the server): its
                // entry is its original direction, so both the entry and its inverse are taken on both sides.
                // With hand-back the kernel forwards bulk flows from here too, whose every packet falls through
                // these rules: the port and the set, cheap, are matched before the address lookup (addrtype).
                Line(handsBack
                    ? $"-A {PreChain} -i {from} -m set --match-set {set} dst,dst,src {NotLocal} -j CT --notrack"
                    : $"-A {PreChain} -i {from} {NotLocal} -m set --match-set {set} dst,dst,src -j CT --notrack");
                Line(handsBack
                    ? $"-A {PreChain} -i {from} -m set --match-set {set} src,src,dst {NotLocal} -j CT --notrack"
                    : $"-A {PreChain} -i {from} {NotLocal} -m set --match-set {set} src,src,dst -j CT --notrack");
            }

            foreach (var to in steering.To)
            {
                foreach (var (protocol, port) in helperPorts)
                {
                    string p = ProtocolName(protocol, family);
                    Line($"-A {PreChain} -i {to} -p {p} {NotLocal} -m {p} --sport {port} -j {QueuePreChain}");
                }

                Line($"-A {PreChain} -i {to} {NotLocal} -m set --match-set {set} src,src,dst -j {QueuePreChain}");
                Line($"-A {PreChain} -i {to} {NotLocal} -m set --match-set {set} dst,dst,src -j {QueuePreChain}");
            }
        }

        // ------------------------------------------------------------ mangle: after routing, and the guard

        private void Mangle()
        {
            _text.Append("*mangle\n:").Append(ForwardChain).Append(" - [0:0]\n:").Append(PostChain).Append(" - [0:0]\n");

            // What the kernel tracks but could not make sense of gets no NAT from it: it must not leave as it came.
            foreach (var from in steering.From)
            {
                foreach (var to in steering.To)
                {
                    Line($"-A {ForwardChain} -i {from} -o {to} -m conntrack --ctstate INVALID -j DROP");
                }
            }

            if (HandsBack(config))
            {
                // Every rule below queues untracked packets only. Tracked ones (the flows handed back, and all the kernel's
                // own in helpers mode) leave here before any of them looks the source address up (addrtype): that lookup,
                // per packet, is most of what a handed-back flow would pay beyond the kernel's own path.
                Line($"-A {PostChain} -m conntrack ! --ctstate UNTRACKED -j RETURN");
            }

            // A packet the daemon already took before routing carries its mark and is not queued twice. The router's own
            // packets are not forwarded traffic: its IPv6 neighbour discovery, for one, leaves untracked.
            foreach (byte protocol in steering.Protocols)
            {
                string p = ProtocolName(protocol, family);
                foreach (var to in steering.To)
                {
                    Line($"-A {PostChain} -o {to} -p {p} -m addrtype ! --src-type LOCAL -m conntrack --ctstate UNTRACKED -m mark ! --mark {_offloaded}/{_offloaded} -j {Queue(steering.QueuePost)}");
                }
            }

            if (PptpGre)
            {
                foreach (var to in steering.To)
                {
                    Line($"-A {PostChain} -o {to} -p gre -m addrtype ! --src-type LOCAL -m conntrack --ctstate UNTRACKED -m mark ! --mark {_offloaded}/{_offloaded} -j {Queue(steering.QueuePost)}");
                }
            }

            Line("COMMIT");
        }

        // ------------------------------------------------------------ nat: the kernel's NAT of what the daemon leaves

        private void Nat()
        {
            _text.Append("*nat\n:").Append(NatPreChain).Append(" - [0:0]\n:").Append(NatPostChain).Append(" - [0:0]\n");
            foreach (var rule in Rules(NatAction.Dnat, NatAction.Redirect))
            {
                string target = rule.Action == NatAction.Redirect
                    ? "-j REDIRECT" + (rule.PortMin != 0 ? $" --to-ports {PortRange(rule.PortMin, rule.PortMax, '-')}" : string.Empty)
                    : $"-j DNAT --to-destination {Destination(rule)}";
                Line($"-A {NatPreChain}{In(rule)}{Protocol(rule)}{Addresses(rule)}{DestinationPorts(rule)} {target}{Random(rule)}");
            }

            var kernelPorts = KernelPorts(steering);
            foreach (var rule in Rules(NatAction.Masquerade, NatAction.Snat))
            {
                string match = $"-A {NatPostChain}{Out(rule)}";
                if (rule.Protocol == 0 && kernelPorts is var (min, max))
                {
                    // The kernel keeps a source port when it can: a range makes it move ports out of nat-ports.
                    foreach (string p in new[] { "tcp", "udp", "sctp" })
                    {
                        Line($"{match} -p {p}{Addresses(rule)} {SourceTarget(rule, min, max)}");
                    }

                    Line($"{match}{Addresses(rule)} {SourceTarget(rule, 0, 0)}");
                    continue;
                }

                bool hasPorts = rule.Protocol is IpProtocol.Tcp or IpProtocol.Udp or IpProtocol.Sctp;
                var (low, high) = rule.PortMin != 0 ? (rule.PortMin, rule.PortMax)
                    : hasPorts && kernelPorts is var (kmin, kmax) ? (kmin, kmax) : ((ushort)0, (ushort)0);
                Line($"{match}{Protocol(rule)}{Addresses(rule)}{DestinationPorts(rule)} {SourceTarget(rule, low, high)}");
            }

            Line("COMMIT");
        }

        private static string SourceTarget(NatRuleConfig rule, ushort min, ushort max)
        {
            string ports = min == 0 ? string.Empty : PortRange(min, max, '-');
            string target = rule.Action == NatAction.Masquerade
                ? "-j MASQUERADE" + (ports.Length > 0 ? " --to-ports " + ports : string.Empty)
                : "-j SNAT --to-source " + WithPorts(rule, ports);
            return target + Random(rule) + (rule.Persistent && rule.Action == NatAction.Snat ? " --persistent" : string.Empty);
        }

        private static string Destination(NatRuleConfig rule) =>
            WithPorts(rule, rule.PortMin == 0 ? string.Empty : PortRange(rule.PortMin, rule.PortMax, '-'));

        /// <summary>The rule's addresses, then <c>:ports</c> if any; iptables wants an IPv6 address in brackets before its ports.</summary>
        private static string WithPorts(NatRuleConfig rule, string ports)
        {
            string addresses = AddressRange(rule);
            if (ports.Length == 0)
            {
                return addresses;
            }

            bool v6 = rule.ToMin!.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
            return (v6 ? $"[{addresses}]" : addresses) + ":" + ports;
        }

        private static string AddressRange(NatRuleConfig rule) =>
            rule.ToMin!.Equals(rule.ToMax) ? rule.ToMin.ToString() : $"{rule.ToMin}-{rule.ToMax}";

        private static string Random(NatRuleConfig rule) => rule.Random ? " --random" : string.Empty;

        // ------------------------------------------------------------ matches shared by the tables

        /// <summary>The <c>-p</c> matches a rule covers: its own protocol, or each steered one when it names none.</summary>
        private IEnumerable<string> ProtocolsOf(NatRuleConfig rule, bool steeredOnly)
        {
            if (rule.Protocol == 0)
            {
                return steeredOnly ? steering.Protocols.Select(p => " -p " + ProtocolName(p, family)) : [string.Empty];
            }

            bool steered = steering.Protocols.Contains(Steered(rule.Protocol));
            return !steeredOnly || steered ? [Protocol(rule)] : [];
        }

        private string Protocol(NatRuleConfig rule) => rule.Protocol == 0 ? string.Empty : " -p " + ProtocolName(rule.Protocol, family);

        private static string In(NatRuleConfig rule) => rule.InInterface is { } i ? " -i " + i : string.Empty;

        private static string Out(NatRuleConfig rule) => rule.OutInterface is { } o ? " -o " + o : string.Empty;

        private static string Addresses(NatRuleConfig rule) =>
            (rule.Source is { } s ? $" -s {s}" : string.Empty) + (rule.Destination is { } d ? $" -d {d}" : string.Empty);

        private string DestinationPorts(NatRuleConfig rule) =>
            rule.DestinationPortMin == 0 ? string.Empty
            : $" -m {ProtocolName(rule.Protocol, family)} --dport {PortRange(rule.DestinationPortMin, rule.DestinationPortMax)}";
    }

    /// <summary>ICMPv6 is steered under ICMP's number: the configuration's <c>icmp</c> means both.</summary>
    private static byte Steered(byte protocol) => protocol == IpProtocol.IcmpV6 ? IpProtocol.Icmp : protocol;

    /// <summary>A port range as matches write it (<c>--dport 1:2</c>), or as NAT targets do (<c>--to-ports 1-2</c>).</summary>
    private static string PortRange(ushort min, ushort max, char separator = ':') =>
        min == max ? min.ToString(CultureInfo.InvariantCulture) : string.Create(CultureInfo.InvariantCulture, $"{min}{separator}{max}");

    private static string Hex(uint value) => "0x" + value.ToString("x", CultureInfo.InvariantCulture);
}

/// <summary>The bits of <see cref="SteeringConfig.StateMark"/>, from its lowest bit, that offloadd sets on the packets it accepts.</summary>
public static class StateMarkBits
{
    /// <summary>The daemon tracked this packet (its steering rules do not queue it again).</summary>
    public const int Offloaded = 0;

    /// <summary>The packet starts a connection (ctstate NEW).</summary>
    public const int New = 1;

    /// <summary>The connection has seen both directions (ctstate ESTABLISHED).</summary>
    public const int Established = 2;

    /// <summary>An expected connection, or an ICMP error about a known one (ctstate RELATED).</summary>
    public const int Related = 3;

    /// <summary>The packet goes in the reply direction (ctdir REPLY).</summary>
    public const int Reply = 4;

    /// <summary>The connection's destination is translated (ctstate DNAT).</summary>
    public const int DestinationNat = 5;

    /// <summary>The connection's source is translated (ctstate SNAT).</summary>
    public const int SourceNat = 6;
}
