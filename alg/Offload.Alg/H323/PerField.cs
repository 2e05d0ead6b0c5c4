namespace Offload.Alg.H323;

/// <summary>The ASN.1 types the H.323 tables use, as aligned PER encodes them.</summary>
internal enum PerKind : byte
{
    Null,
    Bool,
    ObjectIdentifier,
    Integer,
    Enumerated,
    BitString,
    NumericString,
    OctetString,
    BmpString,
    Sequence,
    SequenceOf,
    Choice,
}

/// <summary>
/// How a length, a count or a constrained integer is encoded: a number of bits (1 to 8, in <see cref="PerField.Bits"/>),
/// or one of these.
/// </summary>
internal enum PerSize : byte
{
    /// <summary>A fixed size (in <see cref="PerField.Lower"/>): no length in the encoding.</summary>
    Fixed,

    /// <summary>A field of <see cref="PerField.Bits"/> bits, not aligned.</summary>
    Bits,

    /// <summary>One aligned byte (a range of 256).</summary>
    Byte,

    /// <summary>Two aligned bytes (a range up to 64K).</summary>
    Word,

    /// <summary>A 2-bit byte count, then 1 to 4 aligned bytes (a range up to 4G).</summary>
    Constrained,

    /// <summary>A length determinant (X.691 10.9).</summary>
    Length,
}

/// <summary>What a field is to its parent.</summary>
[Flags]
internal enum PerFlags : byte
{
    None = 0,

    /// <summary>An optional component: present when its bit of the parent's bitmap is set.</summary>
    Optional = 1,

    /// <summary>An extensible type: an extension bit comes first.</summary>
    Extensible = 2,

    /// <summary>Encoded as an open type (a length, then its contents).</summary>
    Open = 4,

    /// <summary>Nothing from here on is needed (the tables end): decoding stops, keeping what was found.</summary>
    Stop = 8,

    /// <summary>An OpenLogicalChannel or its Ack: the addresses under it belong to one logical channel.</summary>
    LogicalChannel = 16,
}

/// <summary>The address fields the helpers act on (the kernel's DECODE fields).</summary>
internal enum H323AddressTag : byte
{
    None,
    H245Address,
    DestCallSignalAddress,
    SourceCallSignalAddress,
    AlternativeAddress,
    MediaChannel,
    MediaControlChannel,
    T120Address,
    CallSignalAddress,
    RasAddress,
    ReplyAddress,
}

/// <summary>
/// One field of a PER type table: its type, its encoding's size, bounds and flags, its components or alternatives,
/// and what the decoder records there. Tables are built once (H323Tables) and shared by every decode.
/// </summary>
internal sealed class PerField
{
    private PerField(string name, PerKind kind, PerSize size, int bits, int lower, int root, PerFlags flags, PerField[]? children)
    {
        Name = name;
        Kind = kind;
        Size = size;
        Bits = bits;
        Lower = lower;
        Root = root;
        Flags = flags;
        Children = children ?? [];
    }

    public string Name { get; }

    public PerKind Kind { get; }

    public PerSize Size { get; }

    /// <summary>With <see cref="PerSize.Bits"/>: the width; for a sequence, the optional components' bitmap width; for a choice, the index width.</summary>
    public int Bits { get; }

    /// <summary>The lower bound added to a decoded length or count, or a fixed size.</summary>
    public int Lower { get; }

    /// <summary>A sequence's root components, a choice's root alternatives (the rest of <see cref="Children"/> are extensions).</summary>
    public int Root { get; }

    public PerFlags Flags { get; private init; }

    /// <summary>A sequence's components, a choice's alternatives, a sequence-of's item (one). Empty: not described (only skipped, as an open type).</summary>
    public PerField[] Children { get; }

    /// <summary>The address this field is (a TransportAddress) or holds: the tag of every IP captured under it.</summary>
    public H323AddressTag Tag { get; private init; }

    /// <summary>An octet string of 4 or 16 bytes that is an IPv4 or IPv6 address followed by its port: recorded.</summary>
    public bool IsAddress { get; private init; }

    /// <summary>Choosing this alternative marks the enclosing logical channel as a T.120 channel on a separate LAN stack.</summary>
    public bool MarksT120 { get; private init; }

    /// <summary>Something under this field is recorded: it must be decoded even where it could be skipped.</summary>
    public bool Wanted => Tag != H323AddressTag.None || IsAddress || MarksT120 || IsTimeToLive || _childWanted;

    /// <summary>A RAS timeToLive (seconds, a constrained integer from 1): its value is recorded.</summary>
    public bool IsTimeToLive { get; private init; }

    private bool _childWanted;

    /// <summary>Only known by name: decoding it stops (it can still be skipped as an open type).</summary>
    public bool IsOpaque => Root < 0;

    public bool Has(PerFlags flag) => (Flags & flag) != 0;

    public PerField With(PerFlags flags) => Copy(Flags | flags);

    public PerField Tagged(H323AddressTag tag) => Copy(Flags, tag);

    public PerField MarkT120() => Copy(Flags, marksT120: true);

    private PerField Copy(PerFlags flags, H323AddressTag? tag = null, bool marksT120 = false) =>
        new(Name, Kind, Size, Bits, Lower, Root, flags, Children)
        {
            Tag = tag ?? Tag,
            IsAddress = IsAddress,
            MarksT120 = MarksT120 || marksT120,
            _childWanted = _childWanted,
        };

    private static PerField Make(string name, PerKind kind, PerSize size, int bits, int lower, int root, PerFlags flags, PerField[]? children)
    {
        var field = new PerField(name, kind, size, bits, lower, root, flags, children);
        foreach (var child in field.Children)
        {
            field._childWanted |= child.Wanted;
        }

        return field;
    }

    public static PerField Null(string name, PerFlags flags = PerFlags.None) => Make(name, PerKind.Null, PerSize.Fixed, 0, 0, 0, flags, null);

    public static PerField Bool(string name, PerFlags flags = PerFlags.None) => Make(name, PerKind.Bool, PerSize.Fixed, 1, 0, 0, flags, null);

    public static PerField Oid(string name, PerFlags flags = PerFlags.None) => Make(name, PerKind.ObjectIdentifier, PerSize.Byte, 0, 0, 0, flags, null);

    /// <summary>An integer of <paramref name="bits"/> bits (a range of 2 to 256).</summary>
    public static PerField Int(string name, int bits, PerFlags flags = PerFlags.None) => Make(name, PerKind.Integer, PerSize.Bits, bits, 0, 0, flags, null);

    /// <summary>An integer encoded as <paramref name="size"/> (Byte, Word, Constrained, or Length for an unconstrained one).</summary>
    public static PerField Int(string name, PerSize size, PerFlags flags = PerFlags.None) => Make(name, PerKind.Integer, size, 0, 0, 0, flags, null);

    public static PerField Enum(string name, int bits, PerFlags flags = PerFlags.None) => Make(name, PerKind.Enumerated, PerSize.Bits, bits, 0, 0, flags, null);

    /// <summary>A bit string of a fixed number of bits (<paramref name="lower"/>), or with a Word or Length count.</summary>
    public static PerField BitString(string name, PerSize size, int lower = 0, PerFlags flags = PerFlags.None) =>
        Make(name, PerKind.BitString, size, 0, lower, 0, flags, null);

    /// <summary>A numeric string (4 bits a digit) whose length is <paramref name="bits"/> bits plus <paramref name="lower"/>.</summary>
    public static PerField NumericString(string name, int bits, int lower, PerFlags flags = PerFlags.None) =>
        Make(name, PerKind.NumericString, PerSize.Bits, bits, lower, 0, flags, null);

    /// <summary>An octet string of fixed length <paramref name="lower"/>.</summary>
    public static PerField Octets(string name, int lower, PerFlags flags = PerFlags.None) => Make(name, PerKind.OctetString, PerSize.Fixed, 0, lower, 0, flags, null);

    /// <summary>An octet string whose length is encoded as <paramref name="size"/> (Byte or Length) plus <paramref name="lower"/>.</summary>
    public static PerField Octets(string name, PerSize size, int lower, PerFlags flags = PerFlags.None) => Make(name, PerKind.OctetString, size, 0, lower, 0, flags, null);

    /// <summary>An octet string whose length is <paramref name="bits"/> bits plus <paramref name="lower"/>.</summary>
    public static PerField OctetsBits(string name, int bits, int lower, PerFlags flags = PerFlags.None) => Make(name, PerKind.OctetString, PerSize.Bits, bits, lower, 0, flags, null);

    /// <summary>A RAS TimeToLive, INTEGER (1..4294967295): its value recorded.</summary>
    public static PerField TimeToLive() =>
        new("timeToLive", PerKind.Integer, PerSize.Constrained, 0, 1, 0, PerFlags.None, null) { IsTimeToLive = true };

    /// <summary>An IPv4 (4) or IPv6 (16) address followed by an aligned 16-bit port: the field recorded.</summary>
    public static PerField Address(string name, int length) =>
        new(name, PerKind.OctetString, PerSize.Fixed, 0, length, 0, PerFlags.None, null) { IsAddress = true };

    /// <summary>A BMP string (2 bytes a character) whose length is one byte (<paramref name="bits"/> 0) or <paramref name="bits"/> bits, plus <paramref name="lower"/>.</summary>
    public static PerField Bmp(string name, int bits, int lower, PerFlags flags = PerFlags.None) =>
        Make(name, PerKind.BmpString, bits == 0 ? PerSize.Byte : PerSize.Bits, bits, lower, 0, flags, null);

    /// <summary>A sequence: <paramref name="optional"/> bits of presence bitmap, <paramref name="root"/> root components, the rest extensions.</summary>
    public static PerField Seq(string name, int optional, int root, PerFlags flags, params PerField[] children) =>
        Make(name, PerKind.Sequence, PerSize.Bits, optional, 0, root, flags, children);

    /// <summary>A sequence known only by name: it can be skipped when it is an open type, never decoded.</summary>
    public static PerField Opaque(string name, PerFlags flags) => Make(name, PerKind.Sequence, PerSize.Bits, 0, 0, -1, flags, null);

    /// <summary>A sequence-of whose count is encoded as <paramref name="size"/> (or <paramref name="bits"/> bits) plus <paramref name="lower"/>.</summary>
    public static PerField SeqOf(string name, PerSize size, PerFlags flags, PerField? item, int bits = 0, int lower = 0) =>
        Make(name, PerKind.SequenceOf, size, bits, lower, 0, flags, item is null ? null : [item]);

    /// <summary>A choice: an index of <paramref name="bits"/> bits among <paramref name="root"/> root alternatives, the rest extensions.</summary>
    public static PerField Choice(string name, int bits, int root, PerFlags flags, params PerField[] children) =>
        Make(name, PerKind.Choice, PerSize.Bits, bits, 0, root, flags, children);
}
