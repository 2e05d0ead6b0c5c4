using System.Buffers;
using System.Buffers.Binary;

namespace Offload.Sdk;

/// <summary>
/// (1.1) Where, in each direction of a TCP connection, the next segment would start a line (or a message): the sequence
/// numbers right after the last line ends seen (the kernel's FTP helper keeps them as <c>seq_aft_nl</c>). A text-protocol
/// helper reads a segment as commands only when it starts at such a position, so that a command can never be forged in
/// the middle of a line (a file name, a chat message, a body) that a segment boundary split. Two positions per direction,
/// enough to survive one retransmission; a newer position replaces the older. Keep one per connection in the helper's
/// state (<see cref="HelperContext.GetState{T}"/>); it allocates nothing after it is made.
/// </summary>
public sealed class LineStarts
{
    /// <summary>The length of what <see cref="WriteTo"/> writes: per direction a count (a byte) and two positions (32 bits each, little-endian).</summary>
    public const int SavedLength = 2 * (1 + 8);

    private readonly uint[] _positions = new uint[4];
    private readonly byte[] _count = new byte[2];

    /// <summary>True when a segment of <paramref name="direction"/> whose first byte has <paramref name="sequence"/> starts a line.</summary>
    /// <param name="direction">The segment's direction.</param>
    /// <param name="sequence">Its first byte's sequence number (<see cref="HelperContext.TcpSequence"/>).</param>
    public bool IsAt(ConnDirection direction, uint sequence)
    {
        int d = (int)direction & 1;
        for (int i = 0; i < _count[d]; i++)
        {
            if (_positions[(d * 2) + i] == sequence)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>How many positions of <paramref name="direction"/> are known (0 to 2).</summary>
    /// <param name="direction">A direction.</param>
    public int Known(ConnDirection direction) => _count[(int)direction & 1];

    /// <summary>Remembers that a line starts at <paramref name="sequence"/> in <paramref name="direction"/> (the older of two known positions gives way, unless it is newer).</summary>
    /// <param name="direction">A direction.</param>
    /// <param name="sequence">The sequence number of the byte after a line's end.</param>
    public void Remember(ConnDirection direction, uint sequence)
    {
        int d = (int)direction & 1;
        if (IsAt(direction, sequence))
        {
            return;
        }

        int n = _count[d];
        if (n < 2)
        {
            _positions[(d * 2) + n] = sequence;
            _count[d] = (byte)(n + 1);
            return;
        }

        int oldest = (int)(_positions[d * 2] - _positions[(d * 2) + 1]) < 0 ? 0 : 1;
        if ((int)(sequence - _positions[(d * 2) + oldest]) > 0)
        {
            _positions[(d * 2) + oldest] = sequence;
        }
    }

    /// <summary>When <paramref name="payload"/> ends a line (its last byte is a newline), remembers that the next segment starts one.</summary>
    /// <param name="direction">The segment's direction.</param>
    /// <param name="sequence">Its first byte's sequence number.</param>
    /// <param name="payload">Its payload.</param>
    public void RememberIfLineEnds(ConnDirection direction, uint sequence, ReadOnlySpan<byte> payload)
    {
        if (!payload.IsEmpty && payload[^1] == (byte)'\n')
        {
            Remember(direction, sequence + (uint)payload.Length);
        }
    }

    /// <summary>Writes the positions (<see cref="SavedLength"/> bytes), for <see cref="ConntrackHelper.SaveState"/>.</summary>
    /// <param name="writer">Where to write.</param>
    public void WriteTo(IBufferWriter<byte> writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        var span = writer.GetSpan(SavedLength);
        for (int d = 0; d < 2; d++)
        {
            span[d * 9] = _count[d];
            BinaryPrimitives.WriteUInt32LittleEndian(span.Slice((d * 9) + 1), _positions[d * 2]);
            BinaryPrimitives.WriteUInt32LittleEndian(span.Slice((d * 9) + 5), _positions[(d * 2) + 1]);
        }

        writer.Advance(SavedLength);
    }

    /// <summary>Reads what <see cref="WriteTo"/> wrote, for <see cref="ConntrackHelper.RestoreState"/>; null when the length or a count is impossible.</summary>
    /// <param name="data">The bytes.</param>
    public static LineStarts? ReadFrom(ReadOnlySpan<byte> data)
    {
        if (data.Length != SavedLength || data[0] > 2 || data[9] > 2)
        {
            return null;
        }

        var starts = new LineStarts();
        for (int d = 0; d < 2; d++)
        {
            starts._count[d] = data[d * 9];
            starts._positions[d * 2] = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice((d * 9) + 1));
            starts._positions[(d * 2) + 1] = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice((d * 9) + 5));
        }

        return starts;
    }
}
