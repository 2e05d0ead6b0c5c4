using System.Globalization;
using Offload.Interop;
using Offload.Interop.Posix;

namespace Offload.Plugins;

/// <summary>
/// sshd's StrictModes for plugin files: a plugin is code that runs as the daemon (root), so a plugin file, and every
/// directory from it up to <c>/</c>, must be owned by root or the daemon's own user and writable by no one else (no
/// group or other write bit: a sticky, world-writable directory such as /tmp is refused too, as sshd refuses it).
/// </summary>
/// <remarks>
/// The path is resolved first (realpath: symbolic links followed, as sshd does), then the resolved file is opened
/// once, without following a link (a link swapped in since is refused), its owner and mode taken from the open
/// descriptor (fstat), every directory of the resolved path checked (lstat), and the bytes read from that same
/// descriptor: what is compiled or loaded is what was checked, with no window to swap the file in between. A
/// directory's group write bit is also what an ACL granting write to another user shows (the ACL mask).
/// </remarks>
public sealed class StrictModes
{
    /// <summary>A plugin larger than this is refused: no helper is near it, and the daemon reads it into memory.</summary>
    public const int MaxFileBytes = 64 * 1024 * 1024;

    private long _refusals;

    /// <param name="trustedOwners">The uids a plugin file and its directories may belong to.</param>
    public StrictModes(IEnumerable<uint> trustedOwners)
    {
        TrustedOwners = new HashSet<uint>(trustedOwners);
    }

    /// <summary>The production rule: owned by root, or by the user the process runs as (root for the packaged daemon).</summary>
    public static StrictModes Default { get; } = new([0, PosixFiles.EffectiveUserId]);

    public IReadOnlySet<uint> TrustedOwners { get; }

    /// <summary>How many plugin files were refused (the daemon's <c>offloadctl stats</c> shows it).</summary>
    public long Refusals => Interlocked.Read(ref _refusals);

    /// <summary>
    /// Checks a plugin file and the directories above it, and returns its bytes, read from the descriptor that was
    /// checked. Throws <see cref="PluginRefusedException"/> (counted) when the file or a directory may be changed by
    /// someone other than a trusted owner, and <see cref="PluginException"/> when it cannot be read.
    /// </summary>
    public byte[] Read(string path) => Read(path, count: true);

    /// <summary>Reads as <see cref="Read(string)"/> does, without counting a refusal: to see whether a file changed.</summary>
    internal bool TryRead(string path, out byte[] bytes)
    {
        try
        {
            bytes = Read(path, count: false);
            return true;
        }
        catch (PluginException)
        {
            bytes = [];
            return false;
        }
    }

    private byte[] Read(string path, bool count)
    {
        try
        {
            string resolved = PosixFiles.RealPath(path);
            using var file = PosixFiles.OpenNoFollow(resolved);
            var status = file.Status();
            if (!status.IsRegularFile)
            {
                throw Refuse(path, resolved, "is not a regular file", status, count);
            }

            Check(path, resolved, status, count);
            for (string? directory = Path.GetDirectoryName(resolved); directory is not null; directory = Path.GetDirectoryName(directory))
            {
                var parent = PosixFiles.LinkStatus(directory);
                if (!parent.IsDirectory)
                {
                    throw Refuse(path, directory, "is no longer a directory (it was replaced while the plugin was read)", parent, count);
                }

                Check(path, directory, parent, count);
            }

            return file.ReadAll(MaxFileBytes);
        }
        catch (PosixFileException e) when (e.Errno == Errno.ELOOP)
        {
            throw new PluginException($"{path}: cannot read it: it became a symbolic link while it was read");
        }
        catch (IOException e)
        {
            throw new PluginException($"{path}: cannot read it: {e.Message}");
        }
    }

    private void Check(string path, string what, FileStatus status, bool count)
    {
        if (!TrustedOwners.Contains(status.Owner))
        {
            throw Refuse(path, what, $"is owned by uid {status.Owner}, {TrustedNames()}", status, count);
        }

        if (status.WritableByGroup || status.WritableByOthers)
        {
            string who = status.WritableByGroup && status.WritableByOthers ? "group and others" : status.WritableByGroup ? "group" : "others";
            throw Refuse(path, what, $"is writable by {who}", status, count);
        }
    }

    private string TrustedNames()
    {
        var names = TrustedOwners.Order().Select(u => u == 0 ? "root" : $"uid {u.ToString(CultureInfo.InvariantCulture)}");
        return "not " + string.Join(" or ", names);
    }

    private PluginRefusedException Refuse(string path, string offender, string problem, FileStatus status, bool count)
    {
        if (count)
        {
            Interlocked.Increment(ref _refusals);
        }

        return new PluginRefusedException(path, offender, status.Owner, status.Permissions, problem);
    }
}

/// <summary>A plugin file refused by <see cref="StrictModes"/>: it, or a directory above it, may be changed by someone other than root.</summary>
public sealed class PluginRefusedException : PluginException
{
    public PluginRefusedException(string path, string offender, uint owner, uint permissions, string problem)
        : base(Format(path, offender, owner, permissions, problem))
    {
        Path = path;
        Offender = offender;
        Owner = owner;
        Permissions = permissions;
    }

    /// <summary>The plugin file as it was named.</summary>
    public string Path { get; }

    /// <summary>The file or directory that failed the check (on the resolved path).</summary>
    public string Offender { get; }

    public uint Owner { get; }

    public uint Permissions { get; }

    private static string Format(string path, string offender, uint owner, uint permissions, string problem)
    {
        string what = offender == path ? "the file" : $"{offender}";
        return string.Create(CultureInfo.InvariantCulture,
            $"{path}: refused (strict modes): {what} {problem} (owner uid {owner}, mode {Convert.ToString(permissions, 8).PadLeft(4, '0')}); a plugin runs as the daemon, so the file and every directory above it must be owned by root (or the daemon's user) and writable by no one else");
    }
}
