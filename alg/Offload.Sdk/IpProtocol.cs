namespace Offload.Sdk;

/// <summary>IP protocol numbers by name (the numbers IANA assigns and the IP header carries).</summary>
public static class IpProtocol
{
    public const byte HopByHop = 0;
    public const byte Icmp = 1;
    public const byte Tcp = 6;
    public const byte Udp = 17;
    public const byte IPv6Routing = 43;
    public const byte IPv6Fragment = 44;
    public const byte Gre = 47;
    public const byte Esp = 50;
    public const byte Ah = 51;
    public const byte IcmpV6 = 58;
    public const byte IPv6NoNext = 59;
    public const byte IPv6DestinationOptions = 60;
    public const byte Mobility = 135;
    public const byte Hip = 139;
    public const byte Shim6 = 140;
    public const byte UdpLite = 136;
    public const byte Sctp = 132;
}
