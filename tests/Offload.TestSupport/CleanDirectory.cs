namespace Offload.TestSupport;

/// <summary>
/// A scratch directory for plugin files that strict modes accept, never under /tmp, which is world-writable (1777)
/// and refused, as sshd refuses it: as root under /run (root's, 0755, whatever folder the checkout is in: CI may clone
/// it under /tmp); otherwise under the test's own output directory (whose ancestors belong to root or to the user
/// running the tests in a checkout of their own).
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public static class CleanDirectory
{
    private const UnixFileMode Mode0755 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
        | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;

    public static string Create(string prefix)
    {
        string scratch = Environment.IsPrivilegedProcess && Directory.Exists("/run")
            ? "/run/offload-tests"
            : Path.Combine(AppContext.BaseDirectory, "scratch");
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
