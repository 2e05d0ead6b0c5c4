namespace Offload.Alg.Sip;

/// <summary>
/// The rewrites of one message, collected in any order (Content-Length may come before or after the headers that
/// change, the body after them all) and handed to the engine sorted, as <see cref="HelperContext.Rewrite"/> wants
/// them. Held in caller-owned spans: no allocation per packet.
/// </summary>
internal ref struct SipEdits
{
    /// <summary>Rewrites one message may need (Request-URI, Via and its parameters, Contacts, From, To, SDP lines); more are refused.</summary>
    public const int MaxEdits = 48;

    /// <summary>Bytes of replacement text one message may need.</summary>
    public const int MaxText = MaxEdits * SipAddressText.MaxLength;

    private readonly Span<Edit> _edits;
    private readonly Span<byte> _text;
    private int _textUsed;

    public SipEdits(Span<Edit> edits, Span<byte> text)
    {
        _edits = edits;
        _text = text;
    }

    /// <summary>One rewrite: <see cref="Length"/> bytes at <see cref="Offset"/> replaced by text at <see cref="TextStart"/>.</summary>
    internal record struct Edit(int Offset, int Length, int TextStart, int TextLength);

    public int Count { get; private set; }

    /// <summary>True when an edit could not be recorded (too many, or out of room): the message is then left as it was.</summary>
    public bool Overflowed { get; private set; }

    /// <summary>The change in length the edits between <paramref name="from"/> and <paramref name="to"/> make.</summary>
    public readonly int DeltaWithin(int from, int to)
    {
        int delta = 0;
        for (int i = 0; i < Count; i++)
        {
            if (_edits[i].Offset >= from && _edits[i].Offset < to)
            {
                delta += _edits[i].TextLength - _edits[i].Length;
            }
        }

        return delta;
    }

    /// <summary>Room to format replacement text into; commit it with <see cref="Add"/>.</summary>
    public readonly Span<byte> Scratch => _text[_textUsed..];

    /// <summary>Marks an edit that could not be formatted: the message is then left as it was.</summary>
    public void Fail() => Overflowed = true;

    /// <summary>Records a rewrite whose text was just formatted into <see cref="Scratch"/>.</summary>
    public void Add(int offset, int length, int textLength)
    {
        if (Count == _edits.Length || _textUsed + textLength > _text.Length)
        {
            Overflowed = true;
            return;
        }

        for (int i = 0; i < Count; i++)
        {
            if (_edits[i].Offset == offset)
            {
                return; // the same bytes twice (one header read as two): the first edit stands
            }
        }

        _edits[Count++] = new Edit(offset, length, _textUsed, textLength);
        _textUsed += textLength;
    }

    /// <summary>Hands the edits to the engine in increasing order, each payload offset shifted by <paramref name="shift"/>; false if one is refused.</summary>
    public readonly bool Apply(ref HelperContext context, int shift)
    {
        var edits = _edits[..Count];
        edits.Sort(static (a, b) => a.Offset.CompareTo(b.Offset));
        for (int i = 0; i < edits.Length; i++)
        {
            var edit = edits[i];
            if (!context.Rewrite(shift + edit.Offset, edit.Length, _text.Slice(edit.TextStart, edit.TextLength)))
            {
                return false;
            }
        }

        return true;
    }
}
