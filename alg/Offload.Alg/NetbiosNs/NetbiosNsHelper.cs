using System.Numerics;

namespace Offload.Alg.NetbiosNs;

/// <summary>
/// The NetBIOS name service helper (the kernel's nf_conntrack_netbios_ns, over nf_conntrack_broadcast): a name query
/// sent to a broadcast address on UDP 137 is answered, unicast, by whichever host holds the name, not by the address
/// asked. The helper expects those answers: from any host of the broadcast's subnet, from port 137, to the querier's
/// port, for 3 seconds, as many as come (permanent), and sends them back to the querier when it is translated.
/// </summary>
/// <remarks>
/// <para>The kernel applies it to the router's own queries only (a local socket, a route flagged broadcast), and reads
/// the subnet's mask from the outgoing interface's address whose broadcast is the destination. Offload sees
/// forwarded flows: a LAN host's query to a directed broadcast address of another steered network, which the router
/// forwards when that network's <c>bc_forwarding</c> is on, masqueraded like any flow. The SDK does not name the
/// interfaces' masks, so the subnet is read from the destination: its trailing one bits are the host part (a /30's
/// broadcast has at least two). That subnet is never narrower than the real one, and at most wider by the network
/// part's own trailing ones. A destination ending in fewer than two one bits is a unicast query, answered by the host
/// asked on the flow itself.</para>
/// <para>The payload is not read, as in the kernel.</para>
/// </remarks>
public sealed class NetbiosNsHelper : ConntrackHelper
{
    /// <summary>The name service's port.</summary>
    public const ushort DefaultPort = 137;

    /// <summary>The kernel's policy: one expectation per query flow, for 3 seconds (its <c>timeout</c> parameter).</summary>
    public static readonly ExpectationPolicy DefaultPolicy = new(1, TimeSpan.FromSeconds(3));

    /// <summary>The smallest host part a broadcast address has (a /30).</summary>
    private const int MinHostBits = 2;

    public NetbiosNsHelper()
        : base("netbios-ns", DefaultPolicy)
    {
        Protocol = IpProtocol.Udp;
        Ports = [DefaultPort];
        Family = 4; // broadcast is IPv4's; so is the kernel's helper
    }

    public override HelperVerdict Help(ref HelperContext context)
    {
        if (context.Protocol != IpProtocol.Udp || context.Family != 4 || context.Direction != ConnDirection.Original)
        {
            return HelperVerdict.Accept;
        }

        ref readonly var own = ref context.Tuple;
        if (!TryBroadcastSubnet(own.Destination.IPv4Value, out uint network, out int prefix))
        {
            return HelperVerdict.Accept;
        }

        ref readonly var other = ref context.OtherTuple;
        var request = context.FromPeer(IpProtocol.Udp, other.DestinationPort);
        request.Source = InetAddress.FromIPv4(network);
        request.SourcePrefixLength = prefix;
        request.SourcePort = own.DestinationPort; // the kernel's: the helper's own port, 137
        request.MatchSourcePort = true;
        request.Flags = ExpectationFlags.Permanent;
        if (other.Destination != own.Source || other.DestinationPort != own.SourcePort)
        {
            // Translated: the answers arrive where the query left from, and go back to the querier's own endpoint.
            request.Nat = ExpectationNat.Redirect;
            request.NatAddress = own.Source;
            request.NatPort = own.SourcePort;
        }

        if (context.Expect(ref request) != ExpectResult.Added)
        {
            // The kernel goes on without its expectation; the query passes, answers from others will not.
            context.Count(HelperEvent.ExpectationFailed);
        }

        // As the kernel's nf_ct_refresh: the query's own flow lives as long as its answers may come.
        context.RefreshTimeout(DefaultPolicy.Timeout);
        return HelperVerdict.Accept;
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
