namespace Offload.Interop;

/// <summary>A file call (open, read, statx, realpath) failed: the errno as a value, the path, and what was attempted.</summary>
public sealed class PosixFileException : IOException
{
    /// <summary>Creates the error for <paramref name="operation"/> on <paramref name="path"/> failing with <paramref name="errno"/>.</summary>
    public PosixFileException(Errno errno, string operation, string path)
        : base($"{operation} {path} failed: {ErrnoText.Describe(errno)}")
    {
        Errno = errno;
        Path = path;
        HResult = (int)errno;
    }

    /// <summary>The errno libc reported (positive).</summary>
    public Errno Errno { get; }

    /// <summary>The path the call was given.</summary>
    public string Path { get; }
}
