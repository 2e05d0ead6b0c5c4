using System.Runtime.InteropServices;
using static Offload.Interop.Interop.Sys;

namespace Offload.Interop.Netlink;

/// <summary>
/// Fixed receive slots for recvmmsg: one contiguous buffer cut into equal slots, and the mmsghdr, iovec and
/// sockaddr_nl arrays that point at them. Everything lives on the pinned object heap and is allocated once, so a
/// receive allocates nothing and needs no unsafe code to hand the kernel addresses.
/// </summary>
internal sealed class ReceiveSlots
{
    private readonly MMsgHdr[] _headers;
    private readonly IoVec[] _iovecs;
    private readonly SockAddrNl[] _senders;
    private readonly nint _sendersAddress;
    private readonly int _senderSize = Marshal.SizeOf<SockAddrNl>();

    internal ReceiveSlots(int count, int slotSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(slotSize, 64);
        Count = count;
        SlotSize = NetlinkConstants.Align(slotSize);
        Buffer = GC.AllocateUninitializedArray<byte>(checked(Count * SlotSize), pinned: true);
        _headers = GC.AllocateArray<MMsgHdr>(count, pinned: true);
        _iovecs = GC.AllocateArray<IoVec>(count, pinned: true);
        _senders = GC.AllocateArray<SockAddrNl>(count, pinned: true);
        HeadersAddress = Marshal.UnsafeAddrOfPinnedArrayElement(_headers, 0);
        _sendersAddress = Marshal.UnsafeAddrOfPinnedArrayElement(_senders, 0);
        nint bufferAddress = Marshal.UnsafeAddrOfPinnedArrayElement(Buffer, 0);
        nint iovecsAddress = Marshal.UnsafeAddrOfPinnedArrayElement(_iovecs, 0);
        int iovecSize = Marshal.SizeOf<IoVec>();
        for (int i = 0; i < count; i++)
        {
            _iovecs[i].iov_base = bufferAddress + (i * SlotSize);
            _iovecs[i].iov_len = (nuint)SlotSize;
            _headers[i].msg_hdr.msg_iov = iovecsAddress + (i * iovecSize);
            _headers[i].msg_hdr.msg_iovlen = 1;
            _headers[i].msg_hdr.msg_name = _sendersAddress + (i * _senderSize);
        }
    }

    internal int Count { get; }

    internal int SlotSize { get; }

    /// <summary>The pinned buffer all slots share; packets expose slices of it.</summary>
    internal byte[] Buffer { get; }

    internal nint HeadersAddress { get; }

    /// <summary>Resets the in/out fields the kernel overwrites on each receive.</summary>
    internal void Prepare(int count)
    {
        for (int i = 0; i < count; i++)
        {
            ref MMsgHdr h = ref _headers[i];
            h.msg_hdr.msg_namelen = (uint)_senderSize;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
            _senders[i] = default;
        }
    }

    /// <summary>Offset of slot <paramref name="index"/> in <see cref="Buffer"/>.</summary>
    internal int Offset(int index) => index * SlotSize;

    /// <summary>The datagram's real length (may exceed <see cref="SlotSize"/> when truncated).</summary>
    internal int ReceivedLength(int index) => (int)_headers[index].msg_len;

    /// <summary>True when the datagram did not fit the slot.</summary>
    internal bool IsTruncated(int index) =>
        (_headers[index].msg_hdr.msg_flags & MSG_TRUNC) != 0 || _headers[index].msg_len > (uint)SlotSize;

    /// <summary>The sender's port; the kernel is 0.</summary>
    internal uint SenderPortId(int index) => _senders[index].nl_pid;

    /// <summary>The stored bytes of slot <paramref name="index"/> (at most <see cref="SlotSize"/>).</summary>
    internal Span<byte> Stored(int index) => Buffer.AsSpan(Offset(index), Math.Min(ReceivedLength(index), SlotSize));

    /// <summary>The whole of slot <paramref name="index"/>, for receiving into it with a plain recvfrom.</summary>
    internal Span<byte> Whole(int index) => Buffer.AsSpan(Offset(index), SlotSize);

    /// <summary>Records a datagram that was received into slot <paramref name="index"/> by other means.</summary>
    internal void SetReceived(int index, int length, bool truncated, uint senderPortId = 0)
    {
        _headers[index].msg_len = (uint)length;
        _headers[index].msg_hdr.msg_flags = truncated ? MSG_TRUNC : 0;
        _senders[index] = new SockAddrNl { nl_family = AF_NETLINK, nl_pid = senderPortId };
    }
}
