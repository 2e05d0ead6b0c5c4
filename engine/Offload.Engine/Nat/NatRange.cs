using Offload.Engine.Packets;

namespace Offload.Engine.Nat;

/// <summary>Which half of a tuple a manip changes.</summary>
public enum ManipType : byte
{
    /// <summary>Source NAT: decided and applied after routing (POSTROUTING).</summary>
    Source = 0,

    /// <summary>Destination NAT: decided and applied before routing (PREROUTING).</summary>
    Destination = 1,
}

/// <summary>Flags of a <see cref="NatRange"/>, as the kernel's NF_NAT_RANGE_*.</summary>
[Flags]
public enum NatRangeFlags : byte
{
    None = 0,

    /// <summary>The range names addresses to map to.</summary>
    MapIps = 1,

    /// <summary>The range names ports (or ICMP ids) to map to.</summary>
    ProtoSpecified = 2,

    /// <summary>Pick a random port even when the original one is free (NF_NAT_RANGE_PROTO_RANDOM_ALL).</summary>
    ProtoRandomAll = 4,

    /// <summary>Pick the address from the source address alone, so a client keeps one public address (NF_NAT_RANGE_PERSISTENT).</summary>
    Persistent = 8,
}

/// <summary>The addresses and ports a NAT rule maps to (the kernel's <c>nf_nat_range2</c>).</summary>
public readonly record struct NatRange(
    NatRangeFlags Flags,
    InetAddress MinAddress,
    InetAddress MaxAddress,
    ushort MinPort,
    ushort MaxPort)
{
    /// <summary>A single address, any port.</summary>
    public static NatRange ToAddress(InetAddress address) => new(NatRangeFlags.MapIps, address, address, 0, 0);

    /// <summary>A single address and port.</summary>
    public static NatRange ToAddressAndPort(InetAddress address, ushort port) =>
        new(NatRangeFlags.MapIps | NatRangeFlags.ProtoSpecified, address, address, port, port);

    public bool MapsAddresses => (Flags & NatRangeFlags.MapIps) != 0;

    public bool SpecifiesPorts => (Flags & NatRangeFlags.ProtoSpecified) != 0;
}
