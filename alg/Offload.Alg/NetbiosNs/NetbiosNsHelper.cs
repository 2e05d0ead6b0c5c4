namespace Offload.Alg.NetbiosNs;

/// <summary>
/// The NetBIOS name service helper (the kernel's nf_conntrack_netbios_ns, over nf_conntrack_broadcast): a name query
/// sent to a broadcast address on UDP 137 is answered, unicast, by whichever host holds the name, not by the address
/// asked. The helper expects those answers: from any host of the broadcast's subnet, from port 137, to the querier's
/// port, for 3 seconds, as many as come (permanent), and sends them back to the querier when it is translated
/// (<see cref="BroadcastQuery"/>).
/// </summary>
/// <remarks>
/// The kernel applies it to the router's own queries only (a local socket, a route flagged broadcast). Offload sees
/// forwarded flows: a LAN host's query to a directed broadcast address of another steered network, which the router
/// forwards when that network's <c>bc_forwarding</c> is on, masqueraded like any flow. The payload is not read, as in
/// the kernel.
/// </remarks>
public sealed class NetbiosNsHelper : ConntrackHelper
{
    /// <summary>The name service's port.</summary>
    public const ushort DefaultPort = 137;

    /// <summary>The kernel's policy: one expectation per query flow, for 3 seconds (its <c>timeout</c> parameter).</summary>
    public static readonly ExpectationPolicy DefaultPolicy = new(1, TimeSpan.FromSeconds(3));

    public NetbiosNsHelper()
        : base("netbios-ns", DefaultPolicy)
    {
        Protocol = IpProtocol.Udp;
        Ports = [DefaultPort];
        Family = 4; // broadcast is IPv4's; so is the kernel's helper
    }

    public override HelperVerdict Help(ref HelperContext context)
    {
        BroadcastQuery.Expect(ref context, DefaultPolicy.Timeout);
        return HelperVerdict.Accept;
    }
}
