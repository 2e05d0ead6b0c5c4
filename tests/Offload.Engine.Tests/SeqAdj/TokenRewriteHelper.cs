using System.Text;
using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;

// Not "...Tests.SeqAdj": a namespace of that name would hide the engine's SeqAdj class from every test namespace.
namespace Offload.Engine.Tests.SequenceAdjustment;

/// <summary>
/// A helper that replaces every occurrence of a token in the payloads of one or both directions, as an ALG
/// replaces an address in a command: the simplest way to make the engine change a payload's length.
/// </summary>
internal sealed class TokenRewriteHelper : ConntrackHelper
{
    private readonly byte[] _token;
    private readonly byte[] _replacement;

    public TokenRewriteHelper(string token, string replacement)
        : base("rewrite", new ExpectationPolicy(1, TimeSpan.FromMinutes(1)))
    {
        _token = Encoding.ASCII.GetBytes(token);
        _replacement = Encoding.ASCII.GetBytes(replacement);
    }

    public bool InOriginal { get; init; } = true;

    public bool InReply { get; init; }

    /// <summary>Rewrites the engine refused to queue.</summary>
    public int Refused { get; private set; }

    public int Calls { get; private set; }

    public override HelperVerdict Help(ref HelperContext context)
    {
        Calls++;
        if (context.Direction == ConnDirection.Original ? !InOriginal : !InReply)
        {
            return HelperVerdict.Accept;
        }

        var payload = context.Payload;
        int at = 0;
        while (at < payload.Length)
        {
            int found = payload.Slice(at).IndexOf(_token);
            if (found < 0)
            {
                break;
            }

            if (!context.Rewrite(at + found, _token.Length, _replacement))
            {
                Refused++;
            }

            at += found + _token.Length;
        }

        return HelperVerdict.Accept;
    }
}
