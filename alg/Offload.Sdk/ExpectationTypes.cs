namespace Offload.Sdk;

/// <summary>Why an expectation was not registered.</summary>
public enum ExpectResult : byte
{
    /// <summary>Registered.</summary>
    Added,

    /// <summary>Another master already expects a connection that could match this one (the kernel's -EBUSY).</summary>
    Clash,

    /// <summary>The master has as many outstanding as its helper's policy allows, and none could be evicted.</summary>
    TooMany,

    /// <summary>The global expectation limit is reached.</summary>
    TableFull,

    /// <summary>No port was free for a translated expectation.</summary>
    NoFreePort,
}

/// <summary>How many expectations a helper may keep outstanding per master and class, and for how long.</summary>
/// <param name="MaxExpected">Outstanding expectations per master and class; a new one evicts the oldest beyond it.</param>
/// <param name="Timeout">How long an expectation waits for its connection.</param>
public readonly record struct ExpectationPolicy(int MaxExpected, TimeSpan Timeout);

/// <summary>Flags of an expectation, as the kernel's NF_CT_EXPECT_*.</summary>
[Flags]
public enum ExpectationFlags : byte
{
    /// <summary>An ordinary expectation: one connection fulfils it.</summary>
    None = 0,

    /// <summary>Stays after a connection matched it, until it times out or its master dies.</summary>
    Permanent = 1,

    /// <summary>Registered but not matched yet (a helper arms it later).</summary>
    Inactive = 2,
}

/// <summary>
/// (1.1) One class of expectations a helper declares (the kernel's <c>nf_conntrack_expect_policy</c>): a name for
/// listings, how many a master may keep outstanding, and how long each waits. A helper passes its classes to
/// <see cref="ConntrackHelper(string, IReadOnlyList{ExpectationClass})"/>; an expectation's
/// <see cref="ExpectationRequest.Class"/> is the index of its class in that list.
/// </summary>
/// <param name="Name">Shown by <c>offloadctl expect list</c> (<c>class=audio</c>), as the kernel shows <c>sip/audio</c>.</param>
/// <param name="MaxExpected">Outstanding expectations of this class per master; a new one evicts the master's oldest of the class beyond it.</param>
/// <param name="Timeout">How long an expectation of this class waits for its connection.</param>
public readonly record struct ExpectationClass(string Name, int MaxExpected, TimeSpan Timeout)
{
    /// <summary>The class's limit and timeout as an <see cref="ExpectationPolicy"/>.</summary>
    public ExpectationPolicy Policy => new(MaxExpected, Timeout);
}
