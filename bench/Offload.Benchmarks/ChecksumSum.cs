using BenchmarkDotNet.Attributes;
using Offload.Engine.Packets;

namespace Offload.Benchmarks;

/// <summary>
/// The Internet checksum of a run of bytes (<see cref="Checksum.Add"/>), as verification sums every packet's payload:
/// the engine's (native-order 32-bit words, 16 bytes a step in vectors) beside the word-by-word loop it replaced
/// (64-bit big-endian words with a carry test each, kept for big-endian machines), the baseline.
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
        if (Checksum.Fold(Checksum.Add(0, _data)) != Checksum.Fold(Checksum.AddBigEndianWords(0, _data)))
        {
            throw new InvalidOperationException("The two sums differ.");
        }
    }

    [Benchmark(Baseline = true)]
    public ushort WordByWord() => Checksum.Fold(Checksum.AddBigEndianWords(0, _data));

    [Benchmark]
    public ushort Engine() => Checksum.Fold(Checksum.Add(0, _data));
}
