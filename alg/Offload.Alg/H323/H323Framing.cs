using System.Buffers.Binary;

namespace Offload.Alg.H323;

/// <summary>
/// The framing around the PER messages: TPKT (RFC 1006: version 3, a reserved byte, a 16-bit length that counts its
/// own 4 bytes) on the TCP flows, and the Q.931 message whose User-user information element carries H.225.0.
/// </summary>
internal static class H323Framing
{
    /// <summary>TPKTs read in one TCP segment; more are passed unread.</summary>
    public const int MaxTpktsPerSegment = 16;

    /// <summary>The Q.931 protocol discriminator.</summary>
    private const byte Q931Discriminator = 0x08;

    /// <summary>The User-user information element (Q.931 4.5.30), whose contents are H323-UserInformation.</summary>
    private const byte UserUserElement = 0x7e;

    /// <summary>Information elements looked at before the User-user one; a message of more is not read.</summary>
    private const int MaxElements = 64;

    /// <summary>
    /// The next TPKT's contents in the segment, from <paramref name="offset"/> (0 for the first), which moves past it.
    /// A segment that is a TPKT header alone is remembered, and the next segment of that direction taken as its data
    /// when it does not start a TPKT itself and holds enough (the kernel's provision for NetMeeting).
    /// </summary>
    public static bool NextTpkt(ref HelperContext context, ref int offset, out int start, out int length)
    {
        var payload = context.Payload;
        int direction = H323Actions.DirectionIndex(ref context);
        bool startsTpkt = payload.Length - offset >= 4 && payload[offset] == 3 && payload[offset + 1] == 0;
        if (offset == 0 && context.TryGetState<H323State>(out var state))
        {
            int pending = state.TakePendingTpkt(direction);
            if (pending > 0 && !startsTpkt)
            {
                start = 0;
                length = pending;
                offset = pending;
                return pending <= payload.Length;
            }
        }

        if (TryReadTpkt(payload, offset, out start, out length))
        {
            offset = start + length;
            return true;
        }

        if (offset == 0 && payload.Length == 4 && startsTpkt && BinaryPrimitives.ReadUInt16BigEndian(payload.Slice(2)) > 4)
        {
            context.GetState<H323State>().SetPendingTpkt(direction, BinaryPrimitives.ReadUInt16BigEndian(payload.Slice(2)) - 4);
        }

        return false;
    }

    /// <summary>The TPKT at <paramref name="offset"/>: its contents' start and length, when it is whole in <paramref name="payload"/>.</summary>
    /// <returns>False when no TPKT starts there or it runs past the segment (split TPKTs are not reassembled).</returns>
    public static bool TryReadTpkt(ReadOnlySpan<byte> payload, int offset, out int dataStart, out int dataLength)
    {
        dataStart = 0;
        dataLength = 0;
        if (offset < 0 || payload.Length - offset < 4 || payload[offset] != 3 || payload[offset + 1] != 0)
        {
            return false;
        }

        int length = BinaryPrimitives.ReadUInt16BigEndian(payload.Slice(offset + 2));
        if (length < 4 || length > payload.Length - offset)
        {
            return false;
        }

        dataStart = offset + 4;
        dataLength = length - 4;
        return true;
    }

    /// <summary>
    /// Finds the H323-UserInformation in the Q.931 message at <paramref name="start"/> (<paramref name="length"/> bytes):
    /// protocol discriminator 8, a call reference, the message type, then information elements up to the User-user
    /// one (7E, a 16-bit length, protocol discriminator 5, the PER contents).
    /// </summary>
    /// <returns>False when it is not Q.931 or has no whole User-user element.</returns>
    public static bool TryFindUserInformation(ReadOnlySpan<byte> payload, int start, int length, out byte messageType, out int uuStart, out int uuLength)
    {
        messageType = 0;
        uuStart = 0;
        uuLength = 0;
        if (start < 0 || length < 0 || length > payload.Length - start)
        {
            return false;
        }

        var q931 = payload.Slice(start, length);
        if (q931.Length < 3 || q931[0] != Q931Discriminator)
        {
            return false;
        }

        int p = 2 + (q931[1] & 0x0f); // the call reference value's length is the low nibble
        if (p >= q931.Length)
        {
            return false;
        }

        messageType = q931[p++];
        for (int element = 0; element < MaxElements && p < q931.Length; element++)
        {
            byte id = q931[p];
            if (id == UserUserElement)
            {
                if (q931.Length - p < 4)
                {
                    return false;
                }

                int contents = BinaryPrimitives.ReadUInt16BigEndian(q931.Slice(p + 1));
                if (contents < 1 || contents > q931.Length - p - 3)
                {
                    return false;
                }

                // The first content byte is the user protocol discriminator (5: X.208/X.209 coded user information).
                uuStart = start + p + 4;
                uuLength = contents - 1;
                return true;
            }

            if ((id & 0x80) != 0)
            {
                p++; // a single-octet element (shift, sending complete, ...)
                continue;
            }

            if (q931.Length - p < 2)
            {
                return false;
            }

            p += 2 + q931[p + 1];
        }

        return false;
    }
}
