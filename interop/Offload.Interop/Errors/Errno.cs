namespace Offload.Interop;

/// <summary>
/// The errno values Offload meets on netlink, socket and file calls, with Linux's numbers (x86-64 and arm64 share them),
/// so an error can be compared and switched on without parsing messages.
/// </summary>
/// <remarks>
/// A value the kernel returns that is not named here still round-trips as its number. <see cref="ENOTSUPP"/> is
/// kernel-internal (absent from userspace errno.h) yet reaches userspace from some netfilter paths.
/// </remarks>
public enum Errno
{
    /// <summary>Not an error.</summary>
    None = 0,
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EINTR = 4,
    EIO = 5,
    EBADF = 9,
    EAGAIN = 11,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    ENODEV = 19,
    ENOTDIR = 20,
    EINVAL = 22,
    ENOSPC = 28,
    ERANGE = 34,
    ENAMETOOLONG = 36,
    ELOOP = 40,
    EMSGSIZE = 90,
    ENOPROTOOPT = 92,
    EPROTONOSUPPORT = 93,
    EOPNOTSUPP = 95,
    EAFNOSUPPORT = 97,
    ENOBUFS = 105,
    ETIMEDOUT = 110,
    ECONNREFUSED = 111,
    ENOTSUPP = 524,
}
