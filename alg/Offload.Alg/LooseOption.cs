namespace Offload.Alg;

/// <summary>
/// The one option of the helpers that check announced addresses (ftp, irc): <c>options: { loose: true }</c>, the same
/// switch as the configuration's older <c>loose: true</c> (the kernel's <c>loose</c> module parameter).
/// </summary>
internal static class LooseOption
{
    /// <summary>The loose switch the options set, or <paramref name="current"/> when they do not name it.</summary>
    /// <exception cref="ArgumentException">Another option, or a value other than true or false.</exception>
    public static bool Read(ConntrackHelper helper, IReadOnlyDictionary<string, string> options, bool current)
    {
        ArgumentNullException.ThrowIfNull(options);
        foreach (var key in options.Keys)
        {
            if (key != "loose")
            {
                throw new ArgumentException($"helper '{helper.Name}' takes one option, loose (given: {key})");
            }
        }

        if (!options.TryGetValue("loose", out string? text))
        {
            return current;
        }

        return text switch
        {
            "true" => true,
            "false" => false,
            _ => throw new ArgumentException($"option loose: '{text}' is not true or false"),
        };
    }
}
