using Offload.Interop.Netlink;
using static Offload.Interop.Ctnetlink.CtnlConstants;
using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Ctnetlink;

/// <summary>
/// The kernel's conntrack destroy events (group NFNLGRP_CONNTRACK_DESTROY), on a socket of their own: every entry that
/// leaves the kernel's table, whoever made it. The reader allocates nothing per event, since on a router all of the
/// kernel's own flows end here too.
/// </summary>
/// <remarks>
/// Events are dropped by the kernel when the socket's buffer is full: <see cref="Receive"/> then reports
/// <see cref="Overrun"/>, and whoever waits for particular entries must look them up (<see cref="CtnlClient.Get"/>).
/// </remarks>
public sealed class CtnlDestroyEvents : IDisposable
{
    /// <summary>What <see cref="Receive"/> returns when events were lost (ENOBUFS).</summary>
    public const int Overrun = -1;

    private readonly NetlinkSocket _socket;
    private readonly byte[] _buffer = GC.AllocateUninitializedArray<byte>(64 * 1024, pinned: true);

    private CtnlDestroyEvents(NetlinkSocket socket) => _socket = socket;

    /// <summary>Datagrams that were not destroy events of the conntrack table, or were malformed.</summary>
    public long Ignored { get; private set; }

    /// <summary>Times the kernel reported lost events.</summary>
    public long Overruns { get; private set; }

    /// <summary>How long <see cref="Receive"/> waits for an event.</summary>
    public TimeSpan ReceiveTimeout
    {
        get => _socket.ReceiveTimeout;
        set => _socket.ReceiveTimeout = value;
    }

    /// <summary>Opens a socket in the destroy group, with a receive buffer of <paramref name="receiveBufferBytes"/>.</summary>
    /// <exception cref="NetlinkException">The socket could not be opened or joined to the group.</exception>
    public static CtnlDestroyEvents Open(int receiveBufferBytes = 4 << 20)
    {
        NetlinkSocket socket = NetlinkSocket.Open(NETLINK_NETFILTER);
        try
        {
            socket.SetReceiveBufferSize(receiveBufferBytes);
            socket.JoinGroup(NFNLGRP_CONNTRACK_DESTROY);
            return new CtnlDestroyEvents(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Waits for one datagram of events and writes the original tuples of the destroyed entries it holds into
    /// <paramref name="destroyed"/> (those past its length are dropped and counted as ignored).
    /// </summary>
    /// <returns>How many were written; 0 when the wait timed out or nothing of use came; <see cref="Overrun"/> when events were lost.</returns>
    public int Receive(Span<CtnlTuple> destroyed)
    {
        int n = _socket.Receive(_buffer);
        if (n == NetlinkSocket.NoBuffers)
        {
            Overruns++;
            return Overrun;
        }

        if (n <= 0)
        {
            return 0;
        }

        int count = Parse(_buffer.AsSpan(0, Math.Min(n, _buffer.Length)), destroyed, out int ignored);
        Ignored += ignored;
        return count;
    }

    /// <summary>Reads the destroy events of a datagram (tests feed recorded ones).</summary>
    internal static int Parse(ReadOnlySpan<byte> datagram, Span<CtnlTuple> destroyed, out int ignored)
    {
        ignored = 0;
        int count = 0;
        var reader = new NetlinkMessageReader(datagram);
        while (reader.TryRead(out NetlinkMessage m))
        {
            if (m.Type != CtnlMessages.MessageType(IPCTNL_MSG_CT_DELETE) || !CtnlMessages.TryReadEntry(m, out CtnlTuple original, out _, out _))
            {
                ignored++;
                continue;
            }

            if (count < destroyed.Length)
            {
                destroyed[count++] = original;
            }
            else
            {
                ignored++;
            }
        }

        if (reader.IsMalformed)
        {
            ignored++;
        }

        return count;
    }

    /// <summary>Leaves the group and closes the socket.</summary>
    public void Dispose() => _socket.Dispose();
}
