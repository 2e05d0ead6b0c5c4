using System.Diagnostics.CodeAnalysis;
using static Offload.Interop.Interop.Sys;
using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Netlink;

/// <summary>
/// An AF_NETLINK socket bound to a kernel-assigned port. It exists so that every netlink user of Offload (NFQUEUE
/// now, ctnetlink and ipset next) shares one careful implementation of the awkward parts: EINTR retried, ENOBUFS
/// (the kernel dropped messages for us) reported as a counted value rather than an exception, truncation and
/// messages from anyone but the kernel detected, and a receive timeout so a worker can notice it should stop.
/// </summary>
/// <remarks>
/// Receives and sends may run on different threads; the descriptor is reference-counted around each call, so
/// <see cref="Dispose"/> never closes it under a call in flight.
/// </remarks>
public sealed class NetlinkSocket : IDisposable, INetlinkTransport
{
    /// <summary><see cref="Receive"/> result: nothing arrived within <see cref="ReceiveTimeout"/>.</summary>
    public const int TimedOut = 0;

    /// <summary><see cref="Receive"/> result: the socket's buffer overflowed and the kernel dropped messages for us.</summary>
    public const int NoBuffers = -(int)Errno.ENOBUFS;

    private readonly SafeFdHandle _fd;
    private TimeSpan _receiveTimeout = Timeout.InfiniteTimeSpan;
    private uint _sequence;
    private long _noBufferEvents;
    private long _foreignDatagrams;

    private NetlinkSocket(SafeFdHandle fd, int protocol, uint portId)
    {
        _fd = fd;
        Protocol = protocol;
        PortId = portId;
    }

    /// <summary>The netlink protocol (NETLINK_NETFILTER is 12).</summary>
    public int Protocol { get; }

    /// <summary>The port the kernel assigned at bind (nl_pid); the kernel addresses its messages to it.</summary>
    public uint PortId { get; }

    /// <summary>How many times the kernel reported ENOBUFS: each time, one or more messages to us were lost.</summary>
    public long NoBufferEvents => Interlocked.Read(ref _noBufferEvents);

    /// <summary>Datagrams skipped because they came from a port other than the kernel's.</summary>
    public long ForeignDatagrams => Interlocked.Read(ref _foreignDatagrams);

    internal SafeFdHandle Handle => _fd;

    /// <summary>
    /// Opens a socket of <paramref name="protocol"/> and binds it with nl_pid 0 (the kernel picks a unique port)
    /// and the multicast <paramref name="groups"/> bit mask.
    /// </summary>
    /// <exception cref="NetlinkException">socket or bind failed (EPROTONOSUPPORT when the kernel lacks the protocol).</exception>
    public static NetlinkSocket Open(int protocol, uint groups = 0)
    {
        Errno e = Socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol, out SafeFdHandle fd);
        if (e != 0)
        {
            fd.Dispose();
            ThrowFor(e, $"open netlink socket (protocol {protocol})");
        }

        try
        {
            e = BindNetlink(fd, 0, groups);
            if (e != 0)
            {
                ThrowFor(e, "bind netlink socket");
            }

            e = GetNetlinkPortId(fd, out uint portId);
            if (e != 0)
            {
                ThrowFor(e, "read netlink port id");
            }

            return new NetlinkSocket(fd, protocol, portId);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>The next request sequence number (never 0, which unsolicited kernel messages carry).</summary>
    public uint NextSequence()
    {
        uint s = Interlocked.Increment(ref _sequence);
        return s != 0 ? s : Interlocked.Increment(ref _sequence);
    }

    /// <summary>
    /// Sets the receive buffer. With <paramref name="force"/>, SO_RCVBUFFORCE is tried first (it ignores
    /// net.core.rmem_max but needs CAP_NET_ADMIN); on EPERM it falls back to SO_RCVBUF, which the kernel caps.
    /// Returns the size the kernel actually granted (it doubles the request for its bookkeeping).
    /// </summary>
    public int SetReceiveBufferSize(int bytes, bool force = true) => SetBufferSize(SO_RCVBUF, SO_RCVBUFFORCE, bytes, force, "receive");

    /// <summary>Sets the send buffer like <see cref="SetReceiveBufferSize"/>; a single send must stay below it.</summary>
    public int SetSendBufferSize(int bytes, bool force = true) => SetBufferSize(SO_SNDBUF, SO_SNDBUFFORCE, bytes, force, "send");

    /// <summary>The receive buffer as the kernel accounts it (SO_RCVBUF).</summary>
    public int ReceiveBufferSize => GetIntOption(SOL_SOCKET, SO_RCVBUF, "read SO_RCVBUF");

    /// <summary>The send buffer as the kernel accounts it (SO_SNDBUF); one send may not exceed it less 32 bytes.</summary>
    public int SendBufferSize => GetIntOption(SOL_SOCKET, SO_SNDBUF, "read SO_SNDBUF");

    /// <summary>
    /// NETLINK_NO_ENOBUFS. Off by default, and off is what a queue consumer wants: ENOBUFS is then how it learns
    /// that packets were lost (and so were failed open or dropped by the kernel).
    /// </summary>
    public void SetNoEnobufs(bool on) => SetFlag(NETLINK_NO_ENOBUFS, on, "NETLINK_NO_ENOBUFS");

    /// <summary>NETLINK_EXT_ACK: errors carry the kernel's text and the offset of the offending attribute.</summary>
    public void SetExtendedAck(bool on) => SetFlag(NETLINK_EXT_ACK, on, "NETLINK_EXT_ACK");

    /// <summary>
    /// NETLINK_CAP_ACK: errors echo only the request's header, not the whole request. Important for verdicts that
    /// carry a 64 KiB payload: without it each failed verdict comes back in full.
    /// </summary>
    public void SetCapAck(bool on) => SetFlag(NETLINK_CAP_ACK, on, "NETLINK_CAP_ACK");

    /// <summary>Joins a multicast group by number (groups above 32 need this rather than the bind mask).</summary>
    public void JoinGroup(int group) => Check(SetSocketOption(_fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group), "join netlink group");

    /// <summary>
    /// How long a receive waits (SO_RCVTIMEO). <see cref="Timeout.InfiniteTimeSpan"/> waits forever; a finite
    /// value lets a worker loop look at its stop flag between waits.
    /// </summary>
    public TimeSpan ReceiveTimeout
    {
        get => _receiveTimeout;
        set
        {
            TimeVal tv = default;
            if (value != Timeout.InfiniteTimeSpan)
            {
                ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
                long micros = Math.Max(1, (long)value.TotalMicroseconds);
                tv.tv_sec = (nint)(micros / 1_000_000);
                tv.tv_usec = (nint)(micros % 1_000_000);
            }

            Check(SetSocketOption(_fd, SOL_SOCKET, SO_RCVTIMEO, tv), "set SO_RCVTIMEO");
            _receiveTimeout = value;
        }
    }

    /// <summary>
    /// Receives one datagram into <paramref name="buffer"/>, waiting up to <see cref="ReceiveTimeout"/>.
    /// </summary>
    /// <returns>
    /// The datagram's length; greater than <paramref name="buffer"/>'s length when it did not fit (only the
    /// first bytes were stored). <see cref="TimedOut"/> (0) when nothing arrived in time. <see cref="NoBuffers"/>
    /// when the kernel lost messages for us (counted in <see cref="NoBufferEvents"/>; receive again).
    /// </returns>
    /// <exception cref="NetlinkException">Any other failure (a closed socket, EFAULT): not a condition to loop on.</exception>
    public int Receive(Span<byte> buffer)
    {
        while (true)
        {
            Errno e = ReceiveFrom(_fd, buffer, MSG_TRUNC, out int n, out uint sender);
            if (e == 0)
            {
                if (sender != 0)
                {
                    // Another process may address our port; only the kernel speaks this protocol to us.
                    Interlocked.Increment(ref _foreignDatagrams);
                    continue;
                }

                return n;
            }

            if (e == Errno.EAGAIN)
            {
                return TimedOut;
            }

            if (e == Errno.ENOBUFS)
            {
                Interlocked.Increment(ref _noBufferEvents);
                return NoBuffers;
            }

            ThrowFor(e, "receive from netlink socket");
        }
    }

    /// <summary>
    /// Sends several complete messages, laid out back to back in <paramref name="messages"/>, in one system call.
    /// The kernel handles them in order before this returns; errors come back later as NLMSG_ERROR messages.
    /// </summary>
    /// <exception cref="NetlinkException">The send failed (EMSGSIZE when larger than the send buffer allows).</exception>
    public void SendBatch(ReadOnlySpan<byte> messages)
    {
        Errno e = SendToKernel(_fd, messages, out int sent);
        if (e != 0)
        {
            ThrowFor(e, $"send {messages.Length} bytes to netlink socket");
        }

        if (sent != messages.Length)
        {
            ThrowFor(Errno.EIO, $"send to netlink socket (short send {sent} of {messages.Length})");
        }
    }

    /// <summary>
    /// Receives up to <paramref name="count"/> datagrams with one recvmmsg, waiting up to
    /// <see cref="ReceiveTimeout"/> for the first only. NFQUEUE sends each packet as its own datagram, so this is
    /// what makes a batch out of a burst.
    /// </summary>
    /// <returns>Datagrams received, <see cref="TimedOut"/>, or <see cref="NoBuffers"/> (counted).</returns>
    internal int ReceiveMany(ReceiveSlots slots, int count)
    {
        ArgumentNullException.ThrowIfNull(slots);
        count = Math.Min(count, slots.Count);
        slots.Prepare(count);
        Errno e = Interop.Sys.ReceiveMany(_fd, slots.HeadersAddress, count, MSG_WAITFORONE | MSG_TRUNC, out int n);
        if (e == 0)
        {
            return n;
        }

        if (e == Errno.EAGAIN)
        {
            return TimedOut;
        }

        if (e == Errno.ENOBUFS)
        {
            Interlocked.Increment(ref _noBufferEvents);
            return NoBuffers;
        }

        ThrowFor(e, "receive from netlink socket");
        return 0;
    }

    int INetlinkTransport.ReceiveMany(ReceiveSlots slots, int count) => ReceiveMany(slots, count);

    /// <summary>Closes the socket; the kernel then forgets everything bound to its port (queues included).</summary>
    public void Dispose() => _fd.Dispose();

    private int SetBufferSize(int option, int forceOption, int bytes, bool force, string what)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);

        // The FORCE variants take the full value; only without CAP_NET_ADMIN do we settle for the capped one.
        Errno e = force ? SetSocketOption(_fd, SOL_SOCKET, forceOption, bytes) : Errno.EPERM;
        if (e == Errno.EPERM)
        {
            e = SetSocketOption(_fd, SOL_SOCKET, option, bytes);
        }

        Check(e, $"set {what} buffer to {bytes} bytes");
        return GetIntOption(SOL_SOCKET, option, $"read {what} buffer size");
    }

    private void SetFlag(int option, bool on, string name) =>
        Check(SetSocketOption(_fd, SOL_NETLINK, option, on ? 1 : 0), "set " + name);

    private int GetIntOption(int level, int option, string what)
    {
        Check(GetSocketOption(_fd, level, option, out int value), what);
        return value;
    }

    private static void Check(Errno e, string operation)
    {
        if (e != 0)
        {
            ThrowFor(e, operation);
        }
    }

    [DoesNotReturn]
    private static void ThrowFor(Errno e, string operation) => throw new NetlinkException(e, operation);
}
