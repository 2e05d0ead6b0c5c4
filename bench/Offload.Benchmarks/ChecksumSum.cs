using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using Offload.Engine.Packets;

namespace Offload.Benchmarks;

/// <summary>
/// The Internet checksum of a run of bytes (<see cref="Checksum.Add"/>), as verification sums every packet's payload:
/// the engine's (native-order 32-bit words, 16 bytes a step in vectors) beside the word-by-word loop it replaced
/// (64-bit big-endian words with a carry test each), the baseline.
/// </summary>
public class ChecksumSum
{
    private byte[] _data = null!;

    [Params(104, 1500, 9000)]
    public int Length { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _data = new byte[Length];
        new Random(1071).NextBytes(_data);
        if (Checksum.Fold(Checksum.Add(0, _data)) != Checksum.Fold(BigEndianWords(0, _data)))
        {
            throw new InvalidOperationException("The two sums differ.");
        }
    }

    [Benchmark(Baseline = true)]
    public ushort WordByWord() => Checksum.Fold(BigEndianWords(0, _data));

    [Benchmark]
    public ushort Engine() => Checksum.Fold(Checksum.Add(0, _data));

    /// <summary>The engine's loop before 2026-12-03.</summary>
    private static ulong BigEndianWords(ulong sum, ReadOnlySpan<byte> data)
    {
        int i = 0;
        for (; i + 8 <= data.Length; i += 8)
        {
            ulong word = BinaryPrimitives.ReadUInt64BigEndian(data.Slice(i, 8));
            sum += word;
            if (sum < word)
            {
                sum++;
            }
        }

        ulong tail = 0;
        for (; i + 2 <= data.Length; i += 2)
        {
            tail += BinaryPrimitives.ReadUInt16BigEndian(data.Slice(i, 2));
        }

        if (i < data.Length)
        {
            tail += (ulong)data[i] << 8;
        }

        sum += tail;
        return sum < tail ? sum + 1 : sum;
    }
}
