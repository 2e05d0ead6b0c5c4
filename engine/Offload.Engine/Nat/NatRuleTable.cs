using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;

namespace Offload.Engine.Nat;

/// <summary>
/// Which translation a new connection gets: its manip's rules in order (the kernel's nat table, consulted once per
/// connection and manip), MASQUERADE and REDIRECT resolved to an interface's address, a null binding without a
/// match; and for an expected connection, the master's (nf_nat_follow_master).
/// </summary>
internal sealed class NatRuleTable(EngineOptions options, NatCore nat)
{
    private NatRule[] _rules = [.. options.NatRules];

    /// <summary>Replaces the rules (a reload): tracked connections keep their translations.</summary>
    public void Replace(IReadOnlyList<NatRule> rules) => _rules = [.. rules];

    /// <summary>Looks up the NAT rules for a new connection's manip; without a match, a null binding reserves its tuple.</summary>
    public bool Decide(Connection conn, ManipType manip, int inInterface, int outInterface)
    {
        var packet = manip == ManipType.Source ? AfterDestinationNat(conn) : conn.OriginalTuple;
        foreach (var rule in _rules)
        {
            if (rule.Manip != manip || !rule.Matches(packet, inInterface, outInterface))
            {
                continue;
            }

            if (!TryRangeOf(rule, conn, inInterface, outInterface, out var range))
            {
                return false;
            }

            if (rule.Action == NatAction.Masquerade)
            {
                conn.MasqueradeInterface = outInterface;
            }

            return nat.SetupInfo(conn, range, manip);
        }

        return nat.SetupNullBinding(conn, manip);
    }

    /// <summary>
    /// The out interface the SNAT rules of a new connection are matched against: the one routing chose, or, for a
    /// packet queued before routing (a live queue at PREROUTING reports none), the interface whose connected subnet
    /// holds the destination after DNAT. The kernel decides source NAT after its full routing decision; we know only
    /// the connected subnets, which is what a hairpin flow (DNAT'd to a host on the LAN, MASQUERADE out the LAN) needs.
    /// </summary>
    public int SourceNatOutInterface(int outInterface, bool unconfirmed, Connection conn)
    {
        if (outInterface != 0 || !unconfirmed)
        {
            return outInterface;
        }

        // The reply tuple's source is where the original packet goes after DNAT.
        return options.Interfaces.RouteOut(conn.ReplyTuple.Family, conn.ReplyTuple.Source);
    }

    /// <summary>
    /// Translates an expected connection so it reaches the master's peer the way the master does:
    /// its source becomes what the master's peer talks to, and its destination the announced endpoint
    /// (the kernel's nf_nat_follow_master).
    /// </summary>
    public bool FollowMaster(Connection conn, Expectation expectation)
    {
        var master = expectation.Master;
        var masterTuple = master.TupleOf(expectation.NatDirection.Opposite());
        var source = NatRange.ToAddress(masterTuple.Destination);
        if (options.HasNatPortRange && masterTuple.Destination != conn.OriginalTuple.Source)
        {
            // Leaving with a translated source: its replies must come back to a port the steering rules queue to us.
            var (min, max) = options.SliceOf(options.NatPortMin, options.NatPortMax);
            source = source with { Flags = source.Flags | NatRangeFlags.ProtoSpecified, MinPort = min, MaxPort = max };
        }

        return nat.SetupInfo(conn, source, ManipType.Source)
            && nat.SetupInfo(conn, NatRange.ToAddressAndPort(masterTuple.Source, expectation.SavedPort), ManipType.Destination);
    }

    /// <summary>Translates an expected connection to the endpoint its helper redirected it to.</summary>
    public bool Redirect(Connection conn, Expectation expectation) =>
        nat.SetupInfo(conn, NatRange.ToAddressAndPort(expectation.NatAddress, expectation.NatPort), ManipType.Destination);

    /// <summary>Translates an expected connection's source to the endpoint its helper announced for it (SIP's paired media).</summary>
    public bool SourceTo(Connection conn, Expectation expectation) =>
        nat.SetupInfo(conn, NatRange.ToAddressAndPort(expectation.NatAddress, expectation.NatPort), ManipType.Source);

    /// <summary>
    /// Translates an expected connection as its master's helper chose when it arrived (<see cref="ExpectationNat.OnArrival"/>):
    /// the source and/or the destination, a port of 0 leaving the port to the NAT (kept when free). Null: untranslated.
    /// </summary>
    public bool Chosen(Connection conn, ExpectedNatChoice? choice)
    {
        if (choice is null)
        {
            return true;
        }

        if (choice.HasSource && !nat.SetupInfo(conn, To(choice.SourceAddress, choice.SourcePort), ManipType.Source))
        {
            return false;
        }

        return !choice.HasDestination || nat.SetupInfo(conn, To(choice.DestinationAddress, choice.DestinationPort), ManipType.Destination);

        static NatRange To(InetAddress address, ushort port) => port == 0 ? NatRange.ToAddress(address) : NatRange.ToAddressAndPort(address, port);
    }

    /// <summary>
    /// A new connection to one of the router's addresses at a port of the NAT range, neither expected nor forwarded by a
    /// DNAT rule: the reply of a translation this engine does not know (made before a restart whose state was lost, or
    /// forged). The kernel would deliver it to the router's stack, which resets the peer; it is dropped instead, so a
    /// flow the daemon forgot fails quietly and nobody learns which ports the router's NAT uses.
    /// </summary>
    public bool ArrivesUnknownAtNatPort(Connection conn)
    {
        var tuple = conn.OriginalTuple;
        return options.HasNatPortRange
            && (conn.StatusBits & (ConnStatus.Expected | ConnStatus.DstNat)) == 0
            && tuple.Protocol is IpProtocol.Tcp or IpProtocol.Udp
            && tuple.DestinationPort >= options.NatPortMin && tuple.DestinationPort <= options.NatPortMax
            && options.Interfaces.IsLocal(tuple.Family, tuple.Destination);
    }

    /// <summary>
    /// The original direction as POSTROUTING sees it, where source NAT rules are matched: after destination NAT (the
    /// kernel's nat table matches the packet, whose destination DNAT has already rewritten). The reply tuple's source
    /// is where the packet goes; an ICMP query keeps its type in place of a destination port.
    /// </summary>
    private static ConnTuple AfterDestinationNat(Connection conn)
    {
        var tuple = conn.OriginalTuple;
        if (!conn.HasStatus(ConnStatus.DstNat))
        {
            return tuple;
        }

        tuple.Destination = conn.ReplyTuple.Source;
        if (!tuple.IsIcmp)
        {
            tuple.DestinationPort = conn.ReplyTuple.SourcePort;
        }

        return tuple;
    }

    private bool TryRangeOf(NatRule rule, Connection conn, int inInterface, int outInterface, out NatRange range)
    {
        range = rule.Range;
        if (rule.Manip == ManipType.Source && (range.Flags & NatRangeFlags.ProtoSpecified) != 0 && options.Shards > 1)
        {
            // Shards choose source ports each in a slice of their own: never the same translation twice, and the
            // replies come back to the shard that chose.
            var (min, max) = options.SliceOf(range.MinPort, range.MaxPort);
            range = range with { MinPort = min, MaxPort = max };
        }

        if (rule.Action is NatAction.Snat or NatAction.Dnat)
        {
            return true;
        }

        // MASQUERADE takes the outgoing interface's address towards where the packet goes after DNAT (the reply
        // tuple's source); REDIRECT the incoming one's.
        var tuple = conn.OriginalTuple;
        int ifindex = rule.Action == NatAction.Masquerade ? outInterface : inInterface;
        if (!options.Interfaces.TryGetPrimaryAddress(ifindex, tuple.Family, rule.Action == NatAction.Masquerade ? conn.ReplyTuple.Source : tuple.Source, out var address))
        {
            return false;
        }

        range = range with { Flags = range.Flags | NatRangeFlags.MapIps, MinAddress = address, MaxAddress = address };
        return true;
    }
}
