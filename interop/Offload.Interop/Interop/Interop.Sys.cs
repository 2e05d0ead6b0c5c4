using System.Runtime.InteropServices;

namespace Offload.Interop;

/// <summary>
/// Every native call of Offload, in one place. The raw imports are private; callers get checked wrappers that
/// retry EINTR and turn errno into an <see cref="Errno"/> exactly once, so no caller ever reads errno itself.
/// </summary>
internal static partial class Interop
{
    internal static class Libraries
    {
        // The runtime maps "libc" to the platform's C library (libc.so.6 with glibc).
        internal const string Libc = "libc";
    }

    internal static partial class Sys
    {
        // <sys/socket.h>, <linux/socket.h>, <asm/socket.h>, <sched.h>: names as in C, checked against the headers
        // by ConstantsTests.
        internal const int AF_NETLINK = 16;
        internal const int SOCK_RAW = 3;
        internal const int SOCK_CLOEXEC = 0x80000;
        internal const int SOL_SOCKET = 1;
        internal const int SO_SNDBUF = 7;
        internal const int SO_RCVBUF = 8;
        internal const int SO_RCVTIMEO = 20;
        internal const int SO_SNDBUFFORCE = 32;
        internal const int SO_RCVBUFFORCE = 33;
        internal const int SOL_NETLINK = 270;
        internal const int MSG_TRUNC = 0x20;
        internal const int MSG_DONTWAIT = 0x40;
        internal const int MSG_WAITFORONE = 0x10000;
        internal const int CLONE_NEWNET = 0x40000000;
        internal const int SO_PEERCRED = 17;

        // <fcntl.h>, <sys/stat.h>, <limits.h>: what opening and checking a file needs (plugins, StrictModes).
        // O_NOFOLLOW is not here: its value differs by architecture (see OpenFlagNoFollow).
        internal const int O_RDONLY = 0;
        internal const int O_NONBLOCK = 0x800;
        internal const int O_CLOEXEC = 0x80000;
        internal const int AT_FDCWD = -100;
        internal const int AT_SYMLINK_NOFOLLOW = 0x100;
        internal const int AT_EMPTY_PATH = 0x1000;
        internal const uint STATX_TYPE = 0x1;
        internal const uint STATX_MODE = 0x2;
        internal const uint STATX_UID = 0x8;
        internal const uint STATX_INO = 0x100;
        internal const uint STATX_SIZE = 0x200;
        internal const int S_IFMT = 0xF000;
        internal const int S_IFDIR = 0x4000;
        internal const int S_IFREG = 0x8000;
        internal const int S_IFLNK = 0xA000;
        internal const int S_IWGRP = 0x10;
        internal const int S_IWOTH = 0x2;
        internal const int PATH_MAX = 4096;

        /// <summary>
        /// O_NOFOLLOW, whose number is the architecture's: 0400000 on x86-64, 0100000 on arm64 (the two Offload is
        /// built for). ConstantsTests checks it against the headers of the machine the tests run on.
        /// </summary>
        internal static int OpenFlagNoFollow =>
            RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 0x8000 : 0x20000;

        [StructLayout(LayoutKind.Sequential)]
        internal struct SockAddrNl
        {
            internal ushort nl_family;
            internal ushort nl_pad;
            internal uint nl_pid;
            internal uint nl_groups;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct IoVec
        {
            internal nint iov_base;
            internal nuint iov_len;
        }

        // glibc's layout: size_t lengths, int flags; on 64-bit Linux the padding falls where C puts it.
        [StructLayout(LayoutKind.Sequential)]
        internal struct MsgHdr
        {
            internal nint msg_name;
            internal uint msg_namelen;
            internal nint msg_iov;
            internal nuint msg_iovlen;
            internal nint msg_control;
            internal nuint msg_controllen;
            internal int msg_flags;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct MMsgHdr
        {
            internal MsgHdr msg_hdr;
            internal uint msg_len;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct TimeVal
        {
            internal nint tv_sec;
            internal nint tv_usec;
        }

        /// <summary>struct statx (Linux's, the same on every architecture: 256 bytes); the fields permission checks need.</summary>
        [StructLayout(LayoutKind.Sequential, Size = 256)]
        internal struct StatX
        {
            internal uint stx_mask;
            internal uint stx_blksize;
            internal ulong stx_attributes;
            internal uint stx_nlink;
            internal uint stx_uid;
            internal uint stx_gid;
            internal ushort stx_mode;
            internal ushort stx_spare0;
            internal ulong stx_ino;
            internal ulong stx_size;
            internal ulong stx_blocks;
            internal ulong stx_attributes_mask;
            internal StatXTimestamp stx_atime;
            internal StatXTimestamp stx_btime;
            internal StatXTimestamp stx_ctime;
            internal StatXTimestamp stx_mtime;
            internal uint stx_rdev_major;
            internal uint stx_rdev_minor;
            internal uint stx_dev_major;
            internal uint stx_dev_minor;
        }

        [StructLayout(LayoutKind.Sequential)]
        internal struct StatXTimestamp
        {
            internal long tv_sec;
            internal uint tv_nsec;
            internal int reserved;
        }

        /// <summary>struct ucred: what SO_PEERCRED says of the process at the other end of a Unix socket.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct UCred
        {
            internal int pid;
            internal uint uid;
            internal uint gid;
        }

        [LibraryImport(Libraries.Libc, SetLastError = true)]
        private static partial int socket(int domain, int type, int protocol);

        [LibraryImport(Libraries.Libc, SetLastError = true)]
        private static partial int bind(SafeFdHandle fd, in SockAddrNl addr, uint addrlen);

        [LibraryImport(Libraries.Libc, SetLastError = true)]
        private static partial int getsockname(SafeFdHandle fd, out SockAddrNl addr, ref uint addrlen);

        [LibraryImport(Libraries.Libc, EntryPoint = "setsockopt", SetLastError = true)]
        private static partial int setsockopt_int(SafeFdHandle fd, int level, int optname, in int optval, uint optlen);

        [LibraryImport(Libraries.Libc, EntryPoint = "setsockopt", SetLastError = true)]
        private static partial int setsockopt_timeval(SafeFdHandle fd, int level, int optname, in TimeVal optval, uint optlen);

        [LibraryImport(Libraries.Libc, EntryPoint = "getsockopt", SetLastError = true)]
        private static partial int getsockopt_int(SafeFdHandle fd, int level, int optname, out int optval, ref uint optlen);

        [LibraryImport(Libraries.Libc, SetLastError = true)]
        private static partial nint sendto(SafeFdHandle fd, ReadOnlySpan<byte> buf, nuint len, int flags, nint addr, uint addrlen);

        [LibraryImport(Libraries.Libc, SetLastError = true)]
        private static partial nint recvfrom(SafeFdHandle fd, Span<byte> buf, nuint len, int flags, out SockAddrNl addr, ref uint addrlen);

        [LibraryImport(Libraries.Libc, SetLastError = true)]
        private static partial int recvmmsg(SafeFdHandle fd, nint msgvec, uint vlen, int flags, nint timeout);

        [LibraryImport(Libraries.Libc, SetLastError = true)]
        private static partial int close(int fd);

        [LibraryImport(Libraries.Libc, SetLastError = true)]
        private static partial int setns(SafeHandle fd, int nstype);

        [LibraryImport(Libraries.Libc, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        private static partial int open(string path, int flags);

        [LibraryImport(Libraries.Libc, SetLastError = true)]
        private static partial nint read(SafeFdHandle fd, Span<byte> buf, nuint count);

        [LibraryImport(Libraries.Libc, EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        private static partial int statx_path(int dirfd, string path, int flags, uint mask, out StatX buf);

        [LibraryImport(Libraries.Libc, EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        private static partial int statx_fd(SafeFdHandle fd, string path, int flags, uint mask, out StatX buf);

        [LibraryImport(Libraries.Libc, EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        private static partial nint realpath(string path, Span<byte> resolved);

        [LibraryImport(Libraries.Libc)]
        private static partial uint geteuid();

        private static Errno LastErrno() => (Errno)Marshal.GetLastPInvokeError();

        internal static Errno Socket(int domain, int type, int protocol, out SafeFdHandle handle)
        {
            int fd = socket(domain, type, protocol);
            if (fd < 0)
            {
                handle = new SafeFdHandle();
                return LastErrno();
            }

            handle = new SafeFdHandle(fd);
            return 0;
        }

        internal static Errno BindNetlink(SafeFdHandle fd, uint portId, uint groups)
        {
            var addr = new SockAddrNl { nl_family = AF_NETLINK, nl_pid = portId, nl_groups = groups };
            return bind(fd, in addr, (uint)Marshal.SizeOf<SockAddrNl>()) == 0 ? 0 : LastErrno();
        }

        internal static Errno GetNetlinkPortId(SafeFdHandle fd, out uint portId)
        {
            uint len = (uint)Marshal.SizeOf<SockAddrNl>();
            if (getsockname(fd, out SockAddrNl addr, ref len) != 0)
            {
                portId = 0;
                return LastErrno();
            }

            portId = addr.nl_pid;
            return 0;
        }

        internal static Errno SetSocketOption(SafeFdHandle fd, int level, int option, int value) =>
            setsockopt_int(fd, level, option, in value, sizeof(int)) == 0 ? 0 : LastErrno();

        internal static Errno SetSocketOption(SafeFdHandle fd, int level, int option, TimeVal value) =>
            setsockopt_timeval(fd, level, option, in value, (uint)Marshal.SizeOf<TimeVal>()) == 0 ? 0 : LastErrno();

        internal static Errno GetSocketOption(SafeFdHandle fd, int level, int option, out int value)
        {
            uint len = sizeof(int);
            return getsockopt_int(fd, level, option, out value, ref len) == 0 ? 0 : LastErrno();
        }

        /// <summary>Sends one datagram to the kernel (port 0): the socket is never connected elsewhere.</summary>
        internal static Errno SendToKernel(SafeFdHandle fd, ReadOnlySpan<byte> buffer, out int sent)
        {
            while (true)
            {
                nint n = sendto(fd, buffer, (nuint)buffer.Length, 0, 0, 0);
                if (n >= 0)
                {
                    sent = (int)n;
                    return 0;
                }

                Errno e = LastErrno();
                if (e != Errno.EINTR)
                {
                    sent = 0;
                    return e;
                }
            }
        }

        /// <summary>
        /// Receives one datagram. With MSG_TRUNC in <paramref name="flags"/> the result is the datagram's real
        /// length even when the buffer was too small, which is how truncation is detected.
        /// </summary>
        internal static Errno ReceiveFrom(SafeFdHandle fd, Span<byte> buffer, int flags, out int received, out uint senderPortId)
        {
            while (true)
            {
                uint len = (uint)Marshal.SizeOf<SockAddrNl>();
                nint n = recvfrom(fd, buffer, (nuint)buffer.Length, flags, out SockAddrNl addr, ref len);
                if (n >= 0)
                {
                    received = (int)n;
                    senderPortId = addr.nl_pid;
                    return 0;
                }

                Errno e = LastErrno();
                if (e != Errno.EINTR)
                {
                    received = 0;
                    senderPortId = 0;
                    return e;
                }
            }
        }

        /// <summary>
        /// recvmmsg over headers, iovecs and buffers that all live on the pinned object heap, so their addresses
        /// stay valid without unsafe code.
        /// </summary>
        internal static Errno ReceiveMany(SafeFdHandle fd, nint headers, int count, int flags, out int received)
        {
            while (true)
            {
                int n = recvmmsg(fd, headers, (uint)count, flags, 0);
                if (n >= 0)
                {
                    received = n;
                    return 0;
                }

                Errno e = LastErrno();
                if (e != Errno.EINTR)
                {
                    received = 0;
                    return e;
                }
            }
        }

        /// <summary>Opens a file read-only, close-on-exec, with the extra <paramref name="flags"/> (O_NOFOLLOW, O_NONBLOCK).</summary>
        internal static Errno OpenReadOnly(string path, int flags, out SafeFdHandle handle)
        {
            while (true)
            {
                int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
                if (fd >= 0)
                {
                    handle = new SafeFdHandle(fd);
                    return 0;
                }

                Errno e = LastErrno();
                if (e != Errno.EINTR)
                {
                    handle = new SafeFdHandle();
                    return e;
                }
            }
        }

        /// <summary>Reads up to the buffer's length from the file's current position; 0 at its end.</summary>
        internal static Errno Read(SafeFdHandle fd, Span<byte> buffer, out int count)
        {
            while (true)
            {
                nint n = read(fd, buffer, (nuint)buffer.Length);
                if (n >= 0)
                {
                    count = (int)n;
                    return 0;
                }

                Errno e = LastErrno();
                if (e != Errno.EINTR)
                {
                    count = 0;
                    return e;
                }
            }
        }

        private const uint StatXMask = STATX_TYPE | STATX_MODE | STATX_UID | STATX_INO | STATX_SIZE;

        /// <summary>lstat: what a path names, a symbolic link itself rather than its target.</summary>
        internal static Errno LStat(string path, out StatX status) =>
            statx_path(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, StatXMask, out status) == 0 ? 0 : LastErrno();

        /// <summary>fstat: what an open descriptor is.</summary>
        internal static Errno FStat(SafeFdHandle fd, out StatX status) =>
            statx_fd(fd, string.Empty, AT_EMPTY_PATH, StatXMask, out status) == 0 ? 0 : LastErrno();

        /// <summary>realpath: the absolute path with every symbolic link, "." and ".." resolved.</summary>
        internal static Errno RealPath(string path, out string resolved)
        {
            Span<byte> buffer = stackalloc byte[PATH_MAX];
            if (realpath(path, buffer) == 0)
            {
                resolved = string.Empty;
                return LastErrno();
            }

            int end = buffer.IndexOf((byte)0);
            resolved = System.Text.Encoding.UTF8.GetString(buffer[..(end < 0 ? buffer.Length : end)]);
            return 0;
        }

        internal static uint EffectiveUserId() => geteuid();

        // Not retried on EINTR: on Linux the descriptor is gone whatever close returns.
        internal static int Close(int fd) => close(fd);

        /// <summary>Moves the calling thread (only it) into the network namespace that <paramref name="nsFd"/> names.</summary>
        internal static Errno SetNetworkNamespace(SafeHandle nsFd) =>
            setns(nsFd, CLONE_NEWNET) == 0 ? 0 : LastErrno();
    }
}
