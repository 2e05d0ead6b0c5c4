using System.Buffers.Binary;

namespace Offload.Alg.Sane;

/// <summary>What a segment of a SANE control connection says, as far as the helper cares.</summary>
public enum SaneMessage : byte
{
    /// <summary>Nothing the helper acts on.</summary>
    Other,

    /// <summary>A client's SANE_NET_START request (RPC code 7 and a handle, 8 bytes).</summary>
    StartRequest,

    /// <summary>A client's request of another procedure: any START asked for before is answered by now.</summary>
    OtherRequest,

    /// <summary>A server's successful answer to START, with the port of the data connection.</summary>
    StartGood,

    /// <summary>A server's answer to START with a status other than GOOD (the scan was refused).</summary>
    StartRefused,

    /// <summary>An answer to START that cannot be one: too short, or a port word above 65535 or of 0.</summary>
    StartMalformed,
}

/// <summary>
/// Reads the two SANE network messages the data connection depends on (the SANE network protocol, in
/// big-endian 32-bit words): the client's SANE_NET_START request and the server's reply, which carries a status
/// word, then the port word of the data connection the client is to open to the server. Nothing here allocates;
/// every read is bounds-checked.
/// </summary>
/// <remarks>
/// As the kernel's helper, it looks at whole segments only: a request is recognised when a segment holds exactly
/// its 8 bytes, and a reply from its first 8 bytes.
/// </remarks>
public static class SaneParser
{
    /// <summary>The RPC code of SANE_NET_START.</summary>
    public const uint NetStart = 7;

    /// <summary>SANE_STATUS_GOOD.</summary>
    public const uint StatusGood = 0;

    /// <summary>The size of a request word pair (RPC code, handle) and of the part of a reply read (status, port).</summary>
    public const int MessageLength = 8;

    /// <summary>Where the low 16 bits of the port word lie in a START reply (the bytes a rewrite replaces).</summary>
    public const int PortOffset = 6;

    /// <summary>Classifies a segment the client sent.</summary>
    public static SaneMessage ReadRequest(ReadOnlySpan<byte> payload)
    {
        // A request that is not exactly one code and one handle is something else (an open with a device name,
        // a control with a value); it neither starts nor ends the wait for a START reply.
        if (payload.Length != MessageLength)
        {
            return SaneMessage.Other;
        }

        return BinaryPrimitives.ReadUInt32BigEndian(payload) == NetStart ? SaneMessage.StartRequest : SaneMessage.OtherRequest;
    }

    /// <summary>Reads the server's reply to a START request.</summary>
    /// <param name="payload">The segment that answers the request.</param>
    /// <param name="port">The data connection's port, with <see cref="SaneMessage.StartGood"/>.</param>
    public static SaneMessage ReadStartReply(ReadOnlySpan<byte> payload, out ushort port)
    {
        port = 0;
        if (payload.Length < MessageLength)
        {
            return SaneMessage.StartMalformed;
        }

        if (BinaryPrimitives.ReadUInt32BigEndian(payload) != StatusGood)
        {
            return SaneMessage.StartRefused;
        }

        // The port is a 32-bit word: its high half must be zero.
        uint word = BinaryPrimitives.ReadUInt32BigEndian(payload.Slice(4));
        if (word is 0 or > ushort.MaxValue)
        {
            return SaneMessage.StartMalformed;
        }

        port = (ushort)word;
        return SaneMessage.StartGood;
    }
}
