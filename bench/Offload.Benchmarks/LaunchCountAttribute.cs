using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Jobs;

namespace Offload.Benchmarks;

/// <summary>How many processes measure each benchmark of a class (BenchmarkDotNet has no attribute for it).</summary>
[AttributeUsage(AttributeTargets.Class)]
internal sealed class LaunchCountAttribute(int launchCount) : JobMutatorConfigBaseAttribute(Job.Default.WithLaunchCount(launchCount))
{
}
