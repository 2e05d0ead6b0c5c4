using Offload.Engine.Conntrack;

namespace Offload.Engine.Hosting;

/// <summary>
/// What a helper's actions do, on this engine. Each action runs in a <c>finally</c> block: a plugin aborted at its
/// time budget is stopped between actions, never in the middle of one (the runtime does not interrupt a finally).
/// </summary>
internal sealed class EngineHelperHost(HelperDispatch dispatch) : HelperHost
{
    internal override long NowNanoseconds => dispatch.NowNanoseconds;

    internal override object? GetState(object connection) => ((Connection)connection).Extras?.HelperState;

    internal override void SetState(object connection, object? state)
    {
        try
        {
        }
        finally
        {
            ((Connection)connection).EnsureExtras().HelperState = state;
        }
    }

    internal override ExpectResult Expect(object connection, ConnDirection direction, ref ExpectationRequest request)
    {
        var result = ExpectResult.TableFull;
        try
        {
        }
        finally
        {
            result = dispatch.Expect((Connection)connection, direction, ref request);
        }

        return result;
    }

    internal override int Unexpect(object connection, int expectationClass)
    {
        int removed = 0;
        try
        {
        }
        finally
        {
            removed = dispatch.Unexpect((Connection)connection, expectationClass);
        }

        return removed;
    }

    internal override ExpectResult ExpectPair(object connection, ConnDirection direction, ref ExpectationRequest request)
    {
        var result = ExpectResult.TableFull;
        try
        {
        }
        finally
        {
            result = dispatch.ExpectPair((Connection)connection, direction, ref request);
        }

        return result;
    }

    internal override bool Unexpect(object connection, in ExpectationRequest request)
    {
        bool removed = false;
        try
        {
        }
        finally
        {
            removed = dispatch.Unexpect((Connection)connection, in request);
        }

        return removed;
    }

    internal override int CountExpected(object connection, int expectationClass) => dispatch.CountExpected((Connection)connection, expectationClass);

    internal override bool QueueRewrite(int payloadLength, int payloadOffset, int length, ReadOnlySpan<byte> replacement)
    {
        bool queued = false;
        try
        {
        }
        finally
        {
            queued = dispatch.QueueRewrite(payloadLength, payloadOffset, length, replacement);
        }

        return queued;
    }

    internal override void Count(HelperEvent helperEvent) => dispatch.Count(helperEvent);

    internal override void RefreshTimeout(object connection, TimeSpan timeout)
    {
        try
        {
        }
        finally
        {
            dispatch.RefreshTimeout((Connection)connection, timeout);
        }
    }
}
