using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using Offload.Engine;

namespace Offload.Benchmarks;

/// <summary>
/// What reading the engine's clock costs: PREROUTING reads it once per packet (and an expectation once
/// more), so it is part of every number above. The baseline is the raw monotonic timestamp.
/// </summary>
public class ClockRead
{
    private readonly IClock _clock = SystemClock.Instance;

    [Benchmark(Baseline = true)]
    public long StopwatchTimestamp() => Stopwatch.GetTimestamp();

    /// <summary>Through the interface, with the conversion to nanoseconds, as the engine reads it.</summary>
    [Benchmark]
    public long SystemClockNanoseconds() => _clock.NowNanoseconds;

    /// <summary>A coarse clock (milliseconds; CLOCK_MONOTONIC_COARSE on Linux), for comparison: what a jiffies-like clock would cost.</summary>
    [Benchmark]
    public long CoarseTickCount() => Environment.TickCount64;
}
