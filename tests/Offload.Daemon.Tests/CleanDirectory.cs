namespace Offload.Daemon.Tests;

/// <summary>
/// A scratch directory for plugin files that strict modes accept: under the test's own output directory (whose
/// ancestors belong to root or to the user running the tests, mode 0755 in a checkout), not under /tmp, which is
/// world-writable (1777) and refused, as sshd refuses it.
/// </summary>
internal static class CleanDirectory
{
    private const UnixFileMode Mode0755 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
        | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;

    public static string Create(string prefix)
    {
        string scratch = Path.Combine(AppContext.BaseDirectory, "scratch");
        Directory.CreateDirectory(scratch);
        File.SetUnixFileMode(scratch, Mode0755);
        string directory = Path.Combine(scratch, prefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        File.SetUnixFileMode(directory, Mode0755);
        return directory;
    }

    public static void Delete(string directory)
    {
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
