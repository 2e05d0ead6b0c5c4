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

        // Not retried on EINTR: on Linux the descriptor is gone whatever close returns.
        internal static int Close(int fd) => close(fd);

        /// <summary>Moves the calling thread (only it) into the network namespace that <paramref name="nsFd"/> names.</summary>
        internal static Errno SetNetworkNamespace(SafeHandle nsFd) =>
            setns(nsFd, CLONE_NEWNET) == 0 ? 0 : LastErrno();
    }
}
