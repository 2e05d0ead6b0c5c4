using System.Numerics;

namespace Offload.Alg;

/// <summary>
/// The kernel's nf_conntrack_broadcast for forwarded flows: a query sent to a broadcast address is answered, unicast,
/// by the hosts of that subnet rather than by the address asked. <see cref="Expect"/> lets those answers in, from the
/// helper's port of any host of the subnet to the querier's port, as many as come, for the helper's expectation
/// timeout, and sends them back to the querier when it is translated. NetBIOS-NS and SNMP use it.
/// </summary>
/// <remarks>
/// The kernel reads the subnet's mask from the outgoing interface's address whose broadcast is the destination. The
/// SDK does not name the interfaces' masks, so the subnet is read from the destination: its trailing one bits are the
/// host part (a /30's broadcast has at least two). That subnet is never narrower than the real one, and at most wider
/// by the network part's own trailing ones. A destination ending in fewer than two one bits is a unicast query,
/// answered by the host asked on the flow itself: nothing is expected.
/// </remarks>
internal static class BroadcastQuery
{
    /// <summary>The smallest host part a broadcast address has (a /30).</summary>
    private const int MinHostBits = 2;

    /// <summary>
    /// Expects the answers to the packet in <paramref name="context"/> when it is an IPv4 query, in the original
    /// direction, to a broadcast address; refreshes the query's flow to live as long as they may come (the kernel's
    /// nf_ct_refresh). Returns false when nothing was expected (not such a query, or the engine refused).
    /// </summary>
    public static bool Expect(ref HelperContext context, TimeSpan timeout)
    {
        if (context.Protocol != IpProtocol.Udp || context.Family != 4 || context.Direction != ConnDirection.Original)
        {
            return false;
        }

        ref readonly var own = ref context.Tuple;
        if (!TryBroadcastSubnet(own.Destination.IPv4Value, out uint network, out int prefix))
        {
            return false;
        }

        ref readonly var other = ref context.OtherTuple;
        var request = context.FromPeer(IpProtocol.Udp, other.DestinationPort);
        request.Source = InetAddress.FromIPv4(network);
        request.SourcePrefixLength = prefix;
        request.SourcePort = own.DestinationPort; // the kernel's: the helper's own port
        request.MatchSourcePort = true;
        request.Flags = ExpectationFlags.Permanent;
        if (other.Destination != own.Source || other.DestinationPort != own.SourcePort)
        {
            // Translated: the answers arrive where the query left from, and go back to the querier's own endpoint.
            request.Nat = ExpectationNat.Redirect;
            request.NatAddress = own.Source;
            request.NatPort = own.SourcePort;
        }

        // As the kernel's nf_ct_refresh: the query's own flow lives as long as its answers may come.
        context.RefreshTimeout(timeout);
        if (context.Expect(ref request) != ExpectResult.Added)
        {
            // The kernel goes on without its expectation: the query passes, answers from others will not.
            context.Count(HelperEvent.ExpectationFailed);
            return false;
        }

        return true;
    }

    /// <summary>
    /// The subnet of which <paramref name="destination"/> (host order) is the broadcast address, read from its trailing
    /// one bits; false when it has fewer than two.
    /// </summary>
    internal static bool TryBroadcastSubnet(uint destination, out uint network, out int prefix)
    {
        int hostBits = BitOperations.TrailingZeroCount(~destination); // 32 for 255.255.255.255
        if (hostBits < MinHostBits)
        {
            network = 0;
            prefix = 0;
            return false;
        }

        prefix = 32 - hostBits;
        network = hostBits == 32 ? 0 : destination & (uint.MaxValue << hostBits);
        return true;
    }
}
