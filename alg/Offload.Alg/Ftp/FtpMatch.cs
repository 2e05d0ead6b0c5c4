namespace Offload.Alg.Ftp;

/// <summary>What <see cref="FtpParser.Scan"/> found on one line. All offsets are within the scanned data.</summary>
public readonly struct FtpMatch
{
    internal FtpMatch(FtpCommandKind kind, FtpAddressPort value, int replaceOffset, int replaceLength, int lineLength)
    {
        Kind = kind;
        Value = value;
        ReplaceOffset = replaceOffset;
        ReplaceLength = replaceLength;
        LineLength = lineLength;
    }

    /// <summary>Which command or reply the line starts with. Set for Found, Partial and Malformed.</summary>
    public FtpCommandKind Kind { get; }

    /// <summary>
    /// The announced endpoint (Found only). For PORT and 227 the family is 4; for EPRT it is 4 or 6
    /// as the line says, and the caller must check it against the control connection's family, as the
    /// kernel does; for 229 it is 0 (port only).
    /// </summary>
    public FtpAddressPort Value { get; }

    /// <summary>
    /// Where the text a NAT rewrite replaces starts (Found only): the first number of
    /// <c>h1,h2,h3,h4,p1,p2</c> for PORT and 227, the first delimiter of <c>|1|addr|port|</c> for EPRT,
    /// and of <c>|||port|</c> for 229. The same span the kernel's FTP NAT helper replaces.
    /// </summary>
    public int ReplaceOffset { get; }

    /// <summary>The length of that text (Found only); for EPRT and 229 it includes the closing delimiter.</summary>
    public int ReplaceLength { get; }

    /// <summary>
    /// The length of the whole line including its terminator as present in the data
    /// (CR LF, a lone LF, or a lone CR). Set for Found and for a Malformed line whose end was seen; 0 otherwise.
    /// </summary>
    public int LineLength { get; }
}
