using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Offload.Daemon.Replication;

/// <summary>The kinds of replication datagrams (conntrackd's FTFW has the same, under other names).</summary>
internal enum MessageType : byte
{
    /// <summary>Records (connections, expectations); sequenced, acknowledged, resent.</summary>
    Data = 1,

    /// <summary>Every data sequence number up to the one given was received in order (cumulative).</summary>
    Ack = 2,

    /// <summary>A gap: resend from the sequence number given.</summary>
    Nack = 3,

    /// <summary>The sender (re)started: tell me where your data stream is, and resync me if you are active.</summary>
    Hello = 4,

    /// <summary>The answer to a HELLO: it echoes the asker's epoch and gives the next data sequence number.</summary>
    HelloReply = 5,

    /// <summary>Every second: I am here, my role, and the oldest and next data sequence numbers I hold (lost tails show).</summary>
    Alive = 6,
}

/// <summary>
/// A replication datagram, on the wire. Network byte order.
/// <code>
/// offset size
///   0     4   magic "OFRP"
///   4     1   version (1)
///   5     1   type (<see cref="MessageType"/>)
///   6     2   reserved (0)
///   8     4   sender id (derived from the sender's sync address and port: a datagram reflected back is refused)
///  12     8   sender epoch (its start time in ns: a restarted peer has a larger one)
///  20     4   sequence number (data: the data stream's; other types: a control counter of their own)
///  24     2   body length
///  26     2   reserved (0)
///  28     n   body
///  28+n  32   HMAC-SHA256 of bytes 0 .. 28+n, keyed by the shared secret
/// </code>
/// Bodies: ACK, NACK: the receiver's epoch (8) and a sequence number (4). HELLO: none. HELLO reply: the asker's epoch
/// (8), the next data sequence number (4). ALIVE: the receiver's epoch as known (8), oldest held (4), next (4), role (1).
/// DATA: records (<see cref="Offload.Engine.Replication.ReplicationBatch"/>).
/// </summary>
internal static class ReplicationWire
{
    public const int HeaderLength = 28;
    public const int MacLength = 32;
    public const byte Version = 1;

    /// <summary>The largest datagram sent or accepted: a few fragments on a 1500-byte link, a handful of connections.</summary>
    public const int MaxDatagram = 8192;

    /// <summary>The room for records in one datagram.</summary>
    public const int MaxBody = MaxDatagram - HeaderLength - MacLength;

    public static ReadOnlySpan<byte> Magic => "OFRP"u8;

    /// <summary>A node's id on the wire: a hash of its sync endpoint, so that the two ends of a link differ.</summary>
    public static uint SenderId(System.Net.IPEndPoint endpoint)
    {
        Span<byte> bytes = stackalloc byte[18];
        endpoint.Address.TryWriteBytes(bytes, out int written);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.Slice(written), (ushort)endpoint.Port);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(bytes.Slice(0, written + 2), hash);
        return BinaryPrimitives.ReadUInt32BigEndian(hash);
    }

    /// <summary>Writes header, body (already at <see cref="HeaderLength"/>) and MAC. Returns the datagram's length.</summary>
    public static int Seal(Span<byte> datagram, ReadOnlySpan<byte> key, MessageType type, uint sender, long epoch, uint seq, int bodyLength)
    {
        Magic.CopyTo(datagram);
        datagram[4] = Version;
        datagram[5] = (byte)type;
        BinaryPrimitives.WriteUInt16BigEndian(datagram.Slice(6), 0);
        BinaryPrimitives.WriteUInt32BigEndian(datagram.Slice(8), sender);
        BinaryPrimitives.WriteInt64BigEndian(datagram.Slice(12), epoch);
        BinaryPrimitives.WriteUInt32BigEndian(datagram.Slice(20), seq);
        BinaryPrimitives.WriteUInt16BigEndian(datagram.Slice(24), checked((ushort)bodyLength));
        BinaryPrimitives.WriteUInt16BigEndian(datagram.Slice(26), 0);
        int signed = HeaderLength + bodyLength;
        HMACSHA256.HashData(key, datagram.Slice(0, signed), datagram.Slice(signed, MacLength));
        return signed + MacLength;
    }

    /// <summary>
    /// Checks a received datagram: length, magic, version, the MAC (in constant time). Returns why it is refused, or
    /// <see cref="Refusal.None"/> with its header.
    /// </summary>
    public static Refusal Open(ReadOnlySpan<byte> datagram, ReadOnlySpan<byte> key, out Header header)
    {
        header = default;
        if (datagram.Length > MaxDatagram)
        {
            return Refusal.Oversized;
        }

        if (datagram.Length < HeaderLength + MacLength)
        {
            return Refusal.Truncated;
        }

        if (!datagram.StartsWith(Magic) || datagram[4] != Version)
        {
            return Refusal.Foreign;
        }

        int body = BinaryPrimitives.ReadUInt16BigEndian(datagram.Slice(24));
        if (HeaderLength + body + MacLength != datagram.Length)
        {
            return HeaderLength + body + MacLength > datagram.Length ? Refusal.Truncated : Refusal.Malformed;
        }

        Span<byte> mac = stackalloc byte[MacLength];
        HMACSHA256.HashData(key, datagram.Slice(0, HeaderLength + body), mac);
        if (!CryptographicOperations.FixedTimeEquals(mac, datagram.Slice(HeaderLength + body, MacLength)))
        {
            return Refusal.BadKey;
        }

        header = new Header(
            (MessageType)datagram[5],
            BinaryPrimitives.ReadUInt32BigEndian(datagram.Slice(8)),
            BinaryPrimitives.ReadInt64BigEndian(datagram.Slice(12)),
            BinaryPrimitives.ReadUInt32BigEndian(datagram.Slice(20)),
            body);
        return Refusal.None;
    }

    /// <summary>An authenticated datagram's header.</summary>
    public readonly record struct Header(MessageType Type, uint Sender, long Epoch, uint Seq, int BodyLength);
}

/// <summary>Why a received datagram was not applied. Each is counted (<c>offloadctl replication status</c>).</summary>
internal enum Refusal
{
    None,

    /// <summary>Shorter than a header and a MAC, or than its header says.</summary>
    Truncated,

    /// <summary>Larger than <see cref="ReplicationWire.MaxDatagram"/>.</summary>
    Oversized,

    /// <summary>Not ours (magic or version).</summary>
    Foreign,

    /// <summary>The MAC does not match: another key, or altered on the way.</summary>
    BadKey,

    /// <summary>Authenticated, but from this node itself (reflected) or from another node than the configured peer.</summary>
    WrongSender,

    /// <summary>An old epoch, or a sequence number already seen: a replay (or a duplicate).</summary>
    Replayed,

    /// <summary>A data sequence number beyond the expected one (a gap): refused, and the gap NACKed.</summary>
    OutOfOrder,

    /// <summary>A data sequence number too far ahead to be a gap.</summary>
    OutOfWindow,

    /// <summary>From an epoch no HELLO settled yet (the peer restarted): a HELLO is sent.</summary>
    Unsynced,

    /// <summary>Authenticated, but its body or a record in it is not well formed.</summary>
    Malformed,

    /// <summary>Beyond the rate a peer may send at (a flood).</summary>
    RateLimited,
}
