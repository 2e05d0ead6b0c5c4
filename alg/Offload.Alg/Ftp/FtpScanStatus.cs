namespace Offload.Alg.Ftp;

/// <summary>The outcome of <see cref="FtpParser.Scan"/> on one line.</summary>
public enum FtpScanStatus : byte
{
    /// <summary>The line is not one of the commands or replies looked for in this direction.</summary>
    NotFound,

    /// <summary>The line is complete and its argument parsed; the match describes it.</summary>
    Found,

    /// <summary>
    /// The line is, or could still become, a match, but the data ends before the line does
    /// (no CR or LF yet): nothing was parsed. Wait for more data before deciding.
    /// </summary>
    Partial,

    /// <summary>
    /// The line starts with a command or reply looked for, but its argument is not valid
    /// (a bad character, a number out of range, a missing part). The kernel drops such packets.
    /// </summary>
    Malformed,
}
