namespace Offload.Replay.Capture;

/// <summary>
/// A capture file is malformed or truncated. Raised by <see cref="CaptureReader"/> for every defect of
/// the file's content, so that a caller needs to catch this one type only; errors of the underlying
/// stream (<see cref="IOException"/>) pass through unchanged.
/// </summary>
public sealed class CaptureFormatException : Exception
{
    public CaptureFormatException()
        : this("The capture file is malformed.")
    {
    }

    public CaptureFormatException(string message)
        : base(message)
    {
        Offset = -1;
    }

    public CaptureFormatException(string message, Exception innerException)
        : base(message, innerException)
    {
        Offset = -1;
    }

    /// <summary>Creates the exception for a defect found at <paramref name="offset"/>.</summary>
    /// <param name="offset">Byte offset of the defect, counted from where the reader started in the stream.</param>
    /// <param name="problem">What was wrong, in words; the offset is appended to it in <see cref="Exception.Message"/>.</param>
    public CaptureFormatException(long offset, string problem)
        : base($"{problem} (at byte offset {offset})")
    {
        Offset = offset;
        Problem = problem;
    }

    /// <summary>
    /// Byte offset of the defect, counted from the stream's position when the reader was created
    /// (so from the start of the file for a file stream), or -1 when not known.
    /// </summary>
    public long Offset { get; }

    /// <summary>What was wrong, without the offset.</summary>
    public string? Problem { get; }
}
