using Offload.Engine.Expectations;
using Offload.Engine.Rewrite;

namespace Offload.Engine;

/// <summary>
/// Everything the engine reuses from packet to packet and that holds meaning for the current packet only: the payload
/// rewrites a helper queued, and the expectations its call announced. Kept apart from the shared state (table,
/// expectations, NAT, counters) so that it is plain which state one engine may never share with another: an engine
/// per queue has its own scratch, and nothing in here outlives the packet.
/// </summary>
internal sealed class PacketScratch(EngineCounters counters)
{
    /// <summary>Most expectations one helper call may announce and have withdrawn with its packet.</summary>
    private const int MaxCallExpectations = 16;

    // The expectations registered during the current helper call: withdrawn if the packet that announced them is
    // dropped (by the helper, or because its rewrite failed), since the peer never hears of them.
    private readonly Expectation?[] _callExpectations = new Expectation?[MaxCallExpectations];
    private int _callExpectationCount;

    public PayloadRewriter Rewrites { get; } = new(counters);

    /// <summary>Starts a helper call: nothing queued, nothing announced.</summary>
    public void BeginCall()
    {
        Rewrites.Clear();
        _callExpectationCount = 0;
    }

    /// <summary>Remembers an expectation the current call announced (beyond the bound, it simply stays if the packet is dropped).</summary>
    public void Announced(Expectation expectation)
    {
        if (_callExpectationCount < _callExpectations.Length)
        {
            _callExpectations[_callExpectationCount++] = expectation;
        }
    }

    /// <summary>Removes from the table what the current call announced: its packet will not reach the peer.</summary>
    public void WithdrawAnnounced(ExpectationTable expectations)
    {
        for (int i = 0; i < _callExpectationCount; i++)
        {
            expectations.Remove(_callExpectations[i]!);
        }

        ForgetAnnounced();
    }

    /// <summary>Keeps what the current call announced, and lets go of the references.</summary>
    public void ForgetAnnounced()
    {
        Array.Clear(_callExpectations, 0, _callExpectationCount);
        _callExpectationCount = 0;
    }
}
