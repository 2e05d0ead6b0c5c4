using Offload.Interop.Tests.Headers;
using Xunit;

namespace Offload.Interop.Tests.Support;

/// <summary>
/// A test that needs the real kernel as root: network namespaces, iptables, NFQUEUE. Skipped, with the reason,
/// anywhere else, so a developer without root still gets a green run that says what it did not check.
/// </summary>
public sealed class LinuxRootFactAttribute : FactAttribute
{
    public LinuxRootFactAttribute()
    {
        Skip = Lab.WhyUnavailable();
    }
}

/// <summary>A test that compiles C against the kernel's headers; skipped when cc or the headers are missing.</summary>
public sealed class CcFactAttribute : FactAttribute
{
    public CcFactAttribute()
    {
        Skip = HeaderProbe.WhyUnavailable();
    }
}
