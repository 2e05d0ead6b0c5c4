using System.Buffers.Binary;
using Offload.Engine.Conntrack;

namespace Offload.Engine.Snapshot;

/// <summary>
/// Reads a snapshot's body from a stream, little-endian, through a buffer. Reading past the body's end is a corrupt
/// snapshot (the counts in the header promised more), never an exception of another kind.
/// </summary>
internal sealed class SnapshotReader
{
    private readonly Stream _stream;
    private readonly byte[] _buffer;
    private long _remaining;
    private int _position;
    private int _filled;

    /// <param name="stream">Where the body is read from.</param>
    /// <param name="length">The body's length.</param>
    /// <param name="bufferSize">The read buffer, also the largest field (a replication datagram needs no more than itself).</param>
    public SnapshotReader(Stream stream, long length, int bufferSize = 64 * 1024)
    {
        _buffer = new byte[bufferSize];
        _stream = stream;
        _remaining = length;
    }

    /// <summary>Bytes of the body not read yet.</summary>
    public long Left => _remaining + (_filled - _position);

    private ReadOnlySpan<byte> Take(int count)
    {
        if (_filled - _position < count)
        {
            Refill(count);
        }

        var span = _buffer.AsSpan(_position, count);
        _position += count;
        return span;
    }

    private void Refill(int count)
    {
        int kept = _filled - _position;
        Buffer.BlockCopy(_buffer, _position, _buffer, 0, kept);
        _position = 0;
        _filled = kept;
        while (_filled < count)
        {
            int want = (int)Math.Min(_buffer.Length - _filled, _remaining);
            if (want <= 0)
            {
                throw new SnapshotException(SnapshotRefusal.Corrupt, "the body ends before its last record");
            }

            int n = _stream.Read(_buffer, _filled, want);
            if (n <= 0)
            {
                throw new SnapshotException(SnapshotRefusal.Truncated, "the file ends before its body");
            }

            _filled += n;
            _remaining -= n;
        }
    }

    public byte ReadByte() => Take(1)[0];

    public ushort ReadUInt16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2));

    public uint ReadUInt32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    public int ReadInt32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

    public long ReadInt64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    public InetAddress ReadAddress()
    {
        var span = Take(16);
        return new InetAddress(BinaryPrimitives.ReadUInt64LittleEndian(span), BinaryPrimitives.ReadUInt64LittleEndian(span.Slice(8)));
    }

    public ConnTuple ReadTuple()
    {
        byte family = ReadByte();
        byte protocol = ReadByte();
        if (family is not (4 or 6))
        {
            throw new SnapshotException(SnapshotRefusal.Corrupt, $"a tuple of address family {family}");
        }

        var source = ReadAddress();
        ushort sourcePort = ReadUInt16();
        var destination = ReadAddress();
        return new ConnTuple(family, protocol, source, sourcePort, destination, ReadUInt16());
    }

    public string? ReadName()
    {
        int length = ReadByte();
        return length == 0 ? null : System.Text.Encoding.UTF8.GetString(Take(length));
    }

    public ReadOnlySpan<byte> ReadBytes(int count)
    {
        if (count < 0 || count > _buffer.Length)
        {
            throw new SnapshotException(SnapshotRefusal.Corrupt, $"a field of {count} bytes");
        }

        return Take(count);
    }
}
