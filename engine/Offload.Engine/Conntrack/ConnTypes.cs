namespace Offload.Engine.Conntrack;

/// <summary>Connection status bits, with the kernel's bit numbers (<c>enum ip_conntrack_status</c>) so they read the same in listings and over ctnetlink.</summary>
[Flags]
public enum ConnStatus : uint
{
    None = 0,

    /// <summary>This connection was expected by a helper (it has a master).</summary>
    Expected = 1 << 0,

    /// <summary>A packet has been seen in the reply direction.</summary>
    SeenReply = 1 << 1,

    /// <summary>The connection proved itself (e.g. TCP handshake completed); early drop spares it.</summary>
    Assured = 1 << 2,

    /// <summary>The connection is in the table.</summary>
    Confirmed = 1 << 3,

    /// <summary>The source is translated in the original direction.</summary>
    SrcNat = 1 << 4,

    /// <summary>The destination is translated in the original direction.</summary>
    DstNat = 1 << 5,

    /// <summary>Sequence numbers are adjusted because a helper changed a payload's length.</summary>
    SeqAdjust = 1 << 6,

    /// <summary>Source NAT has been decided (possibly a null binding).</summary>
    SrcNatDone = 1 << 7,

    /// <summary>Destination NAT has been decided (possibly a null binding).</summary>
    DstNatDone = 1 << 8,

    /// <summary>The connection is being removed.</summary>
    Dying = 1 << 9,

    /// <summary>A helper is attached.</summary>
    Helper = 1 << 13,

    NatMask = SrcNat | DstNat,
    NatDoneMask = SrcNatDone | DstNatDone,
}
