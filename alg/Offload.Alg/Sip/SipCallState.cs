using System.Buffers;
using System.Buffers.Binary;

namespace Offload.Alg.Sip;

/// <summary>
/// What a signalling flow's helper remembers between messages: the media its translated side offered, by position in
/// the SDP (an answer's streams pair with the offer's by position, RFC 3264 section 6), so that the answer's
/// expectation can make that side's own RTP leave from the router's port the peer was told (the kernel's paired
/// media expectation in nf_nat_sip_expected); and the untranslated side's media as expected from its last SDP, for the
/// translated side's answer to pair with.
/// </summary>
internal sealed class SipCallState
{
    private readonly SipTranslatedMedia[] _media = new SipTranslatedMedia[SdpScanner.MaxMedia];

    /// <summary>Records the translated media at position <paramref name="index"/> of the last offer from the translated side.</summary>
    public void Remember(int index, InetAddress address, ushort port, ushort translatedPort) =>
        _media[index] = new SipTranslatedMedia(true, address, port, translatedPort);

    private readonly SipPeerMedia[] _peer = new SipPeerMedia[SdpScanner.MaxMedia];

    /// <summary>Records the untranslated side's media at position <paramref name="index"/> of its last SDP, as expected (the port the engine chose).</summary>
    public void RememberPeer(int index, InetAddress address, ushort port) => _peer[index] = new SipPeerMedia(true, address, port);

    /// <summary>Forgets the untranslated side's media (its new SDP replaces the last).</summary>
    public void ClearPeer() => Array.Clear(_peer);

    /// <summary>The untranslated side's media at position <paramref name="index"/>, forgotten once taken (the answer pairs with it once).</summary>
    public bool TryTakePeer(int index, out SipPeerMedia media)
    {
        media = _peer[index];
        _peer[index] = default;
        return media.Present;
    }

    // Per TCP direction, where the message after one split across segments starts (not saved: after a restart the next
    // segment is read from its start, as the kernel reads every segment).
    private readonly uint[] _resumeAt = new uint[2];
    private readonly bool[] _resuming = new bool[2];

    /// <summary>Remembers that a message of <paramref name="direction"/> split across segments ends at <paramref name="sequence"/>.</summary>
    public void ResumeAt(ConnDirection direction, uint sequence)
    {
        _resumeAt[(int)direction & 1] = sequence;
        _resuming[(int)direction & 1] = true;
    }

    /// <summary>
    /// Where reading a segment of <paramref name="length"/> bytes at <paramref name="sequence"/> starts: after the end of
    /// a split message inside it (<paramref name="offset"/>), or at 0. False when the split message goes on past the
    /// segment: it is all body, not to be read.
    /// </summary>
    public bool Resume(ConnDirection direction, uint sequence, int length, out int offset)
    {
        int d = (int)direction & 1;
        offset = 0;
        if (!_resuming[d])
        {
            return true;
        }

        uint ahead = _resumeAt[d] - sequence;
        if (ahead > SipParser.MaxContentLength + 65536u)
        {
            _resuming[d] = false; // the segment starts past that point (one we did not see): read it as the kernel would
            return true;
        }

        if (ahead >= (uint)length)
        {
            return false;
        }

        _resuming[d] = false;
        offset = (int)ahead;
        return true;
    }

    /// <summary>What <see cref="Write"/> writes: per position, the translated media (flag, address, port, router's port), then the untranslated (flag, address, port).</summary>
    public const int SavedLength = SdpScanner.MaxMedia * ((1 + 16 + 2 + 2) + (1 + 16 + 2));

    /// <summary>Writes the state for a restart of the daemon (<see cref="SipHelper.SaveState"/>).</summary>
    public void Write(IBufferWriter<byte> writer)
    {
        var span = writer.GetSpan(SavedLength)[..SavedLength];
        span.Clear();
        int at = 0;
        foreach (var m in _media)
        {
            span[at] = m.Present ? (byte)1 : (byte)0;
            WriteAddress(span[(at + 1)..], m.Address);
            BinaryPrimitives.WriteUInt16BigEndian(span[(at + 17)..], m.Port);
            BinaryPrimitives.WriteUInt16BigEndian(span[(at + 19)..], m.TranslatedPort);
            at += 21;
        }

        foreach (var p in _peer)
        {
            span[at] = p.Present ? (byte)1 : (byte)0;
            WriteAddress(span[(at + 1)..], p.Address);
            BinaryPrimitives.WriteUInt16BigEndian(span[(at + 17)..], p.Port);
            at += 19;
        }

        writer.Advance(SavedLength);
    }

    /// <summary>Reads what <see cref="Write"/> wrote; null when it is not that (a length or flag out of place).</summary>
    public static SipCallState? Read(ReadOnlySpan<byte> data)
    {
        if (data.Length != SavedLength)
        {
            return null;
        }

        var state = new SipCallState();
        int at = 0;
        for (int i = 0; i < SdpScanner.MaxMedia; i++, at += 21)
        {
            if (data[at] > 1)
            {
                return null;
            }

            state._media[i] = new SipTranslatedMedia(data[at] == 1, ReadAddress(data[(at + 1)..]), BinaryPrimitives.ReadUInt16BigEndian(data[(at + 17)..]), BinaryPrimitives.ReadUInt16BigEndian(data[(at + 19)..]));
        }

        for (int i = 0; i < SdpScanner.MaxMedia; i++, at += 19)
        {
            if (data[at] > 1)
            {
                return null;
            }

            state._peer[i] = new SipPeerMedia(data[at] == 1, ReadAddress(data[(at + 1)..]), BinaryPrimitives.ReadUInt16BigEndian(data[(at + 17)..]));
        }

        return state;
    }

    private static void WriteAddress(Span<byte> span, InetAddress address)
    {
        BinaryPrimitives.WriteUInt64BigEndian(span, address.High);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], address.Low);
    }

    private static InetAddress ReadAddress(ReadOnlySpan<byte> span) =>
        new(BinaryPrimitives.ReadUInt64BigEndian(span), BinaryPrimitives.ReadUInt64BigEndian(span[8..]));

    /// <summary>Forgets every recorded media (a new offer replaces the last).</summary>
    public void Clear() => Array.Clear(_media);

    /// <summary>The translated media at position <paramref name="index"/>, if the last offer had one.</summary>
    public bool TryGet(int index, out SipTranslatedMedia media)
    {
        media = _media[index];
        return media.Present;
    }
}

/// <summary>One media stream of the untranslated side: its address and RTP port, as expected when it offered.</summary>
internal readonly record struct SipPeerMedia(bool Present, InetAddress Address, ushort Port);

/// <summary>One media stream of the translated side: its own address and RTP port, and the router's port announced for it.</summary>
internal readonly record struct SipTranslatedMedia(bool Present, InetAddress Address, ushort Port, ushort TranslatedPort);
