using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Offload.Sdk;

namespace Offload.Engine.Conntrack;

/// <summary>The four addresses of an entry whose tuples do not fit its 12-byte IPv4 form (IPv6): one cache line.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AddressBlock
{
    public InetAddress OriginalSource;
    public InetAddress OriginalDestination;
    public InetAddress ReplySource;
    public InetAddress ReplyDestination;
}

/// <summary>
/// The address blocks of the connection table's IPv6 entries, so that IPv4 entries do not pay for IPv6 addresses:
/// by value in chunks allocated as they are needed and kept, no references, reused most recent first.
/// </summary>
internal sealed class AddressBlocks
{
    private const int ChunkShift = 12;
    private const int ChunkSize = 1 << ChunkShift;
    private const int ChunkMask = ChunkSize - 1;

    private AddressBlock[][] _chunks = [];
    private int[] _free = new int[16];
    private int _freeCount;
    private int _highWater;

    /// <summary>Blocks held by entries.</summary>
    public int InUse => _highWater - _freeCount;

    /// <summary>The memory of the blocks' chunks allocated so far.</summary>
    public long Bytes => (long)_chunks.Length * ChunkSize * Unsafe.SizeOf<AddressBlock>();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref AddressBlock At(uint index) =>
        ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_chunks[index >> ChunkShift]), (int)(index & ChunkMask));

    /// <summary>Takes a block; its contents are the caller's to set.</summary>
    public uint Take()
    {
        if (_freeCount > 0)
        {
            return (uint)_free[--_freeCount];
        }

        int index = _highWater++;
        if ((index >> ChunkShift) == _chunks.Length)
        {
            Array.Resize(ref _chunks, _chunks.Length + 1);
            _chunks[^1] = new AddressBlock[ChunkSize];
        }

        return (uint)index;
    }

    public void Give(uint index)
    {
        if (_freeCount == _free.Length)
        {
            Array.Resize(ref _free, _free.Length * 2);
        }

        _free[_freeCount++] = (int)index;
    }
}
