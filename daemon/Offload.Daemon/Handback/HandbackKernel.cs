using Offload.Interop;
using Offload.Interop.Ctnetlink;
using Offload.Interop.Ipset;

namespace Offload.Daemon.Handback;

/// <summary>What hand-back asks of the kernel: its conntrack table (ctnetlink) and the hand-back sets (ipset).</summary>
internal interface IHandbackKernel : IDisposable
{
    /// <summary>Creates the kernel's entry, settling one that is there (see <see cref="CtnlClient.Commit"/>).</summary>
    CtnlCommitResult Commit(in CtnlEntry entry, out Errno error);

    /// <summary>Deletes the kernel's entry of an original tuple.</summary>
    Errno Delete(in CtnlTuple original);

    /// <summary>Whether the kernel's table still holds the entry of an original tuple (ENOENT: no).</summary>
    Errno Get(in CtnlTuple original);

    /// <summary>Adds to and deletes from the hand-back sets, one result per operation.</summary>
    void Apply(ReadOnlySpan<IpsetOperation> operations, Span<Errno> results);

    /// <summary>Empties a hand-back set.</summary>
    void Flush(string set);

    /// <summary>
    /// Waits a moment for the kernel's destroy events and writes the original tuples of the entries that went; 0 when
    /// none came, <see cref="CtnlDestroyEvents.Overrun"/> when events were lost. Called by one thread only.
    /// </summary>
    int ReceiveDestroyed(Span<CtnlTuple> destroyed);
}

/// <summary>
/// The real kernel: a ctnetlink client and an ipset client of hand-back's own. Both workers and the events thread use
/// it; the clients match answers to the one request in flight on their socket, so one caller at a time.
/// </summary>
internal sealed class HandbackKernel : IHandbackKernel
{
    private readonly CtnlClient _conntrack = CtnlClient.Open();
    private readonly IpsetClient _sets = IpsetClient.Open();
    private readonly CtnlDestroyEvents _events = OpenEvents();
    private readonly Lock _use = new();

    /// <summary>How long <see cref="ReceiveDestroyed"/> waits, so that the events thread sees a stop soon.</summary>
    internal static readonly TimeSpan EventWait = TimeSpan.FromMilliseconds(500);

    // The events have a socket of their own: waiting for them never holds up the requests.
    public int ReceiveDestroyed(Span<CtnlTuple> destroyed) => _events.Receive(destroyed);

    private static CtnlDestroyEvents OpenEvents()
    {
        var events = CtnlDestroyEvents.Open();
        events.ReceiveTimeout = EventWait;
        return events;
    }

    public CtnlCommitResult Commit(in CtnlEntry entry, out Errno error)
    {
        lock (_use)
        {
            return _conntrack.Commit(entry, out error);
        }
    }

    public Errno Delete(in CtnlTuple original)
    {
        lock (_use)
        {
            return _conntrack.Delete(original);
        }
    }

    public Errno Get(in CtnlTuple original)
    {
        lock (_use)
        {
            return _conntrack.Get(original, out _);
        }
    }

    public void Apply(ReadOnlySpan<IpsetOperation> operations, Span<Errno> results)
    {
        lock (_use)
        {
            _sets.Apply(operations, results);
        }
    }

    public void Flush(string set)
    {
        lock (_use)
        {
            _sets.Flush(set);
        }
    }

    public void Dispose()
    {
        lock (_use)
        {
            _conntrack.Dispose();
            _sets.Dispose();
            _events.Dispose();
        }
    }
}
