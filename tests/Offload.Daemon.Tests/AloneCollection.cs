using Xunit;

namespace Offload.Daemon.Tests;

/// <summary>
/// Tests run after the others and one class at a time: those that start processes (setpriv, python3, mkfifo, chown)
/// and compile plugins, whose CPU on a busy machine would push 50 ms call budgets over, and those that measure such
/// budgets (containment).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AloneCollection
{
    public const string Name = "alone";
}
