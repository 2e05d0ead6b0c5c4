using System.Net.Sockets;
using System.Runtime.InteropServices;
using static Offload.Interop.Interop.Sys;

namespace Offload.Interop.Posix;

/// <summary>Who is at the other end of a connected Unix socket (SO_PEERCRED): the kernel's record, not the peer's claim.</summary>
/// <param name="ProcessId">The peer's pid when it connected.</param>
/// <param name="UserId">Its effective uid when it connected.</param>
/// <param name="GroupId">Its effective gid when it connected.</param>
public readonly record struct PeerCredentials(int ProcessId, uint UserId, uint GroupId)
{
    /// <summary>Reads SO_PEERCRED of a connected (or accepted) Unix stream socket. Throws <see cref="SocketException"/>.</summary>
    public static PeerCredentials Of(Socket socket)
    {
        Span<byte> buffer = stackalloc byte[Marshal.SizeOf<UCred>()];
        int length = socket.GetRawSocketOption(SOL_SOCKET, SO_PEERCRED, buffer);
        if (length < buffer.Length)
        {
            throw new SocketException((int)SocketError.InvalidArgument);
        }

        var ucred = MemoryMarshal.Read<UCred>(buffer);
        return new PeerCredentials(ucred.pid, ucred.uid, ucred.gid);
    }
}
