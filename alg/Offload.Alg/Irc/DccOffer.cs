namespace Offload.Alg.Irc;

/// <summary>The DCC offers that announce an endpoint (the ones the kernel's IRC helper knows).</summary>
public enum DccKind : byte
{
    /// <summary>Not an offer the helper reads (or nothing found).</summary>
    None,

    /// <summary><c>DCC SEND file address port [size]</c>: a file transfer.</summary>
    Send,

    /// <summary><c>DCC CHAT chat address port</c>: a direct chat.</summary>
    Chat,

    /// <summary><c>DCC MOVE file address port [size]</c> (a SEND variant).</summary>
    Move,

    /// <summary><c>DCC TSEND file address port [size]</c> (a SEND variant).</summary>
    TSend,

    /// <summary><c>DCC SCHAT chat address port</c> (a CHAT variant).</summary>
    SChat,
}

/// <summary>The outcome of <see cref="IrcParser.Scan"/> on one line.</summary>
public enum IrcScanStatus : byte
{
    /// <summary>The line is not a DCC offer the helper reads.</summary>
    NotFound,

    /// <summary>A complete DCC offer; the offer describes it.</summary>
    Found,

    /// <summary>The line is, or may become, a DCC offer, but the data ends before the line does: nothing was parsed.</summary>
    Partial,

    /// <summary>The line is a DCC offer of a known kind whose address or port is not valid (or the line is overlong).</summary>
    Malformed,
}

/// <summary>What <see cref="IrcParser.Scan"/> found on one line. Offsets are within the scanned data.</summary>
public readonly struct DccOffer
{
    internal DccOffer(DccKind kind, uint address, ushort port, int replaceOffset, int replaceLength, int lineLength)
    {
        Kind = kind;
        Address = address;
        Port = port;
        ReplaceOffset = replaceOffset;
        ReplaceLength = replaceLength;
        LineLength = lineLength;
    }

    /// <summary>The kind of offer (Found and Malformed).</summary>
    public DccKind Kind { get; }

    /// <summary>The announced IPv4 address, as the host-order number the offer carries (Found only).</summary>
    public uint Address { get; }

    /// <summary>The announced port (Found only); may be 0, which the caller must refuse.</summary>
    public ushort Port { get; }

    /// <summary>Where <c>address port</c> starts (Found only): the text a NAT rewrite replaces, as the kernel's.</summary>
    public int ReplaceOffset { get; }

    /// <summary>The length of <c>address port</c>, including the blanks between them (Found only).</summary>
    public int ReplaceLength { get; }

    /// <summary>The length of the whole line including its '\n' (Found, and Malformed when the end was seen); 0 otherwise.</summary>
    public int LineLength { get; }
}
