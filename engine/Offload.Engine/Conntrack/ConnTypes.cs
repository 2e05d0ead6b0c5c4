namespace Offload.Engine.Conntrack;

/// <summary>The direction a packet travels in relative to the connection's first packet.</summary>
public enum ConnDirection : byte
{
    /// <summary>The direction of the packet that created the connection.</summary>
    Original = 0,

    /// <summary>The answering direction.</summary>
    Reply = 1,
}

/// <summary>What a packet is to its connection, with the kernel's numbering (<c>enum ip_conntrack_info</c>).</summary>
public enum CtInfo : byte
{
    /// <summary>Part of a connection that has seen packets both ways, travelling in the original direction.</summary>
    Established = 0,

    /// <summary>Related to a connection (an expected connection's first packet, or an ICMP error), original direction.</summary>
    Related = 1,

    /// <summary>Starts a new connection, or belongs to one that has not seen a reply yet.</summary>
    New = 2,

    /// <summary>Part of an established connection, reply direction.</summary>
    EstablishedReply = 3,

    /// <summary>Related, reply direction.</summary>
    RelatedReply = 4,
}

/// <summary>Helpers for <see cref="CtInfo"/>.</summary>
public static class CtInfoExtensions
{
    private const byte IsReplyOffset = 3;

    /// <summary>The direction a ctinfo value implies.</summary>
    public static ConnDirection Direction(this CtInfo info) => info >= CtInfo.EstablishedReply ? ConnDirection.Reply : ConnDirection.Original;

    /// <summary>Adds the reply offset when the direction is the reply.</summary>
    public static CtInfo InDirection(this CtInfo info, ConnDirection direction) =>
        direction == ConnDirection.Reply && info < CtInfo.New ? (CtInfo)((byte)info + IsReplyOffset) : info;

    /// <summary>The opposite direction.</summary>
    public static ConnDirection Opposite(this ConnDirection direction) => direction == ConnDirection.Original ? ConnDirection.Reply : ConnDirection.Original;

    /// <summary>The kernel's text for a ctinfo value (logs and listings).</summary>
    public static string ToKernelName(this CtInfo info) => info switch
    {
        CtInfo.Established => "ESTABLISHED",
        CtInfo.Related => "RELATED",
        CtInfo.New => "NEW",
        CtInfo.EstablishedReply => "ESTABLISHED_REPLY",
        CtInfo.RelatedReply => "RELATED_REPLY",
        _ => "?",
    };
}

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
