using System.Buffers;
using System.Buffers.Binary;
using Offload.Engine.Conntrack;

namespace Offload.Engine.Snapshot;

/// <summary>
/// The body of a snapshot while it is built: pooled chunks of 1 MiB (never one array of hundreds of megabytes), written
/// little-endian. Filled under the engine's lock, then hashed and written to disk outside it.
/// </summary>
internal sealed class SnapshotBuffer : IBufferWriter<byte>, IDisposable
{
    private const int ChunkSize = 1 << 20;
    private readonly List<(byte[] Array, int Used)> _chunks = [];
    private byte[] _current = [];
    private int _used;
    private long _completed;

    /// <summary>The bytes written so far.</summary>
    public long Length => _completed + _used;

    public void Advance(int count) => _used += count;

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(Math.Max(sizeHint, 1));
        return _current.AsMemory(_used);
    }

    public Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(Math.Max(sizeHint, 1));
        return _current.AsSpan(_used);
    }

    private void Ensure(int size)
    {
        if (_current.Length - _used >= size)
        {
            return;
        }

        if (_current.Length > 0)
        {
            _completed += _used;
            _chunks.Add((_current, _used));
        }

        _current = ArrayPool<byte>.Shared.Rent(Math.Max(ChunkSize, size));
        _used = 0;
    }

    /// <summary>The written bytes, chunk by chunk.</summary>
    public IEnumerable<ReadOnlyMemory<byte>> Segments()
    {
        foreach (var (array, used) in _chunks)
        {
            yield return array.AsMemory(0, used);
        }

        if (_used > 0)
        {
            yield return _current.AsMemory(0, _used);
        }
    }

    public void WriteByte(byte value)
    {
        GetSpan(1)[0] = value;
        _used++;
    }

    public void WriteUInt16(ushort value)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(GetSpan(2), value);
        _used += 2;
    }

    public void WriteUInt32(uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(GetSpan(4), value);
        _used += 4;
    }

    public void WriteInt32(int value) => WriteUInt32((uint)value);

    public void WriteInt64(long value)
    {
        BinaryPrimitives.WriteInt64LittleEndian(GetSpan(8), value);
        _used += 8;
    }

    public void WriteAddress(InetAddress address)
    {
        var span = GetSpan(16);
        BinaryPrimitives.WriteUInt64LittleEndian(span, address.High);
        BinaryPrimitives.WriteUInt64LittleEndian(span.Slice(8), address.Low);
        _used += 16;
    }

    public void WriteTuple(in ConnTuple tuple)
    {
        WriteByte(tuple.Family);
        WriteByte(tuple.Protocol);
        WriteAddress(tuple.Source);
        WriteUInt16(tuple.SourcePort);
        WriteAddress(tuple.Destination);
        WriteUInt16(tuple.DestinationPort);
    }

    /// <summary>A helper's name: its UTF-8 length in one byte, then the bytes; length 0 for none (or a name too long to keep).</summary>
    public void WriteName(string? name)
    {
        int count = name is null ? 0 : System.Text.Encoding.UTF8.GetByteCount(name);
        if (count is 0 or > byte.MaxValue)
        {
            WriteByte(0);
            return;
        }

        var span = GetSpan(1 + count);
        span[0] = (byte)count;
        System.Text.Encoding.UTF8.GetBytes(name, span.Slice(1));
        _used += 1 + count;
    }

    public void Write(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            var span = GetSpan(1);
            int n = Math.Min(span.Length, bytes.Length);
            bytes.Slice(0, n).CopyTo(span);
            _used += n;
            bytes = bytes.Slice(n);
        }
    }

    public void Dispose()
    {
        if (_current.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_current);
            _current = [];
        }

        foreach (var (array, _) in _chunks)
        {
            ArrayPool<byte>.Shared.Return(array);
        }

        _chunks.Clear();
    }
}
