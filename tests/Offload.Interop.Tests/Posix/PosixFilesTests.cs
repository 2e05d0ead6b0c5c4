using System.Diagnostics;
using System.Net.Sockets;
using Offload.Interop.Posix;
using Xunit;

namespace Offload.Interop.Tests.Posix;

/// <summary>
/// The file and socket calls a permission check rests on, against the real kernel: O_NOFOLLOW refuses a symbolic link
/// (ELOOP), O_NONBLOCK opens a FIFO without waiting for a writer, statx reports owner and mode as ls does, realpath
/// resolves links, and SO_PEERCRED names the process at the other end of a Unix socket.
/// </summary>
public sealed class PosixFilesTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("offload-posix-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void An_opened_file_reports_its_owner_and_mode_and_reads_whole()
    {
        string path = Path.Combine(_directory, "a.cs");
        File.WriteAllText(path, "hello");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherWrite);

        using var file = PosixFiles.OpenNoFollow(path);
        var status = file.Status();

        Assert.True(status.IsRegularFile);
        Assert.Equal(PosixFiles.EffectiveUserId, status.Owner);
        Assert.Equal(0x1A2u, status.Permissions); // 0642
        Assert.False(status.WritableByGroup);
        Assert.True(status.WritableByOthers);
        Assert.Equal(5, status.Size);
        Assert.Equal("hello"u8.ToArray(), file.ReadAll(1024));
    }

    [Fact]
    public void A_file_larger_than_the_limit_is_not_read()
    {
        string path = Path.Combine(_directory, "big");
        File.WriteAllBytes(path, new byte[4096]);

        using var file = PosixFiles.OpenNoFollow(path);

        Assert.Throws<IOException>(() => file.ReadAll(4095));
    }

    [Fact]
    public void A_symbolic_link_is_not_opened_but_lstat_and_realpath_see_it()
    {
        string target = Path.Combine(_directory, "target");
        string link = Path.Combine(_directory, "link");
        File.WriteAllText(target, "x");
        File.CreateSymbolicLink(link, target);

        var error = Assert.Throws<PosixFileException>(() => PosixFiles.OpenNoFollow(link));

        Assert.Equal(Errno.ELOOP, error.Errno);
        Assert.True(PosixFiles.LinkStatus(link).IsSymbolicLink);
        Assert.True(PosixFiles.LinkStatus(_directory).IsDirectory);
        Assert.Equal(PosixFiles.RealPath(target), PosixFiles.RealPath(link));
        Assert.Equal(Errno.ENOENT, Assert.Throws<PosixFileException>(() => PosixFiles.RealPath(Path.Combine(_directory, "none"))).Errno);
    }

    [Fact]
    public void A_fifo_opens_without_waiting_for_a_writer_and_is_not_a_regular_file()
    {
        string fifo = Path.Combine(_directory, "fifo.cs");
        using (var mkfifo = Process.Start("mkfifo", [fifo]))
        {
            mkfifo.WaitForExit();
            Assert.Equal(0, mkfifo.ExitCode);
        }

        var started = Stopwatch.StartNew();
        using var file = PosixFiles.OpenNoFollow(fifo);

        Assert.False(file.Status().IsRegularFile);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void SO_PEERCRED_names_the_process_at_the_other_end()
    {
        string path = Path.Combine(_directory, "sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
        using var accepted = listener.Accept();

        var peer = PeerCredentials.Of(accepted);

        Assert.Equal(Environment.ProcessId, peer.ProcessId);
        Assert.Equal(PosixFiles.EffectiveUserId, peer.UserId);
    }
}
