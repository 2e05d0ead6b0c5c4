namespace Offload.Alg.Sip;

/// <summary>
/// The sip helper's <c>options:</c>: <c>pinhole-only</c> (expect, never rewrite), and the kernel's module parameters
/// <c>direct-media</c> (sip_direct_media) and <c>direct-signalling</c> (sip_direct_signalling), each true or false.
/// </summary>
internal readonly record struct SipOptions(bool PinholeOnly, bool DirectMedia, bool DirectSignalling)
{
    /// <summary>The kernel's defaults: media and signalling only from the peer that signalled them; rewriting on.</summary>
    public static SipOptions Default => new(false, true, true);

    /// <summary>Reads the options over <paramref name="current"/>.</summary>
    /// <exception cref="ArgumentException">An unknown option, or a value other than true or false.</exception>
    public static SipOptions Read(IReadOnlyDictionary<string, string> options, SipOptions current)
    {
        ArgumentNullException.ThrowIfNull(options);
        var result = current;
        foreach (var (key, text) in options)
        {
            bool value = text switch
            {
                "true" => true,
                "false" => false,
                _ => throw new ArgumentException($"option {key}: '{text}' is not true or false"),
            };
            result = key switch
            {
                "pinhole-only" => result with { PinholeOnly = value },
                "direct-media" => result with { DirectMedia = value },
                "direct-signalling" => result with { DirectSignalling = value },
                _ => throw new ArgumentException($"helper 'sip' takes the options pinhole-only, direct-media and direct-signalling (given: {key})"),
            };
        }

        return result;
    }
}
