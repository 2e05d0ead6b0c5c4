using System.Buffers.Binary;
using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Netlink;

/// <summary>
/// Walks netlink attributes (TLVs). nla_len is checked against what is left before each step, so a short or
/// oversized length stops the walk and sets <see cref="IsMalformed"/>; nothing past the span is ever read.
/// Never throws.
/// </summary>
public ref struct AttributeReader
{
    private readonly ReadOnlySpan<byte> _attributes;
    private int _position;

    /// <summary>Reads the attributes in <paramref name="attributes"/> from its start.</summary>
    public AttributeReader(ReadOnlySpan<byte> attributes)
    {
        _attributes = attributes;
        _position = 0;
        IsMalformed = false;
    }

    internal static AttributeReader Malformed
    {
        get
        {
            var r = new AttributeReader(default);
            r.IsMalformed = true;
            return r;
        }
    }

    /// <summary>True when an attribute header was invalid; the rest was abandoned.</summary>
    public bool IsMalformed { readonly get; private set; }

    /// <summary>Reads the next attribute; false at the end or on a malformed header.</summary>
    public bool TryRead(out NetlinkAttribute attribute)
    {
        attribute = default;
        if (IsMalformed)
        {
            return false;
        }

        int remaining = _attributes.Length - _position;
        if (remaining == 0)
        {
            return false;
        }

        if (remaining < NLA_HDRLEN)
        {
            IsMalformed = true;
            return false;
        }

        ReadOnlySpan<byte> rest = _attributes[_position..];
        ushort length = HostOrder.ReadU16(rest[KernelLayout.NlAttr.Length..]);
        if (length < NLA_HDRLEN || length > remaining)
        {
            IsMalformed = true;
            return false;
        }

        ushort type = HostOrder.ReadU16(rest[KernelLayout.NlAttr.Type..]);
        attribute = new NetlinkAttribute(type, rest[NLA_HDRLEN..length]);

        // A last attribute may lack its padding (the kernel's NFQA_PAYLOAD ends the message unpadded): clamp.
        _position += Math.Min(Align(length), remaining);
        return true;
    }
}

/// <summary>One attribute: its type without the flag bits, its flags, and its value bytes.</summary>
public readonly ref struct NetlinkAttribute
{
    private readonly ushort _rawType;

    internal NetlinkAttribute(ushort rawType, ReadOnlySpan<byte> value)
    {
        _rawType = rawType;
        Value = value;
    }

    /// <summary>nla_type without NLA_F_NESTED and NLA_F_NET_BYTEORDER.</summary>
    public ushort Type => (ushort)(_rawType & NLA_TYPE_MASK);

    /// <summary>NLA_F_NESTED was set (not every kernel sender sets it on nests).</summary>
    public bool IsNested => (_rawType & NLA_F_NESTED) != 0;

    /// <summary>The value bytes (nla_len minus the header).</summary>
    public ReadOnlySpan<byte> Value { get; }

    /// <summary>Reads a one-byte value; false when the value is shorter.</summary>
    public bool TryGetU8(out byte value)
    {
        value = Value.Length >= 1 ? Value[0] : (byte)0;
        return Value.Length >= 1;
    }

    /// <summary>Reads a network-order 16-bit value; false when the value is shorter.</summary>
    public bool TryGetU16BigEndian(out ushort value) => BinaryPrimitives.TryReadUInt16BigEndian(Value, out value);

    /// <summary>Reads a network-order 32-bit value (netfilter's __be32); false when the value is shorter.</summary>
    public bool TryGetU32BigEndian(out uint value) => BinaryPrimitives.TryReadUInt32BigEndian(Value, out value);

    /// <summary>Reads a network-order 64-bit value; false when the value is shorter.</summary>
    public bool TryGetU64BigEndian(out ulong value) => BinaryPrimitives.TryReadUInt64BigEndian(Value, out value);

    /// <summary>Reads a host-order 32-bit value (rtnetlink's and extack's u32); false when the value is shorter.</summary>
    public bool TryGetU32(out uint value)
    {
        bool ok = Value.Length >= 4;
        value = ok ? HostOrder.ReadU32(Value) : 0;
        return ok;
    }

    /// <summary>The attributes nested in this one.</summary>
    public AttributeReader GetNested() => new(Value);
}
