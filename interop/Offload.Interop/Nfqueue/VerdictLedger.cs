namespace Offload.Interop.Nfqueue;

/// <summary>
/// Which received packets still await a verdict, oldest first. A batch verdict covers every packet the kernel
/// still holds up to an id, so it is only safe when nothing older is still undecided: this is how we know.
/// </summary>
/// <remarks>
/// Ids from one queue arrive in increasing order (serial-number arithmetic, so wrap-around is fine). An id never
/// received (the kernel assigned it but could not deliver it: ENOBUFS) is not in the kernel's queue either, so a
/// gap does not make a batch unsafe. If the caller holds more packets than the ring tracks, or ids go backwards,
/// the ledger gives up (<see cref="Reliable"/> false) and every verdict is sent singly from then on.
/// </remarks>
internal sealed class VerdictLedger
{
    private readonly uint[] _ids;
    private readonly bool[] _done;
    private readonly int _mask;
    private int _head;
    private int _count;

    internal VerdictLedger(int capacity)
    {
        int size = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(capacity, 16));
        _ids = new uint[size];
        _done = new bool[size];
        _mask = size - 1;
    }

    internal bool Reliable { get; private set; } = true;

    /// <summary>Packets received and not yet answered (while <see cref="Reliable"/>).</summary>
    internal int Outstanding
    {
        get
        {
            int n = 0;
            for (int i = 0; i < _count; i++)
            {
                n += _done[(_head + i) & _mask] ? 0 : 1;
            }

            return n;
        }
    }

    /// <summary>Records a packet handed to the caller. Returns false when the ledger just gave up.</summary>
    internal bool Received(uint id)
    {
        if (!Reliable)
        {
            return true;
        }

        if ((_count > 0 && !After(id, _ids[(_head + _count - 1) & _mask])) || _count == _ids.Length)
        {
            Reliable = false;
            _count = 0;
            return false;
        }

        int slot = (_head + _count) & _mask;
        _ids[slot] = id;
        _done[slot] = false;
        _count++;
        return true;
    }

    /// <summary>True when <paramref name="id"/> is the oldest packet still undecided.</summary>
    internal bool IsOldest(uint id) => Reliable && _count > 0 && _ids[_head] == id;

    /// <summary>Marks <paramref name="id"/> answered; unknown ids are ignored (the kernel will judge them).</summary>
    internal void Complete(uint id)
    {
        if (!Reliable || _count == 0)
        {
            return;
        }

        if (_ids[_head] == id)
        {
            PopHead();
            return;
        }

        int lo = 1, hi = _count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            int slot = (_head + mid) & _mask;
            uint m = _ids[slot];
            if (m == id)
            {
                _done[slot] = true;
                return;
            }

            if (After(id, m))
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }
    }

    /// <summary>Marks every id up to <paramref name="maxId"/> answered, as a batch verdict does.</summary>
    internal void CompleteThrough(uint maxId)
    {
        while (Reliable && _count > 0 && !After(_ids[_head], maxId))
        {
            PopHead();
        }
    }

    private void PopHead()
    {
        do
        {
            _head = (_head + 1) & _mask;
            _count--;
        }
        while (_count > 0 && _done[_head]);
    }

    private static bool After(uint a, uint b) => (int)(a - b) > 0;
}
