using System.Buffers.Binary;

namespace Offload.Engine.Conntrack.Gre;

/// <summary>
/// What conntrack reads of a GRE header (RFC 2784, and RFC 2637's enhanced GRE of PPTP): the version, and for
/// version 1 the call ID of the receiving peer. Every read checks the length first; a header cut short reads as
/// version 0 or without a call ID, as the kernel's nf_conntrack_proto_gre.c treats it.
/// </summary>
internal static class GreHeader
{
    /// <summary>The protocol type of PPTP's payload (PPP).</summary>
    public const ushort ProtocolPpp = 0x880B;

    /// <summary>Bytes up to and including the call ID of an enhanced GRE header.</summary>
    public const int KeyedLength = 8;

    /// <summary>Offset of the call ID in an enhanced GRE header (the key field's low half).</summary>
    public const int CallIdOffset = 6;

    /// <summary>The GRE version (0 plain, 1 enhanced/PPTP); 0 when even the flags are missing.</summary>
    public static int Version(ReadOnlySpan<byte> gre) => gre.Length >= 2 ? gre[1] & 0x07 : 0;

    /// <summary>
    /// The call ID of an enhanced GRE packet of PPTP: version 1, payload PPP, at least 8 bytes. False for every
    /// other GRE packet (those are tracked by addresses only).
    /// </summary>
    public static bool TryReadCallId(ReadOnlySpan<byte> gre, out ushort callId)
    {
        callId = 0;
        if (gre.Length < KeyedLength || Version(gre) != 1 || BinaryPrimitives.ReadUInt16BigEndian(gre.Slice(2)) != ProtocolPpp)
        {
            return false;
        }

        callId = BinaryPrimitives.ReadUInt16BigEndian(gre.Slice(CallIdOffset));
        return true;
    }

    /// <summary>
    /// True for a version 1 header whose payload is not PPP: the kernel refuses to track it (its pkt_to_tuple fails),
    /// and so do we. A header too short to hold the protocol passes, as in the kernel.
    /// </summary>
    public static bool IsForeignEnhanced(ReadOnlySpan<byte> gre) =>
        gre.Length >= 4 && Version(gre) == 1 && BinaryPrimitives.ReadUInt16BigEndian(gre.Slice(2)) != ProtocolPpp;
}
