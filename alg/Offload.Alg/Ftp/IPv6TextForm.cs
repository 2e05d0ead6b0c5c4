namespace Offload.Alg.Ftp;

/// <summary>How an IPv6 address is written into an EPRT replacement.</summary>
public enum IPv6TextForm : byte
{
    /// <summary>
    /// RFC 5952 canonical text: lowercase, no leading zeros, the longest run of two or more zero
    /// groups (the first one on a tie) written as <c>::</c>, and an IPv4-mapped or ISATAP address
    /// ending in dotted decimal, as the kernel's <c>%pI6c</c> prints.
    /// </summary>
    Compressed,

    /// <summary>
    /// Eight groups of four lowercase hex digits (<c>2001:0db8:0000:…</c>), as the kernel's
    /// <c>%pI6</c> prints: this is what nf_nat_ftp itself writes into EPRT.
    /// </summary>
    Full,
}
