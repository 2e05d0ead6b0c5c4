using static Offload.Interop.Interop.Sys;

namespace Offload.Interop.Posix;

/// <summary>
/// The file calls a permission check needs and .NET does not offer: a file's owner (lstat, fstat), the real path of a
/// file, an open that refuses a symbolic link, and the process's effective uid.
/// </summary>
public static class PosixFiles
{
    /// <summary>The effective uid of this process (geteuid).</summary>
    public static uint EffectiveUserId => Interop.Sys.EffectiveUserId();

    /// <summary>realpath: the absolute path with every symbolic link, "." and ".." resolved. Throws <see cref="PosixFileException"/>.</summary>
    public static string RealPath(string path)
    {
        Errno e = Interop.Sys.RealPath(path, out string resolved);
        return e == 0 ? resolved : throw new PosixFileException(e, "realpath", path);
    }

    /// <summary>lstat: what a path names (a symbolic link itself, not its target). Throws <see cref="PosixFileException"/>.</summary>
    public static FileStatus LinkStatus(string path)
    {
        Errno e = LStat(path, out StatX status);
        return e == 0 ? FileStatus.From(status) : throw new PosixFileException(e, "lstat", path);
    }

    /// <summary>
    /// Opens a file to read it, refusing a symbolic link as the last component (O_NOFOLLOW: ELOOP) and without waiting
    /// for a writer if it is a FIFO (O_NONBLOCK). Throws <see cref="PosixFileException"/>.
    /// </summary>
    public static OpenedFile OpenNoFollow(string path)
    {
        Errno e = OpenReadOnly(path, OpenFlagNoFollow | O_NONBLOCK, out SafeFdHandle fd);
        if (e != 0)
        {
            fd.Dispose();
            throw new PosixFileException(e, "open", path);
        }

        return new OpenedFile(fd, path);
    }
}

/// <summary>A file opened by <see cref="PosixFiles.OpenNoFollow"/>: its status and its bytes come from the same descriptor.</summary>
public sealed class OpenedFile : IDisposable
{
    private readonly SafeFdHandle _fd;

    internal OpenedFile(SafeFdHandle fd, string path)
    {
        _fd = fd;
        Path = path;
    }

    public string Path { get; }

    /// <summary>fstat of the descriptor: the file that was opened, whatever its path names now.</summary>
    public FileStatus Status()
    {
        Errno e = FStat(_fd, out StatX status);
        return e == 0 ? FileStatus.From(status) : throw new PosixFileException(e, "fstat", Path);
    }

    /// <summary>Reads the file from its current position to its end; more than <paramref name="maxBytes"/> is an error.</summary>
    public byte[] ReadAll(int maxBytes)
    {
        var content = new MemoryStream();
        var buffer = new byte[64 * 1024];
        while (true)
        {
            Errno e = Read(_fd, buffer, out int n);
            if (e != 0)
            {
                throw new PosixFileException(e, "read", Path);
            }

            if (n == 0)
            {
                return content.ToArray();
            }

            if (content.Length + n > maxBytes)
            {
                throw new IOException($"{Path} is larger than {maxBytes} bytes");
            }

            content.Write(buffer, 0, n);
        }
    }

    public void Dispose() => _fd.Dispose();
}
