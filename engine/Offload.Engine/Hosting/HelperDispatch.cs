using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;

namespace Offload.Engine.Hosting;

/// <summary>
/// Where the engine meets helper code (the kernel's nf_conntrack_helper.c): which helper a new connection gets, the
/// helper's call for each packet after NAT, its say on an expected connection and its farewell to a connection. Every
/// call goes through one <see cref="IHelperInvoker"/> (the daemon's runs plugins under budgets; by default a direct
/// call), and a helper that throws is disabled rather than taking the engine down.
/// </summary>
internal sealed class HelperDispatch
{
    private readonly IHelperInvoker _invoker;
    private readonly ExpectationTable _expectations;
    private readonly ExpectationRegistrar _registrar;
    private readonly PacketScratch _scratch;
    private readonly EngineCounters _counters;
    private readonly IClock _clock;
    private readonly EngineHelperHost _host;
    private HelperBinding[] _bindings;

    public HelperDispatch(EngineOptions options, IClock clock, ExpectationTable expectations, PacketScratch scratch, EngineCounters counters)
    {
        _invoker = options.HelperInvoker ?? DirectHelperInvoker.Instance;
        _expectations = expectations;
        _registrar = new ExpectationRegistrar(options, expectations, counters);
        _scratch = scratch;
        _counters = counters;
        _clock = clock;
        _host = new EngineHelperHost(this);
        _bindings = [];
        Bind(options.Helpers);
    }

    /// <summary>Told of helpers' log lines and failures.</summary>
    public IConntrackObserver? Observer { get; set; }

    private long Now => _clock.NowNanoseconds;

    /// <summary>Replaces the helper bindings (a reload): tracked connections keep their helpers.</summary>
    public void Bind(IReadOnlyList<HelperBinding> bindings)
    {
        var previous = _bindings;
        _bindings = [.. bindings];
        HelperBinding.Publish(previous, _bindings);
        foreach (var binding in _bindings)
        {
            binding.Helper.LogSink = (helper, level, message) => Observer?.HelperLogged(helper, level, message);
        }
    }

    /// <summary>How deep <see cref="Find"/> follows helpers attached by attached helpers.</summary>
    private const int MaxAttachedDepth = 4;

    /// <summary>
    /// The helper of that name among those bound now (restoring a snapshot), else among the helpers they attach to
    /// their expected connections (<see cref="ConntrackHelper.AttachedHelpers"/>: H.323's H.245 helper); or null.
    /// </summary>
    public ConntrackHelper? Find(string name)
    {
        foreach (var binding in _bindings)
        {
            if (binding.Helper.Name == name)
            {
                return binding.Helper;
            }
        }

        foreach (var binding in _bindings)
        {
            if (FindAttached(binding.Helper, name, MaxAttachedDepth) is { } attached)
            {
                return attached;
            }
        }

        return null;
    }

    private static ConntrackHelper? FindAttached(ConntrackHelper helper, string name, int depth)
    {
        IReadOnlyList<ConntrackHelper> attached;
        try
        {
            attached = helper.AttachedHelpers;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return null; // a plugin's fault costs its attached helpers' connections their helper, not the restore
        }

        foreach (var a in attached ?? [])
        {
            if (a is not null && a.Name == name)
            {
                return a;
            }
        }

        if (depth > 1)
        {
            foreach (var a in attached ?? [])
            {
                if (a is not null && !ReferenceEquals(a, helper) && FindAttached(a, name, depth - 1) is { } deeper)
                {
                    return deeper;
                }
            }
        }

        return null;
    }

    /// <summary>Gives a new connection that nobody expected the first working helper bound to its tuple.</summary>
    public void Assign(Connection conn, in ConnTuple tuple)
    {
        foreach (var binding in _bindings)
        {
            if (binding.Matches(tuple) && binding.Helper.DisabledReason is null)
            {
                conn.EnsureExtras().Helper = binding.Helper;
                conn.StatusBits |= ConnStatus.Helper;
                break;
            }
        }
    }

    /// <summary>
    /// Runs the connection's helper on a packet after NAT and applies the rewrites it queued. A dropped packet takes
    /// back the expectations its call announced; a helper that throws is disabled and its packet goes on untouched.
    /// </summary>
    public Verdict Help(ref PacketContext ctx, Connection conn, ConntrackHelper helper)
    {
        if (helper.DisabledReason is not null)
        {
            // A failed helper's connections go on with plain tracking.
            return Verdict.Accept;
        }

        _scratch.BeginCall();
        var rewrites = _scratch.Rewrites;
        var layout = new HelperPacketLayout(ctx.Info.L4Offset, ctx.Info.PayloadOffset, ctx.Info.PayloadLength, ctx.Info.Protocol, ctx.Dir, ctx.Ct, conn.IsNatted);
        // The context reads the tuples by reference: copies of the entry's, which holds them in a compact form.
        var tuple = conn.TupleOf(ctx.Dir);
        var otherTuple = conn.TupleOf(ctx.Dir.Opposite());
        var context = new HelperContext(_host, helper, conn.Boxed(), ctx.Packet, layout, in tuple, in otherTuple);
        HelperVerdict verdict;
        try
        {
            verdict = _invoker.Help(helper, ref context);
        }
        catch (Exception e)
        {
            // Its rewrites are forgotten and the packet goes on untouched; expectations it made stay (they were valid).
            rewrites.Clear();
            _scratch.ForgetAnnounced();
            Disable(helper, e);
            return Verdict.Accept;
        }

        if (verdict == HelperVerdict.Drop)
        {
            rewrites.Clear();
            _scratch.WithdrawAnnounced(_expectations);
            return _counters.Drop(EngineCounter.DroppedByHelper);
        }

        if (!rewrites.HasRewrites || rewrites.Apply(ref ctx, conn))
        {
            _scratch.ForgetAnnounced();
            return Verdict.Accept;
        }

        _scratch.WithdrawAnnounced(_expectations);
        return _counters.Drop(EngineCounter.DroppedRewriteFailed);
    }

    /// <summary>What the master's helper chose for the NAT of the expected connection it was last asked about.</summary>
    private readonly ExpectedNatChoice _choice = new();

    /// <summary>
    /// The NAT the master's helper chose for <paramref name="expectation"/>'s connection when it arrived
    /// (<see cref="ExpectationNat.OnArrival"/>): null when it was not asked (no helper, or a failed one) or chose nothing.
    /// </summary>
    internal ExpectedNatChoice? ChoiceFor(Expectation expectation) =>
        ReferenceEquals(_choice.For, expectation) && (_choice.HasSource || _choice.HasDestination) ? _choice : null;

    /// <summary>Asks the master's helper whether an expected connection may start; a failed helper lets it.</summary>
    public bool AcceptExpected(ConntrackHelper helper, Connection conn, Expectation expectation)
    {
        _choice.Reset(expectation, open: false);
        if (helper.DisabledReason is not null)
        {
            return true;
        }

        var master = expectation.Master;
        _choice.Reset(expectation, open: expectation.Nat == ExpectationNat.OnArrival);
        var arriving = new ExpectedConnection(conn.OriginalTuple, master.OriginalTuple, expectation.Class, master.Extras?.HelperState, _choice);
        try
        {
            bool accepted = _invoker.OnExpectedConnection(helper, arriving) == HelperVerdict.Accept;
            _choice.Open = false; // a copy the helper kept changes nothing later
            return accepted;
        }
        catch (Exception e)
        {
            _choice.Reset(expectation, open: false); // what it chose before failing is forgotten
            Disable(helper, e);
            return true;
        }
    }

    /// <summary>Tells a working helper that one of its connections is gone, with the state it kept for it.</summary>
    public void Destroyed(ConntrackHelper helper, object? state)
    {
        if (helper.DisabledReason is not null)
        {
            return;
        }

        try
        {
            _invoker.OnDestroy(helper, state);
        }
        catch (Exception e)
        {
            Disable(helper, e);
        }
    }

    /// <summary>
    /// Disables a helper that failed: no new connection is bound to it and its connections are tracked without it. Its
    /// outstanding expectations stay: they were valid when made.
    /// </summary>
    private void Disable(ConntrackHelper helper, Exception error)
    {
        if (helper.DisabledReason is not null)
        {
            return;
        }

        helper.DisabledReason = $"{error.GetType().Name}: {error.Message}";
        _counters.Count(EngineCounter.HelperFailures);
        Observer?.HelperDisabled(helper, error);
    }

    /// <summary>A helper's request for an expectation, remembered so that a dropped packet can take it back.</summary>
    internal ExpectResult Expect(Connection master, ConnDirection direction, ref ExpectationRequest request)
    {
        var result = _registrar.Expect(master, direction, ref request, Now, out var added);
        if (added is not null)
        {
            _scratch.Announced(added);
        }

        return result;
    }

    internal int Unexpect(Connection master, int expectationClass) => _expectations.RemoveOf(master, expectationClass);

    /// <summary>A helper's request for two expectations on consecutive ports, both remembered so that a dropped packet takes them back.</summary>
    internal ExpectResult ExpectPair(Connection master, ConnDirection direction, ref ExpectationRequest request)
    {
        var result = _registrar.ExpectPair(master, direction, ref request, Now, out var first, out var second);
        if (first is not null && second is not null)
        {
            _scratch.Announced(first);
            _scratch.Announced(second);
        }

        return result;
    }

    internal bool Unexpect(Connection master, in ExpectationRequest request) =>
        ExpectationTable.Find(master, in request) is { } expectation && _expectations.Remove(expectation);

    internal int CountExpected(Connection master, int expectationClass) => ExpectationTable.CountOf(master, expectationClass, Now);

    internal bool QueueRewrite(int payloadLength, int offset, int length, ReadOnlySpan<byte> replacement) =>
        _scratch.Rewrites.Queue(payloadLength, offset, length, replacement);

    internal void Count(HelperEvent helperEvent) =>
        _counters.Count(EngineCounter.HelperMalformedCommand + (int)helperEvent);

    internal void RefreshTimeout(Connection conn, TimeSpan timeout) =>
        conn.ExpiresAt = Now + (long)(timeout.Ticks * 100);

    internal long NowNanoseconds => Now;
}
