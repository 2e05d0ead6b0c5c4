namespace Offload.Sdk;

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
