using Offload.Alg.Ftp;

namespace Offload.Alg;

/// <summary>The helpers that ship with Offload, by the names the configuration uses.</summary>
public static class BuiltInHelpers
{
    /// <summary>The names of the built-in helpers.</summary>
    public static IReadOnlyList<string> Names { get; } = ["ftp"];

    /// <summary>Creates a built-in helper, or returns null when the name is not one.</summary>
    public static ConntrackHelper? Create(string name, bool loose) => name switch
    {
        "ftp" => new FtpHelper(loose),
        _ => null,
    };
}
