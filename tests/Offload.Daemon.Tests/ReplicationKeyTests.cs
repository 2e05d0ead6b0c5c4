using System.Text;
using Offload.Daemon.Replication;
using Offload.Interop.Posix;
using Offload.Rules;
using Xunit;

namespace Offload.Daemon.Tests;

/// <summary>
/// The replication key lets whoever has it write NAT state into the standby: offloadd refuses to start with a key
/// that is missing, shorter than 32 bytes, or that group or others may read, naming the file and the problem.
/// </summary>
[Collection(AloneCollection.Name)]
public sealed class ReplicationKeyTests : IDisposable
{
    private readonly string _directory = CleanDirectory.Create("repkey-");

    public void Dispose() => CleanDirectory.Delete(_directory);

    private static uint[] Trusted => [0, PosixFiles.EffectiveUserId];

    private string Write(string content, UnixFileMode mode)
    {
        string path = Path.Combine(_directory, "replication.key");
        File.WriteAllText(path, content);
        File.SetUnixFileMode(path, mode);
        return path;
    }

    [Fact]
    public void A_key_of_root_alone_is_read_without_its_trailing_newline()
    {
        string path = Write("k3Jd8sLq0vN2mX7cT5yW1bR9eA4hG6pZ\n", UnixFileMode.UserRead | UnixFileMode.UserWrite);
        Assert.Equal(Encoding.ASCII.GetBytes("k3Jd8sLq0vN2mX7cT5yW1bR9eA4hG6pZ"), ReplicationKey.Read(path, Trusted));
    }

    [Fact]
    public void A_key_others_may_read_is_refused()
    {
        string path = Write("k3Jd8sLq0vN2mX7cT5yW1bR9eA4hG6pZ", UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        var e = Assert.Throws<ConfigException>(() => ReplicationKey.Read(path, Trusted));
        Assert.Contains("mode 0604", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_short_key_is_refused()
    {
        string path = Write("short", UnixFileMode.UserRead);
        var e = Assert.Throws<ConfigException>(() => ReplicationKey.Read(path, Trusted));
        Assert.Contains("fewer than 32", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_key_is_refused()
    {
        var e = Assert.Throws<ConfigException>(() => ReplicationKey.Read(Path.Combine(_directory, "absent.key"), Trusted));
        Assert.Contains("cannot be read", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_key_of_another_owner_is_refused()
    {
        string path = Write("k3Jd8sLq0vN2mX7cT5yW1bR9eA4hG6pZ", UnixFileMode.UserRead);
        var e = Assert.Throws<ConfigException>(() => ReplicationKey.Read(path, [12345]));
        Assert.Contains("owned by uid", e.Message, StringComparison.Ordinal);
    }
}
