namespace Offload.Interop;

/// <summary>
/// A netlink or socket call failed, or the kernel refused a request. Carries the errno as a value so callers
/// can tell "someone else holds this queue" (EPERM) from "no such queue" (ENODEV) without reading the message,
/// and the kernel's own explanation when extended acknowledgements supplied one.
/// </summary>
public class NetlinkException : IOException
{
    /// <summary>Creates the error for <paramref name="operation"/> failing with <paramref name="errno"/>.</summary>
    /// <param name="errno">The errno the kernel or libc reported.</param>
    /// <param name="operation">What was attempted, in words a log reader understands ("bind NFQUEUE 7").</param>
    /// <param name="kernelMessage">The extended-ack message from the kernel, if any.</param>
    /// <param name="hint">What usually causes this errno for this operation, if known.</param>
    public NetlinkException(Errno errno, string operation, string? kernelMessage = null, string? hint = null)
        : base(Format(errno, operation, kernelMessage, hint))
    {
        Errno = errno;
        Operation = operation;
        KernelMessage = kernelMessage;
        HResult = (int)errno;
    }

    /// <summary>The errno, as the kernel reported it (positive).</summary>
    public Errno Errno { get; }

    /// <summary>The operation that failed.</summary>
    public string Operation { get; }

    /// <summary>The kernel's extended-ack text (NLMSGERR_ATTR_MSG), when it sent one.</summary>
    public string? KernelMessage { get; }

    private static string Format(Errno errno, string operation, string? kernelMessage, string? hint)
    {
        string text = $"{operation} failed: {ErrnoText.Describe(errno)}";
        if (!string.IsNullOrEmpty(kernelMessage))
        {
            text += $"; kernel says: {kernelMessage}";
        }

        if (!string.IsNullOrEmpty(hint))
        {
            text += ". " + hint;
        }

        return text;
    }
}
