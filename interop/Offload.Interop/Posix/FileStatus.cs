using static Offload.Interop.Interop.Sys;

namespace Offload.Interop.Posix;

/// <summary>What statx says of a file, as far as checking who may change it goes: its type, owner and mode.</summary>
/// <param name="Owner">The owner's uid.</param>
/// <param name="Mode">st_mode: the type bits and the permission bits (with set-id and sticky).</param>
/// <param name="Inode">The inode number.</param>
/// <param name="Size">The size in bytes.</param>
public readonly record struct FileStatus(uint Owner, uint Mode, ulong Inode, long Size)
{
    public bool IsRegularFile => (Mode & S_IFMT) == S_IFREG;

    public bool IsDirectory => (Mode & S_IFMT) == S_IFDIR;

    public bool IsSymbolicLink => (Mode & S_IFMT) == S_IFLNK;

    /// <summary>The permission bits with set-id and sticky (07777), as chmod takes them.</summary>
    public uint Permissions => Mode & 0xFFF;

    public bool WritableByGroup => (Mode & S_IWGRP) != 0;

    public bool WritableByOthers => (Mode & S_IWOTH) != 0;

    internal static FileStatus From(in StatX s) => new(s.stx_uid, s.stx_mode, s.stx_ino, (long)s.stx_size);
}
