namespace Offload.Alg.H323;

/// <summary>How a decode ended.</summary>
internal enum PerStatus : byte
{
    /// <summary>The whole message was walked.</summary>
    Ok,

    /// <summary>The walk reached a field the tables do not describe further; what was found before it holds.</summary>
    Stopped,

    /// <summary>A field would run past the message (or its open type): malformed, nothing found holds.</summary>
    Bound,

    /// <summary>A choice index outside its root alternatives without the extension bit: malformed.</summary>
    Range,

    /// <summary>Nested deeper than <see cref="PerDecoder.MaxDepth"/>, or more than <see cref="PerDecoder.MaxSteps"/> fields: refused.</summary>
    TooComplex,
}

/// <summary>One address found in a message: where its 4 or 16 address bytes and the 2 port bytes after them lie.</summary>
/// <param name="Tag">Which field it is.</param>
/// <param name="Family">4 or 6.</param>
/// <param name="Offset">The payload offset of the address; its port follows it.</param>
/// <param name="Channel">The logical channel (OpenLogicalChannel or its Ack) it belongs to, -1 outside one.</param>
/// <param name="Item">Its position in a list of addresses (RAS), 0 otherwise.</param>
internal readonly record struct H323Found(H323AddressTag Tag, byte Family, int Offset, int Channel, int Item);

/// <summary>What a decode found: addresses (up to the room given), logical channels, and the message's own choice.</summary>
internal ref struct H323Findings
{
    private readonly Span<H323Found> _found;

    public H323Findings(Span<H323Found> room)
    {
        _found = room;
    }

    /// <summary>The addresses found, in message order.</summary>
    public readonly ReadOnlySpan<H323Found> Found => _found[..Count];

    public int Count { get; private set; }

    /// <summary>More addresses than room: the rest were walked but not kept.</summary>
    public bool Overflowed { get; private set; }

    /// <summary>Logical channels seen.</summary>
    public int Channels { get; set; }

    /// <summary>Bit n: logical channel n may announce a T.120 address (a T.120 data channel on a separate LAN stack, or an Ack).</summary>
    public ulong T120Channels { get; set; }

    /// <summary>The first choice of the message (RasMessage's, MultimediaSystemControlMessage's, h323-message-body's), -1 before one.</summary>
    public int Message { get; set; }

    public int Steps { get; set; }

    /// <summary>A RAS message's timeToLive in seconds, 0 when it has none.</summary>
    public long TimeToLive { get; set; }

    public void Add(in H323Found found)
    {
        if (Count < _found.Length)
        {
            _found[Count++] = found;
        }
        else
        {
            Overflowed = true;
        }
    }

    public void Reset()
    {
        Count = 0;
        Overflowed = false;
        Channels = 0;
        T120Channels = 0;
        Message = -1;
        Steps = 0;
        TimeToLive = 0;
    }
}

/// <summary>
/// Walks aligned PER (X.691) along a table (<see cref="PerField"/>), recording where the addresses lie, as the kernel's
/// nf_conntrack_h323_asn1 does: a bounded walk that never reads past the message, never past an open type's length,
/// and stops at a depth and a number of fields no message of these protocols comes near.
/// </summary>
internal static class PerDecoder
{
    /// <summary>Nesting limit (the deepest address, in a tunnelled OpenLogicalChannel, lies at about 16).</summary>
    public const int MaxDepth = 32;

    /// <summary>Fields walked per message: a message of repeated empty items cannot make the walk loop long.</summary>
    public const int MaxSteps = 4096;

    /// <summary>Decodes <paramref name="buffer"/>[<paramref name="start"/>..<paramref name="end"/>) as <paramref name="type"/>.</summary>
    public static PerStatus Decode(ReadOnlySpan<byte> buffer, int start, int end, PerField type, ref H323Findings findings)
    {
        findings.Reset();
        if (start < 0 || end > buffer.Length || start > end)
        {
            return PerStatus.Bound;
        }

        var reader = new PerBitReader(buffer, start, end);
        return Field(ref reader, type, ref findings, H323AddressTag.None, -1, 0, 0);
    }

    private static PerStatus Field(ref PerBitReader r, PerField f, ref H323Findings fx, H323AddressTag tag, int channel, int item, int depth)
    {
        if (depth > MaxDepth || ++fx.Steps > MaxSteps)
        {
            return PerStatus.TooComplex;
        }

        if (f.Tag != H323AddressTag.None)
        {
            tag = f.Tag;
        }

        if (f.Has(PerFlags.LogicalChannel))
        {
            channel = fx.Channels++;
        }

        if (f.MarksT120 && channel is >= 0 and < 64)
        {
            fx.T120Channels |= 1UL << channel;
        }

        return f.Kind switch
        {
            PerKind.Null => PerStatus.Ok,
            PerKind.Bool => Ok(r.SkipBits(1)),
            PerKind.ObjectIdentifier => Ok(r.ReadAlignedBytes(1, out uint length) && r.SkipBytes(length)),
            PerKind.Integer when f.IsTimeToLive => TimeToLive(ref r, ref fx),
            PerKind.Integer => Integer(ref r, f),
            PerKind.Enumerated => Enumerated(ref r, f),
            PerKind.BitString => BitString(ref r, f),
            PerKind.NumericString => Ok(r.ReadBits(f.Bits, out uint digits) && r.Align() && r.SkipBits((digits + f.Lower) * 4L)),
            PerKind.OctetString => OctetString(ref r, f, ref fx, tag, channel, item),
            PerKind.BmpString => BmpString(ref r, f),
            PerKind.Sequence => Sequence(ref r, f, ref fx, tag, channel, item, depth),
            PerKind.SequenceOf => SequenceOf(ref r, f, ref fx, tag, channel, depth),
            PerKind.Choice => Choice(ref r, f, ref fx, tag, channel, item, depth),
            _ => PerStatus.Range,
        };
    }

    private static PerStatus Ok(bool read) => read ? PerStatus.Ok : PerStatus.Bound;

    private static PerStatus Integer(ref PerBitReader r, PerField f) => f.Size switch
    {
        PerSize.Bits => Ok(r.SkipBits(f.Bits)),
        PerSize.Byte => Ok(r.Align() && r.SkipBytes(1)),
        PerSize.Word => Ok(r.Align() && r.SkipBytes(2)),
        PerSize.Constrained => Ok(r.ReadBits(2, out uint bytes) && r.Align() && r.SkipBytes(bytes + 1)),
        PerSize.Length => Ok(r.ReadLength(out int length) && r.SkipBytes(length)),
        _ => PerStatus.Range,
    };

    private static PerStatus TimeToLive(ref PerBitReader r, ref H323Findings fx)
    {
        if (!r.ReadBits(2, out uint less) || !r.ReadAlignedBytes((int)less + 1, out uint value))
        {
            return PerStatus.Bound;
        }

        fx.TimeToLive = value + 1L;
        return PerStatus.Ok;
    }

    private static PerStatus Enumerated(ref PerBitReader r, PerField f)
    {
        bool extended = false;
        if (f.Has(PerFlags.Extensible) && !r.ReadBit(out extended))
        {
            return PerStatus.Bound;
        }

        return Ok(r.SkipBits(extended ? 7 : f.Bits));
    }

    private static PerStatus BitString(ref PerBitReader r, PerField f)
    {
        if (!r.Align())
        {
            return PerStatus.Bound;
        }

        long bits;
        switch (f.Size)
        {
            case PerSize.Fixed:
                bits = f.Lower;
                break;
            case PerSize.Word:
                if (!r.ReadAlignedBytes(2, out uint count))
                {
                    return PerStatus.Bound;
                }

                bits = count + (long)f.Lower;
                break;
            case PerSize.Length:
                if (!r.ReadLength(out int length))
                {
                    return PerStatus.Bound;
                }

                bits = length;
                break;
            default:
                return PerStatus.Range;
        }

        return Ok(r.SkipBits(bits));
    }

    private static PerStatus OctetString(ref PerBitReader r, PerField f, ref H323Findings fx, H323AddressTag tag, int channel, int item)
    {
        long length;
        switch (f.Size)
        {
            case PerSize.Fixed:
                if (f.Lower > 2 && !r.Align())
                {
                    return PerStatus.Bound;
                }

                if (f.IsAddress && tag != H323AddressTag.None)
                {
                    // The address and the aligned 16-bit port after it: 6 or 18 bytes in a row, all inside the message.
                    if (r.BitsLeft < (f.Lower + 2) * 8)
                    {
                        return PerStatus.Bound;
                    }

                    fx.Add(new H323Found(tag, f.Lower == 4 ? (byte)4 : (byte)6, r.BytePosition, channel, item));
                }

                length = f.Lower;
                break;
            case PerSize.Byte:
                if (!r.ReadAlignedBytes(1, out uint count))
                {
                    return PerStatus.Bound;
                }

                length = count + (long)f.Lower;
                break;
            case PerSize.Length:
                if (!r.ReadLength(out int determinant))
                {
                    return PerStatus.Bound;
                }

                length = determinant + (long)f.Lower;
                break;
            case PerSize.Bits:
                if (!r.ReadBits(f.Bits, out uint bits) || !r.Align())
                {
                    return PerStatus.Bound;
                }

                length = bits + (long)f.Lower;
                break;
            default:
                return PerStatus.Range;
        }

        return Ok(r.SkipBytes(length));
    }

    private static PerStatus BmpString(ref PerBitReader r, PerField f)
    {
        uint count;
        bool read = f.Size == PerSize.Byte
            ? r.ReadAlignedBytes(1, out count)
            : r.ReadBits(f.Bits, out count) && r.Align();
        return Ok(read && r.SkipBytes((count + (long)f.Lower) * 2));
    }

    private static PerStatus Sequence(ref PerBitReader r, PerField f, ref H323Findings fx, H323AddressTag tag, int channel, int item, int depth)
    {
        if (f.IsOpaque)
        {
            return PerStatus.Stopped;
        }

        bool extended = false;
        if (f.Has(PerFlags.Extensible) && !r.ReadBit(out extended))
        {
            return PerStatus.Bound;
        }

        if (!r.ReadBits(f.Bits, out uint bitmap))
        {
            return PerStatus.Bound;
        }

        int optional = 0;
        var children = f.Children;
        for (int i = 0; i < f.Root; i++)
        {
            var child = children[i];
            if (child.Has(PerFlags.Optional))
            {
                bool present = ((bitmap >> (f.Bits - 1 - optional)) & 1) != 0;
                optional++;
                if (!present)
                {
                    continue;
                }
            }

            if (child.Has(PerFlags.Stop))
            {
                return PerStatus.Stopped;
            }

            var status = child.Has(PerFlags.Open)
                ? OpenType(ref r, child, ref fx, tag, channel, item, depth)
                : Field(ref r, child, ref fx, tag, channel, item, depth + 1);
            if (status != PerStatus.Ok)
            {
                return status;
            }
        }

        if (!extended)
        {
            return PerStatus.Ok;
        }

        // The extension additions: how many (a normally small length, 7 bits here), a presence bit each, then each
        // present one as an open type.
        if (!r.ReadBits(7, out uint less))
        {
            return PerStatus.Bound;
        }

        int additions = (int)less + 1;
        var presence = r;
        if (!r.SkipBits(additions) || !r.Align())
        {
            return PerStatus.Bound;
        }

        for (int j = 0; j < additions; j++)
        {
            if (!presence.ReadBit(out bool present))
            {
                return PerStatus.Bound;
            }

            if (!present)
            {
                continue;
            }

            int index = f.Root + j;
            var status = OpenType(ref r, index < children.Length ? children[index] : null, ref fx, tag, channel, item, depth);
            if (status != PerStatus.Ok)
            {
                return status;
            }
        }

        return PerStatus.Ok;
    }

    /// <summary>
    /// An open type (an extension addition, an extension alternative, an open item): a length, then the contents,
    /// walked inside that length only when something is recorded under them, skipped whole otherwise. A stop inside
    /// ends at its boundary.
    /// </summary>
    private static PerStatus OpenType(ref PerBitReader r, PerField? f, ref H323Findings fx, H323AddressTag tag, int channel, int item, int depth)
    {
        if (!r.ReadLength(out int length) || length * 8 > r.BitsLeft)
        {
            return PerStatus.Bound;
        }

        if (f is not null && f.Wanted && !f.IsOpaque)
        {
            var inner = r.Slice(r.BytePosition, length);
            var status = Field(ref inner, f, ref fx, tag, channel, item, depth + 1);
            if (status is not (PerStatus.Ok or PerStatus.Stopped))
            {
                return status;
            }
        }

        return Ok(r.SkipBytes(length));
    }

    private static PerStatus SequenceOf(ref PerBitReader r, PerField f, ref H323Findings fx, H323AddressTag tag, int channel, int depth)
    {
        uint count = 0;
        bool read;
        switch (f.Size)
        {
            case PerSize.Byte:
                read = r.ReadAlignedBytes(1, out count);
                break;
            case PerSize.Word:
                read = r.ReadAlignedBytes(2, out count);
                break;
            case PerSize.Length:
                read = r.ReadLength(out int length);
                count = (uint)length;
                break;
            default:
                read = r.ReadBits(f.Bits, out count);
                break;
        }

        if (!read)
        {
            return PerStatus.Bound;
        }

        long items = count + (long)f.Lower;
        if (items == 0)
        {
            return PerStatus.Ok;
        }

        if (f.Children.Length == 0)
        {
            return PerStatus.Stopped;
        }

        var item = f.Children[0];
        for (int i = 0; i < items; i++)
        {
            var status = item.Has(PerFlags.Open)
                ? OpenType(ref r, item, ref fx, tag, channel, i, depth)
                : Field(ref r, item, ref fx, tag, channel, i, depth + 1);
            if (status != PerStatus.Ok)
            {
                return status;
            }
        }

        return PerStatus.Ok;
    }

    private static PerStatus Choice(ref PerBitReader r, PerField f, ref H323Findings fx, H323AddressTag tag, int channel, int item, int depth)
    {
        bool extended = false;
        if (f.Has(PerFlags.Extensible) && !r.ReadBit(out extended))
        {
            return PerStatus.Bound;
        }

        uint index;
        if (extended)
        {
            // An extension alternative: a normally small number (7 bits here) counted after the root ones.
            if (!r.ReadBits(7, out uint number))
            {
                return PerStatus.Bound;
            }

            index = number + (uint)f.Root;
        }
        else
        {
            if (!r.ReadBits(f.Bits, out index))
            {
                return PerStatus.Bound;
            }

            if (index >= f.Root)
            {
                return PerStatus.Range;
            }
        }

        if (fx.Message < 0)
        {
            fx.Message = (int)index;
        }

        var child = index < f.Children.Length ? f.Children[(int)index] : null;
        if (extended || (child is not null && child.Has(PerFlags.Open)))
        {
            return OpenType(ref r, child, ref fx, tag, channel, item, depth);
        }

        if (child is null || child.IsOpaque || child.Has(PerFlags.Stop))
        {
            return PerStatus.Stopped;
        }

        return Field(ref r, child, ref fx, tag, channel, item, depth + 1);
    }
}
