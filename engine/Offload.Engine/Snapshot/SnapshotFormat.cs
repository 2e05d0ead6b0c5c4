using System.Buffers.Binary;

namespace Offload.Engine.Snapshot;

/// <summary>
/// The layout of a snapshot file. A fixed header (all little-endian), then the body: every connection, then every
/// expectation. The header's SHA-256 covers the body; a file is taken whole or not at all.
/// </summary>
/// <remarks>
/// <code>
/// offset size
///   0     8   magic "OFLDSNAP"
///   8     4   format version (<see cref="Version"/>)
///  12     4   header length (<see cref="HeaderLength"/>)
///  16     8   wall-clock time of the capture, ns since 1970 (remaining times are relative to it)
///  24     8   body length in bytes
///  32     4   connections in the body
///  36     4   expectations in the body
///  40    32   SHA-256 of the body
///  72     4   flags: 1 = written on stop, after the queues stopped reading (exact); 0 = a checkpoint of a running daemon
///  76     4   reserved (0)
/// </code>
/// A newer daemon reads the versions it knows; an older one refuses a newer version whole (and starts empty).
/// </remarks>
public static class SnapshotFormat
{
    /// <summary>The format this build writes (and the newest it reads).</summary>
    public const int Version = 1;

    /// <summary>The size of the header.</summary>
    public const int HeaderLength = 80;

    /// <summary>The magic at the start of every snapshot.</summary>
    public static ReadOnlySpan<byte> Magic => "OFLDSNAP"u8;

    internal const byte RecordTcp = 1;
    internal const byte RecordExtras = 2;
    internal const int NoState = -1;
    internal const int MaxHelperState = 64 * 1024;

    internal const int FlagFinal = 1;

    internal readonly record struct Header(int Version, long WrittenAtUnixNanoseconds, long BodyLength, int Connections, int Expectations, byte[] Sha256, int Flags);

    internal static void WriteHeader(Span<byte> destination, in Header header)
    {
        destination.Slice(0, HeaderLength).Clear();
        Magic.CopyTo(destination);
        BinaryPrimitives.WriteInt32LittleEndian(destination.Slice(8), header.Version);
        BinaryPrimitives.WriteInt32LittleEndian(destination.Slice(12), HeaderLength);
        BinaryPrimitives.WriteInt64LittleEndian(destination.Slice(16), header.WrittenAtUnixNanoseconds);
        BinaryPrimitives.WriteInt64LittleEndian(destination.Slice(24), header.BodyLength);
        BinaryPrimitives.WriteInt32LittleEndian(destination.Slice(32), header.Connections);
        BinaryPrimitives.WriteInt32LittleEndian(destination.Slice(36), header.Expectations);
        header.Sha256.CopyTo(destination.Slice(40, 32));
        BinaryPrimitives.WriteInt32LittleEndian(destination.Slice(72), header.Flags);
    }

    /// <summary>Reads and checks a header. Throws <see cref="SnapshotException"/> when it is not one this build reads.</summary>
    internal static Header ReadHeader(ReadOnlySpan<byte> source, long fileLength)
    {
        if (source.Length < HeaderLength)
        {
            throw new SnapshotException(SnapshotRefusal.Truncated, $"{source.Length} bytes, shorter than a header");
        }

        if (!source.StartsWith(Magic))
        {
            throw new SnapshotException(SnapshotRefusal.Foreign, "not a snapshot of offloadd (wrong magic)");
        }

        int version = BinaryPrimitives.ReadInt32LittleEndian(source.Slice(8));
        if (version != Version)
        {
            throw new SnapshotException(SnapshotRefusal.Incompatible, $"format version {version}, this build reads {Version}");
        }

        int headerLength = BinaryPrimitives.ReadInt32LittleEndian(source.Slice(12));
        long body = BinaryPrimitives.ReadInt64LittleEndian(source.Slice(24));
        int connections = BinaryPrimitives.ReadInt32LittleEndian(source.Slice(32));
        int expectations = BinaryPrimitives.ReadInt32LittleEndian(source.Slice(36));
        if (headerLength != HeaderLength || body < 0 || connections < 0 || expectations < 0)
        {
            throw new SnapshotException(SnapshotRefusal.Corrupt, "header fields out of range");
        }

        if (fileLength != HeaderLength + body)
        {
            throw new SnapshotException(
                fileLength < HeaderLength + body ? SnapshotRefusal.Truncated : SnapshotRefusal.Corrupt,
                $"the header announces {HeaderLength + body} bytes, the file has {fileLength}");
        }

        return new Header(version, BinaryPrimitives.ReadInt64LittleEndian(source.Slice(16)), body, connections, expectations, source.Slice(40, 32).ToArray(), BinaryPrimitives.ReadInt32LittleEndian(source.Slice(72)));
    }
}

/// <summary>Why a snapshot was refused.</summary>
public enum SnapshotRefusal
{
    /// <summary>Not a snapshot of offloadd at all.</summary>
    Foreign,

    /// <summary>Written in a format version this build does not read (a newer one, as a rule).</summary>
    Incompatible,

    /// <summary>Shorter than its header says: a write that did not finish, a disk that filled.</summary>
    Truncated,

    /// <summary>The checksum, or the structure of the body, is wrong.</summary>
    Corrupt,

    /// <summary>Well formed, but it does not fit this engine (more connections or expectations than it holds).</summary>
    TooLarge,
}

/// <summary>A snapshot that is not loaded, and why. The engine is left as it was (empty).</summary>
public sealed class SnapshotException : Exception
{
    /// <summary>A refusal with its reason.</summary>
    public SnapshotException(SnapshotRefusal reason, string message)
        : base(message) => Reason = reason;

    /// <summary>A refusal with its reason and the error under it.</summary>
    public SnapshotException(SnapshotRefusal reason, string message, Exception inner)
        : base(message, inner) => Reason = reason;

    /// <summary>Why.</summary>
    public SnapshotRefusal Reason { get; }
}
