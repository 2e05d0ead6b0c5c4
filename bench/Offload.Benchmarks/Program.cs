using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using Offload.Benchmarks;

// dotnet run -c Release --project bench/Offload.Benchmarks -- --filter '*'           every benchmark, BenchmarkDotNet's default job
// dotnet run -c Release --project bench/Offload.Benchmarks -- --quick --filter '*'   a few fixed iterations (minutes on 2 cores)
// dotnet run -c Release --project bench/Offload.Benchmarks -- --memory [N]          bytes per tracked connection (N, default 1,000,000)
// dotnet run -c Release --project bench/Offload.Benchmarks -- --snapshot [N] [DIR]  the state snapshot: capture, write, load (N default 1,000,000; DIR default /tmp)
// Other arguments go to BenchmarkDotNet (--list flat, --filter '*Ftp*', --join, ...).
if (args.Length > 0 && args[0] == "--memory")
{
    int connections = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : MemoryPerConnection.DefaultConnections;
    return MemoryPerConnection.Run(connections);
}

if (args.Length > 0 && args[0] == "--snapshot")
{
    int connections = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : MemoryPerConnection.DefaultConnections;
    return SnapshotCost.Run(connections, args.Length > 2 ? args[2] : Path.GetTempPath());
}

bool quick = args.Contains("--quick");
args = [.. args.Where(a => a != "--quick")];

var job = quick
    ? Job.Default.WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(9).WithId("Quick")
    : Job.Default;

var config = DefaultConfig.Instance
    .AddJob(job.AsDefault())
    .AddDiagnoser(MemoryDiagnoser.Default)
    .AddColumn(StatisticColumn.Median, StatisticColumn.Min, new PacketsPerSecondColumn())
    .WithOptions(ConfigOptions.DisableLogFile)
    .WithBuildTimeout(TimeSpan.FromMinutes(10)); // a loaded lab machine builds the boilerplate slowly

var summaries = BenchmarkSwitcher.FromAssembly(typeof(Lab).Assembly).Run(args, config);

// A benchmark whose set-up check failed (a packet dropped, a PORT not rewritten) must not pass unnoticed in a script.
return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
