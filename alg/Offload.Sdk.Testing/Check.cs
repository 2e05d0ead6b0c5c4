namespace Offload.Sdk.Testing;

/// <summary>
/// A check of the rig failed: the packet was dropped, a checksum is wrong... Thrown instead of a test framework's own
/// assertion so that the rig works under any runner (xunit, NUnit, MSTest report any exception as a failure).
/// </summary>
public sealed class RigAssertionException : Exception
{
    /// <summary>A failed check, with what was wrong.</summary>
    /// <param name="message">What was expected and what was found.</param>
    public RigAssertionException(string message)
        : base(message)
    {
    }

    /// <summary>A failed check (for serializers; the rig always gives a message).</summary>
    public RigAssertionException()
    {
    }

    /// <summary>A failed check caused by another exception.</summary>
    /// <param name="message">What was expected.</param>
    /// <param name="innerException">What went wrong instead.</param>
    public RigAssertionException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>The rig's own checks: throw <see cref="RigAssertionException"/> with a message naming what failed.</summary>
internal static class Check
{
    public static void That(bool condition, string message)
    {
        if (!condition)
        {
            throw new RigAssertionException(message);
        }
    }

    public static void Equal(int expected, int actual, string what)
    {
        if (expected != actual)
        {
            throw new RigAssertionException($"{what}: expected {expected}, found {actual}");
        }
    }
}
