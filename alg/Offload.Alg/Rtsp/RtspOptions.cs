namespace Offload.Alg.Rtsp;

/// <summary>
/// The rtsp helper's <c>options:</c>: <c>any-source</c> (true or false). By default media is expected only from the
/// RTSP server (and from a <c>source=</c> its answer names), as the out-of-tree module pins it; true accepts media from
/// any address, as some vendors' versions of the module do for media servers apart from the RTSP server.
/// </summary>
internal sealed record RtspOptions(bool AnySource)
{
    public static RtspOptions Default { get; } = new(false);

    /// <summary>Reads the options over <paramref name="current"/>.</summary>
    /// <exception cref="ArgumentException">An unknown option, or a value other than true or false.</exception>
    public static RtspOptions Read(IReadOnlyDictionary<string, string> options, RtspOptions current)
    {
        ArgumentNullException.ThrowIfNull(options);
        var result = current;
        foreach (var (key, text) in options)
        {
            if (key != "any-source")
            {
                throw new ArgumentException($"helper 'rtsp' takes one option, any-source (given: {key})");
            }

            result = text switch
            {
                "true" => result with { AnySource = true },
                "false" => result with { AnySource = false },
                _ => throw new ArgumentException($"option any-source: '{text}' is not true or false"),
            };
        }

        return result;
    }
}
