using System.Runtime.InteropServices;

namespace Offload.Interop;

/// <summary>
/// Owns one file descriptor. The marshaller adds a reference around every native call, so a descriptor is never
/// closed (and its number reused) while a receive on another thread still uses it.
/// </summary>
internal sealed class SafeFdHandle : SafeHandle
{
    public SafeFdHandle()
        : base(-1, ownsHandle: true)
    {
    }

    internal SafeFdHandle(int fd)
        : base(-1, ownsHandle: true)
    {
        SetHandle(fd);
    }

    public override bool IsInvalid => handle < 0;

    protected override bool ReleaseHandle() => Interop.Sys.Close((int)handle) == 0;
}
