using Xunit;

namespace Offload.Daemon.Tests;

/// <summary>
/// Tests that start processes (setpriv, python3, mkfifo, chown) and compile plugins, run after the others and alone:
/// on a busy machine their CPU would push the 50 ms call budgets of the containment and lifecycle tests over.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AloneCollection
{
    public const string Name = "alone";
}
