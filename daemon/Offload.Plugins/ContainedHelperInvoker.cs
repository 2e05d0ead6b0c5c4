using System.Diagnostics;
using System.Globalization;
using System.Runtime;
using System.Runtime.CompilerServices;
using Offload.Engine;

namespace Offload.Plugins;

/// <summary>A plugin helper's call ran past its time budget and was aborted, or allocated past its allocation budget.</summary>
public sealed class HelperBudgetException : Exception
{
    public HelperBudgetException()
    {
    }

    public HelperBudgetException(string message)
        : base(message)
    {
    }

    public HelperBudgetException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// Runs plugin helpers' code for the engine under two budgets: a call that runs past <see cref="CallBudget"/> is
/// aborted by a watchdog thread, and a call that allocated more than <see cref="AllocationBudgetBytes"/> fails when it
/// returns. Either surfaces as a <see cref="HelperBudgetException"/>, which makes the engine disable the helper. The
/// built-in helpers (the Offload.Alg assembly) are called directly, at no cost.
/// </summary>
/// <remarks>
/// <para>Calls for one engine never overlap (the daemon holds the engine's lock), so one invoker keeps the call's
/// arguments in fields and calls a cached delegate: it allocates nothing per call (ControlledExecution.Run itself
/// allocates one small object per call). The call runs on the invoker's executor thread while the caller waits (see
/// <see cref="RunElsewhere"/>): a handoff of a few microseconds per call, for plugins only. The watchdog looks at the call in
/// progress every quarter of the budget, so a looping call is stopped between 1 and 1.25 budgets after it started.</para>
/// <para>What cannot be contained: a helper that leaks slowly across calls (each call is under budget; only the
/// process's memory grows), and an abort that lands while the helper runs a static constructor (the type is then
/// unusable) or holds a lock of its own (the lock is released, its state may be half-changed). Neither harms the
/// engine: its own actions run in finally blocks, where an abort waits.</para>
/// </remarks>
public sealed unsafe class ContainedHelperInvoker : IHelperInvoker, IDisposable
{
    private static readonly System.Reflection.Assembly BuiltIns = typeof(Offload.Alg.BuiltInHelpers).Assembly;

    private readonly long _budgetTicks;
    private readonly Action _help;
    private readonly Action _expected;
    private readonly Action _destroy;
    private readonly object _gate = new();
    private readonly Thread _watchdog;
    private readonly ManualResetEventSlim _stopping = new();
    private readonly int _pollMilliseconds;

    // The call in progress: set before the call, cleared after it (also so that no plugin object stays referenced).
    private ConntrackHelper? _helper;
    private void* _context;
    private void* _connection;
    private object? _state;
    private long _allocated;
    private Executor? _executor;
    private HelperVerdict _verdict;

    // Read by the watchdog under _gate: when the call started (0 while none runs), and the source whose token aborts it.
    private long _startedAt;
    private CancellationTokenSource _abort = new();

    /// <param name="callBudget">How long one call may run.</param>
    /// <param name="allocationBudgetBytes">How much one call may allocate.</param>
    public ContainedHelperInvoker(TimeSpan callBudget, long allocationBudgetBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(callBudget, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(allocationBudgetBytes, 0);
        CallBudget = callBudget;
        AllocationBudgetBytes = allocationBudgetBytes;
        _budgetTicks = (long)(callBudget.TotalSeconds * Stopwatch.Frequency);
        _pollMilliseconds = Math.Max(1, (int)(callBudget.TotalMilliseconds / 4));
        _help = CallHelp;
        _expected = CallExpected;
        _destroy = CallDestroy;
        _watchdog = new Thread(Watch) { IsBackground = true, Name = "helper-watchdog" };
        _watchdog.Start();
    }

    public TimeSpan CallBudget { get; }

    public long AllocationBudgetBytes { get; }

    /// <summary>Calls aborted at the time budget so far.</summary>
    public long Aborted { get; private set; }

    /// <summary>True when the helper runs under budgets (a plugin), false when it is called directly (a built-in).</summary>
    public static bool IsContained(ConntrackHelper helper) => !ReferenceEquals(helper.GetType().Assembly, BuiltIns);

    public HelperVerdict Help(ConntrackHelper helper, ref HelperContext context)
    {
        if (!IsContained(helper))
        {
            return helper.Help(ref context);
        }

        _helper = helper;
        _context = Unsafe.AsPointer(ref context);
        return Run(helper, _help);
    }

    public HelperVerdict OnExpectedConnection(ConntrackHelper helper, in ExpectedConnection connection)
    {
        if (!IsContained(helper))
        {
            return helper.OnExpectedConnection(connection);
        }

        _helper = helper;
        _connection = Unsafe.AsPointer(ref Unsafe.AsRef(in connection));
        return Run(helper, _expected);
    }

    public void OnDestroy(ConntrackHelper helper, object? state)
    {
        if (!IsContained(helper))
        {
            helper.OnDestroy(state);
            return;
        }

        _helper = helper;
        _state = state;
        Run(helper, _destroy);
    }

    // The calls measure what they allocate themselves: they may run on the stand-in thread (see Executor).
    private void CallHelp()
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        _verdict = _helper!.Help(ref Unsafe.AsRef<HelperContext>(_context));
        _allocated = GC.GetAllocatedBytesForCurrentThread() - before;
    }

    private void CallExpected()
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        _verdict = _helper!.OnExpectedConnection(in Unsafe.AsRef<ExpectedConnection>(_connection));
        _allocated = GC.GetAllocatedBytesForCurrentThread() - before;
    }

    private void CallDestroy()
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        _helper!.OnDestroy(_state);
        _verdict = HelperVerdict.Accept;
        _allocated = GC.GetAllocatedBytesForCurrentThread() - before;
    }

    private HelperVerdict Run(ConntrackHelper helper, Action call)
    {
        _allocated = 0;
        CancellationToken token;
        lock (_gate)
        {
            token = _abort.Token;
            _startedAt = Stopwatch.GetTimestamp();
        }

        try
        {
#pragma warning disable SYSLIB0046 // Obsolete because an abort can corrupt what the aborted code was changing; it is
            // still the only way in .NET to stop a call that loops, and it works on Linux. The engine's own actions run in
            // finally blocks (never interrupted), and a helper that was aborted is disabled, so its own state is not used again.
            RunElsewhere(call, token);
#pragma warning restore SYSLIB0046
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            Aborted++;
            throw new HelperBudgetException(string.Create(CultureInfo.InvariantCulture, $"a call ran past its {CallBudget.TotalMilliseconds:0.#} ms budget and was aborted"));
        }
        finally
        {
            lock (_gate)
            {
                _startedAt = 0;
                // ControlledExecution never removes the callback it registers on the token: the reset removes it (its
                // node goes back to the source's free list), so that registrations do not pile up call after call.
                if (!_abort.TryReset())
                {
                    // Cancelled: a fresh source for the next call (rare: only after an abort).
                    _abort.Dispose();
                    _abort = new CancellationTokenSource();
                }
            }

            _helper = null;
            _context = null;
            _connection = null;
            _state = null;
        }

        long used = _allocated;
        if (used > AllocationBudgetBytes)
        {
            throw new HelperBudgetException(string.Create(CultureInfo.InvariantCulture, $"a call allocated {used / 1024} KiB, past its {AllocationBudgetBytes / 1024} KiB budget"));
        }

        return _verdict;
    }

    /// <summary>
    /// Runs a call on the executor thread and waits for it (the caller's stack, which the call reads through pointers,
    /// stays put meanwhile). The call cannot run on the caller's thread: a thread that was aborted and goes on running
    /// breaks every later abort in the process (the canceller waits for ever and the call loops on; seen on .NET 10 on
    /// Linux), so the aborted thread must end. An executor that was aborted ends, and a new one takes its place.
    /// </summary>
    private void RunElsewhere(Action call, CancellationToken token)
    {
        if (_executor is null || _executor.Spent)
        {
            _executor?.Dispose();
            _executor = new Executor();
        }

        _executor.Run(call, token);
    }

    private void Watch()
    {
        while (!_stopping.Wait(_pollMilliseconds))
        {
            lock (_gate)
            {
                // Under the gate: the call seen here is the call aborted, never the next one.
                if (_startedAt != 0 && Stopwatch.GetTimestamp() - _startedAt > _budgetTicks)
                {
                    _abort.Cancel();
                    _startedAt = 0;
                }
            }
        }
    }

    public void Dispose()
    {
        _executor?.Dispose();
        _stopping.Set();
        _watchdog.Join();
        _stopping.Dispose();
        _abort.Dispose();
    }

    /// <summary>
    /// The thread plugin code runs on. It is handed one call at a time and the caller waits: calls never overlap.
    /// After an abort it is spent and ends; the invoker makes a new one.
    /// </summary>
    private sealed class Executor : IDisposable
    {
        private readonly Thread _thread;
        private readonly ManualResetEventSlim _go = new();
        private readonly ManualResetEventSlim _done = new();
        private Action? _call;
        private CancellationToken _token;
        private System.Runtime.ExceptionServices.ExceptionDispatchInfo? _error;
        private volatile bool _stopping;

        public Executor()
        {
            _thread = new Thread(Loop) { IsBackground = true, Name = "helper-stand-in" };
            _thread.Start();
        }

        public bool Spent { get; private set; }

        public void Run(Action call, CancellationToken token)
        {
            _call = call;
            _token = token;
            _error = null;
            _done.Reset();
            _go.Set();
            _done.Wait();
            _call = null;
            _error?.Throw();
        }

        private void Loop()
        {
            while (true)
            {
                _go.Wait();
                _go.Reset();
                if (_stopping)
                {
                    return;
                }

                try
                {
#pragma warning disable SYSLIB0046 // See Run in the invoker.
                    ControlledExecution.Run(_call!, _token);
#pragma warning restore SYSLIB0046
                }
                catch (Exception e)
                {
                    Spent = e is OperationCanceledException && _token.IsCancellationRequested;
                    _error = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e);
                }
                finally
                {
                    _done.Set();
                }

                if (Spent)
                {
                    return;
                }
            }
        }

        public void Dispose()
        {
            _stopping = true;
            _go.Set();
            if (!Spent)
            {
                _thread.Join();
            }
        }
    }
}
