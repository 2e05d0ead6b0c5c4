namespace Offload.Sdk;

/// <summary>IP protocol numbers by name (the numbers IANA assigns and the IP header carries).</summary>
public static class IpProtocol
{
    /// <summary>IPv6 hop-by-hop options header.</summary>
    public const byte HopByHop = 0;
    /// <summary>ICMP (IPv4).</summary>
    public const byte Icmp = 1;
    /// <summary>TCP.</summary>
    public const byte Tcp = 6;
    /// <summary>UDP.</summary>
    public const byte Udp = 17;
    /// <summary>IPv6 routing header.</summary>
    public const byte IPv6Routing = 43;
    /// <summary>IPv6 fragment header.</summary>
    public const byte IPv6Fragment = 44;
    /// <summary>GRE (PPTP's data channel).</summary>
    public const byte Gre = 47;
    /// <summary>IPsec ESP.</summary>
    public const byte Esp = 50;
    /// <summary>IPsec AH.</summary>
    public const byte Ah = 51;
    /// <summary>ICMPv6.</summary>
    public const byte IcmpV6 = 58;
    /// <summary>IPv6: no next header.</summary>
    public const byte IPv6NoNext = 59;
    /// <summary>IPv6 destination options header.</summary>
    public const byte IPv6DestinationOptions = 60;
    /// <summary>Mobile IPv6 mobility header.</summary>
    public const byte Mobility = 135;
    /// <summary>Host Identity Protocol.</summary>
    public const byte Hip = 139;
    /// <summary>Shim6.</summary>
    public const byte Shim6 = 140;
    /// <summary>UDP-Lite.</summary>
    public const byte UdpLite = 136;
    /// <summary>SCTP.</summary>
    public const byte Sctp = 132;

    /// <summary>
    /// The name iptables and the configuration use for a protocol (<c>tcp</c>, <c>udp</c>, <c>icmp</c>, <c>ipv6-icmp</c>,
    /// <c>gre</c>, <c>sctp</c>, <c>udplite</c>), or its number in decimal for the others.
    /// </summary>
    /// <param name="protocol">The protocol number.</param>
    public static string Name(byte protocol) => protocol switch
    {
        Tcp => "tcp",
        Udp => "udp",
        Icmp => "icmp",
        IcmpV6 => "ipv6-icmp",
        Gre => "gre",
        Sctp => "sctp",
        UdpLite => "udplite",
        _ => protocol.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
