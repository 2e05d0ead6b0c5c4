namespace Offload.Engine.Conntrack.L4;

/// <summary>One engine's protocol trackers, found by IP protocol number (the kernel's nf_ct_l4proto_find).</summary>
internal sealed class L4Protos(EngineOptions options, EngineCounters counters)
{
    private readonly L4ProtoTcp _tcp = new(options.Tcp, counters);
    private readonly L4ProtoUdp _udp = new(options);
    private readonly L4ProtoIcmp _icmp = new(options);
    private readonly L4ProtoGre _gre = new(options, counters);
    private readonly L4ProtoGeneric _generic = new(options);

    public L4Proto For(byte protocol) => protocol switch
    {
        IpProtocol.Tcp => _tcp,
        IpProtocol.Udp or IpProtocol.UdpLite => _udp,
        IpProtocol.Icmp or IpProtocol.IcmpV6 => _icmp,
        IpProtocol.Gre => _gre,
        _ => _generic,
    };
}
