using System.Buffers.Binary;

namespace Offload.Engine.Conntrack.Tcp;

/// <summary>The options of a SYN or SYN/ACK that window tracking cares about.</summary>
public readonly struct TcpHandshakeOptions
{
    /// <summary>Creates the value.</summary>
    public TcpHandshakeOptions(bool hasWindowScale, byte windowScale, bool sackPermitted)
    {
        HasWindowScale = hasWindowScale;
        WindowScale = windowScale;
        SackPermitted = sackPermitted;
    }

    /// <summary>A well-formed window scale option (kind 3, length 3) was present.</summary>
    public bool HasWindowScale { get; }

    /// <summary>The shift count, already limited to <see cref="TcpOptions.MaxWindowScale"/>; 0 when absent.</summary>
    public byte WindowScale { get; }

    /// <summary>A well-formed SACK-permitted option (kind 4, length 2) was present.</summary>
    public bool SackPermitted { get; }
}

/// <summary>
/// Reads the TCP options that connection tracking uses. Every read is bounds-checked; on a malformed
/// option (length below 2, or running past the end) parsing stops and what was found so far stands,
/// which is how the kernel's tracker treats such segments: they are not rejected for it.
/// </summary>
public static class TcpOptions
{
    /// <summary>RFC 7323 caps the shift at 14; larger values are treated as 14.</summary>
    public const byte MaxWindowScale = 14;

    private const byte KindEndOfList = 0;
    private const byte KindNop = 1;
    private const byte KindWindowScale = 3;
    private const byte KindSackPermitted = 4;
    private const byte KindSack = 5;
    private const int SackBlockSize = 8;

    /// <summary>Finds window scale and SACK-permitted in the options of a SYN or SYN/ACK.</summary>
    public static TcpHandshakeOptions ParseHandshake(ReadOnlySpan<byte> options)
    {
        bool hasScale = false;
        byte scale = 0;
        bool sackPermitted = false;

        int i = 0;
        while (i < options.Length)
        {
            byte kind = options[i];
            if (kind == KindEndOfList)
            {
                break;
            }

            if (kind == KindNop)
            {
                i++;
                continue;
            }

            if (!TryOptionSize(options, i, out int size))
            {
                break;
            }

            if (kind == KindSackPermitted && size == 2)
            {
                sackPermitted = true;
            }
            else if (kind == KindWindowScale && size == 3)
            {
                hasScale = true;
                scale = Math.Min(options[i + 2], MaxWindowScale);
            }

            i += size;
        }

        return new TcpHandshakeOptions(hasScale, scale, sackPermitted);
    }

    /// <summary>
    /// Returns the highest right edge among the blocks of the first well-formed SACK option that lies
    /// after <paramref name="ack"/> (in sequence space), or <paramref name="ack"/> itself when there is none.
    /// </summary>
    /// <remarks>
    /// Only the first SACK option with a valid length (2 + 8n, n &gt;= 1) counts; a SACK option with a
    /// bad length is skipped over like any other unknown option.
    /// </remarks>
    public static uint HighestSackRightEdge(ReadOnlySpan<byte> options, uint ack)
    {
        int i = 0;
        while (i < options.Length)
        {
            byte kind = options[i];
            if (kind == KindEndOfList)
            {
                break;
            }

            if (kind == KindNop)
            {
                i++;
                continue;
            }

            if (!TryOptionSize(options, i, out int size))
            {
                break;
            }

            if (kind == KindSack && size >= 2 + SackBlockSize && (size - 2) % SackBlockSize == 0)
            {
                uint highest = ack;
                // Each block is (left edge, right edge); only the right edge can move the ACK bound.
                for (int block = i + 2; block < i + size; block += SackBlockSize)
                {
                    uint right = BinaryPrimitives.ReadUInt32BigEndian(options.Slice(block + 4, 4));
                    if (TcpSequence.After(right, highest))
                    {
                        highest = right;
                    }
                }

                return highest;
            }

            i += size;
        }

        return ack;
    }

    // The length byte counts kind and length themselves; anything below 2 or beyond the end is unusable.
    private static bool TryOptionSize(ReadOnlySpan<byte> options, int at, out int size)
    {
        if (options.Length - at < 2)
        {
            size = 0;
            return false;
        }

        size = options[at + 1];
        return size >= 2 && size <= options.Length - at;
    }
}
