using System.Buffers.Binary;

namespace Offload.Alg.Pptp;

/// <summary>PPTP control message types (RFC 2637, section 2).</summary>
internal enum PptpMessageType : ushort
{
    None = 0,
    StartControlConnectionRequest = 1,
    StartControlConnectionReply = 2,
    StopControlConnectionRequest = 3,
    StopControlConnectionReply = 4,
    EchoRequest = 5,
    EchoReply = 6,
    OutgoingCallRequest = 7,
    OutgoingCallReply = 8,
    IncomingCallRequest = 9,
    IncomingCallReply = 10,
    IncomingCallConnected = 11,
    CallClearRequest = 12,
    CallDisconnectNotify = 13,
    WanErrorNotify = 14,
    SetLinkInfo = 15,
}

/// <summary>What <see cref="PptpParser.Read"/> found at an offset of a segment.</summary>
internal enum PptpRead : byte
{
    /// <summary>A whole control message of a known type, long enough for its fields.</summary>
    Control,

    /// <summary>A whole message that is no control message this helper reads (management type, unknown message type): skip it.</summary>
    Other,

    /// <summary>The message goes on past the segment (or not even its header is here).</summary>
    Partial,

    /// <summary>A length below the header, a wrong magic cookie, or a known message shorter than its fields: stop reading the segment.</summary>
    Malformed,
}

/// <summary>One control message's place in a segment.</summary>
/// <param name="Type">Its control message type.</param>
/// <param name="Offset">Where it starts in the payload.</param>
/// <param name="Length">Its length, header included.</param>
internal readonly record struct PptpMessage(PptpMessageType Type, int Offset, int Length)
{
    /// <summary>Where the message's body (after the 12 bytes of PPTP and control headers) starts in the payload.</summary>
    public int BodyOffset => Offset + PptpParser.HeaderLength;
}

/// <summary>
/// Reads PPTP control messages (RFC 2637) from a TCP payload: every length is checked against the segment before a
/// field is read, and each message advances the reader by at least its header, so a hostile length can neither read
/// out of bounds nor stall the loop. The field offsets are those of the RFC's message layouts (the kernel's
/// nf_conntrack_pptp.h names the same fields).
/// </summary>
internal static class PptpParser
{
    /// <summary>Length (2), PPTP message type (2), magic cookie (4), control message type (2), reserved (2).</summary>
    public const int HeaderLength = 12;

    public const uint MagicCookie = 0x1A2B3C4D;

    /// <summary>The PPTP message type of control messages (2 is management).</summary>
    public const ushort ControlMessage = 1;

    /// <summary>Offset, in an Outgoing-Call-Request, Incoming-Call-Request, Outgoing-Call-Reply, Incoming-Call-Reply, Call-Clear-Request or Call-Disconnect-Notify body, of the sender's call ID.</summary>
    public const int CallIdOffset = 0;

    /// <summary>Offset of the peer's call ID in an Outgoing-Call-Reply or Incoming-Call-Reply body.</summary>
    public const int ReplyPeerCallIdOffset = 2;

    /// <summary>Offset of the peer's call ID in an Incoming-Call-Connected, WAN-Error-Notify or Set-Link-Info body.</summary>
    public const int PeerCallIdOffset = 0;

    /// <summary>Offset of the result code in an Outgoing-Call-Reply or Incoming-Call-Reply body.</summary>
    public const int CallResultOffset = 4;

    /// <summary>Offset of the result code in a Start-Control-Connection-Reply body.</summary>
    public const int StartResultOffset = 2;

    /// <summary>Offset of the result code in a Stop-Control-Connection-Reply body.</summary>
    public const int StopResultOffset = 0;

    /// <summary>The body length of each known message type (RFC 2637's layouts without the 12 header bytes); 0 for unknown types.</summary>
    public static int BodyLength(PptpMessageType type) => type switch
    {
        PptpMessageType.StartControlConnectionRequest or PptpMessageType.StartControlConnectionReply => 144,
        PptpMessageType.StopControlConnectionRequest or PptpMessageType.StopControlConnectionReply => 4,
        PptpMessageType.EchoRequest => 4,
        PptpMessageType.EchoReply => 8,
        PptpMessageType.OutgoingCallRequest => 156,
        PptpMessageType.OutgoingCallReply => 20,
        PptpMessageType.IncomingCallRequest => 208,
        PptpMessageType.IncomingCallReply => 12,
        PptpMessageType.IncomingCallConnected => 16,
        PptpMessageType.CallClearRequest => 4,
        PptpMessageType.CallDisconnectNotify => 136,
        PptpMessageType.WanErrorNotify => 28,
        PptpMessageType.SetLinkInfo => 12,
        _ => 0,
    };

    /// <summary>Reads the message that starts at <paramref name="offset"/> of <paramref name="payload"/>. Never throws.</summary>
    public static PptpRead Read(ReadOnlySpan<byte> payload, int offset, out PptpMessage message)
    {
        message = default;
        if (offset < 0 || offset > payload.Length || payload.Length - offset < HeaderLength)
        {
            return PptpRead.Partial;
        }

        var header = payload.Slice(offset, HeaderLength);
        int length = BinaryPrimitives.ReadUInt16BigEndian(header);
        if (length < HeaderLength || BinaryPrimitives.ReadUInt32BigEndian(header.Slice(4)) != MagicCookie)
        {
            return PptpRead.Malformed;
        }

        if (length > payload.Length - offset)
        {
            return PptpRead.Partial;
        }

        var type = (PptpMessageType)BinaryPrimitives.ReadUInt16BigEndian(header.Slice(8));
        message = new PptpMessage(type, offset, length);
        if (BinaryPrimitives.ReadUInt16BigEndian(header.Slice(2)) != ControlMessage)
        {
            return PptpRead.Other;
        }

        int body = BodyLength(type);
        if (body == 0)
        {
            return PptpRead.Other;
        }

        return length - HeaderLength < body ? PptpRead.Malformed : PptpRead.Control;
    }

    /// <summary>The 16-bit field at <paramref name="fieldOffset"/> of a message's body (the caller's message was read whole, and every offset used lies inside its type's body).</summary>
    public static ushort Field16(ReadOnlySpan<byte> payload, in PptpMessage message, int fieldOffset) =>
        BinaryPrimitives.ReadUInt16BigEndian(payload.Slice(message.BodyOffset + fieldOffset, 2));

    /// <summary>The byte at <paramref name="fieldOffset"/> of a message's body.</summary>
    public static byte Field8(ReadOnlySpan<byte> payload, in PptpMessage message, int fieldOffset) =>
        payload[message.BodyOffset + fieldOffset];
}
