using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Netlink;

/// <summary>
/// Builds netlink messages (header, family header, attributes, nests) in a buffer the caller owns, so a run of
/// requests or verdicts is laid out back to back and handed to the kernel in one send, with no allocation.
/// </summary>
/// <remarks>
/// Lengths are patched when a message or nest ends; padding bytes are zeroed because the buffer is reused.
/// Running out of room throws <see cref="InvalidOperationException"/>: callers size their buffers from
/// <see cref="AttributeSpace"/> beforehand, so it means a bug rather than a condition to handle.
/// Header fields are in host order as the kernel expects; attribute helpers named BigEndian write network order.
/// </remarks>
public ref struct NetlinkMessageWriter
{
    private readonly Span<byte> _buffer;
    private int _position;
    private int _messageStart;

    /// <summary>Writes into <paramref name="buffer"/> from its start.</summary>
    public NetlinkMessageWriter(Span<byte> buffer)
    {
        _buffer = buffer;
        _position = 0;
        _messageStart = -1;
    }

    /// <summary>Bytes written so far, all messages included (each ended message is padded to four bytes).</summary>
    public readonly int Length => _position;

    /// <summary>The finished bytes, ready to send.</summary>
    public readonly ReadOnlySpan<byte> WrittenSpan => _buffer[.._position];

    /// <summary>Space one attribute with a value of <paramref name="valueLength"/> bytes takes, padding included.</summary>
    public static int AttributeSpace(int valueLength) => Align(NLA_HDRLEN + valueLength);

    /// <summary>Starts a message; its length is filled in by <see cref="EndMessage"/>.</summary>
    public void BeginMessage(ushort type, ushort flags, uint sequence, uint portId = 0)
    {
        if (_messageStart >= 0)
        {
            ThrowInvalid("a message is already open");
        }

        Span<byte> h = Reserve(KernelLayout.NlMsgHdr.Size);
        HostOrder.Write(h, 0u);
        HostOrder.Write(h[KernelLayout.NlMsgHdr.Type..], type);
        HostOrder.Write(h[KernelLayout.NlMsgHdr.Flags..], flags);
        HostOrder.Write(h[KernelLayout.NlMsgHdr.Sequence..], sequence);
        HostOrder.Write(h[KernelLayout.NlMsgHdr.PortId..], portId);
        _messageStart = _position - KernelLayout.NlMsgHdr.Size;
    }

    /// <summary>Writes the nfnetlink family header that every netfilter message carries right after nlmsghdr.</summary>
    public void WriteNfGenMsg(byte family, byte version, ushort resourceId)
    {
        Span<byte> h = Reserve(KernelLayout.NfGenMsg.Size);
        h[KernelLayout.NfGenMsg.Family] = family;
        h[KernelLayout.NfGenMsg.Version] = version;
        BinaryPrimitives.WriteUInt16BigEndian(h[KernelLayout.NfGenMsg.ResourceId..], resourceId);
    }

    /// <summary>Writes a fixed family header of another netlink family (ifinfomsg, …), padded to four bytes.</summary>
    public void WriteFamilyHeader(scoped ReadOnlySpan<byte> header)
    {
        Span<byte> h = Reserve(Align(header.Length));
        header.CopyTo(h);
        h[header.Length..].Clear();
    }

    /// <summary>
    /// Reserves an attribute of <paramref name="length"/> value bytes and returns them to be filled in place
    /// (a packet payload copied straight into the send buffer, a packed struct); the padding is already zeroed.
    /// </summary>
    public Span<byte> ReserveAttribute(ushort type, int length)
    {
        if ((uint)length > ushort.MaxValue - NLA_HDRLEN)
        {
            ThrowInvalid("attribute value longer than nla_len can express");
        }

        Span<byte> a = Reserve(AttributeSpace(length));
        HostOrder.Write(a[KernelLayout.NlAttr.Length..], (ushort)(NLA_HDRLEN + length));
        HostOrder.Write(a[KernelLayout.NlAttr.Type..], type);
        a[(NLA_HDRLEN + length)..].Clear();
        return a.Slice(NLA_HDRLEN, length);
    }

    /// <summary>Writes an attribute with the given value bytes.</summary>
    public void PutAttribute(ushort type, scoped ReadOnlySpan<byte> value) => value.CopyTo(ReserveAttribute(type, value.Length));

    /// <summary>Writes a one-byte attribute.</summary>
    public void PutU8(ushort type, byte value) => ReserveAttribute(type, 1)[0] = value;

    /// <summary>Writes a 16-bit attribute in network order (netfilter's __be16).</summary>
    public void PutU16BigEndian(ushort type, ushort value) => BinaryPrimitives.WriteUInt16BigEndian(ReserveAttribute(type, 2), value);

    /// <summary>Writes a 32-bit attribute in network order (netfilter's __be32).</summary>
    public void PutU32BigEndian(ushort type, uint value) => BinaryPrimitives.WriteUInt32BigEndian(ReserveAttribute(type, 4), value);

    /// <summary>Writes a 64-bit attribute in network order (netfilter's __be64).</summary>
    public void PutU64BigEndian(ushort type, ulong value) => BinaryPrimitives.WriteUInt64BigEndian(ReserveAttribute(type, 8), value);

    /// <summary>Writes a 32-bit attribute in host order (rtnetlink's u32).</summary>
    public void PutU32(ushort type, uint value) => HostOrder.Write(ReserveAttribute(type, 4), value);

    /// <summary>
    /// Opens a nested attribute (NLA_F_NESTED is set). Pass the returned token to <see cref="EndNested"/> once
    /// the inner attributes are written; nests may nest.
    /// </summary>
    public int BeginNested(ushort type)
    {
        int start = _position;
        Span<byte> a = Reserve(NLA_HDRLEN);
        HostOrder.Write(a[KernelLayout.NlAttr.Length..], (ushort)0);
        HostOrder.Write(a[KernelLayout.NlAttr.Type..], (ushort)(type | NLA_F_NESTED));
        return start;
    }

    /// <summary>Closes the nest opened at <paramref name="token"/>, fixing its length.</summary>
    public void EndNested(int token)
    {
        if (token < 0 || token > _position - NLA_HDRLEN || _messageStart < 0 || token < _messageStart)
        {
            ThrowInvalid("no such nest is open");
        }

        int length = _position - token;
        if (length > ushort.MaxValue)
        {
            ThrowInvalid("nested attribute longer than nla_len can express");
        }

        HostOrder.Write(_buffer[(token + KernelLayout.NlAttr.Length)..], (ushort)length);
    }

    /// <summary>Ends the open message: patches nlmsg_len and returns the message's length.</summary>
    public int EndMessage()
    {
        if (_messageStart < 0)
        {
            ThrowInvalid("no message is open");
        }

        int length = _position - _messageStart;
        HostOrder.Write(_buffer[(_messageStart + KernelLayout.NlMsgHdr.Length)..], (uint)length);
        _messageStart = -1;

        // Everything written is four-byte aligned already; the next message starts right here.
        return length;
    }

    private Span<byte> Reserve(int length)
    {
        if (length > _buffer.Length - _position)
        {
            ThrowInvalid("buffer too small for the netlink message");
        }

        Span<byte> s = _buffer.Slice(_position, length);
        _position += length;
        return s;
    }

    [DoesNotReturn]
    private static void ThrowInvalid(string what) => throw new InvalidOperationException("netlink writer: " + what);
}
