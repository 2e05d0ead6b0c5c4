using Offload.Interop.Nfqueue;
using Xunit;

namespace Offload.Interop.Tests.Nfqueue;

public sealed class VerdictLedgerTests
{
    [Fact]
    public void Oldest_moves_past_answered_packets_and_gaps()
    {
        var ledger = new VerdictLedger(16);
        foreach (uint id in new uint[] { 1, 2, 3, 7, 8 })
        {
            Assert.True(ledger.Received(id));
        }

        Assert.True(ledger.IsOldest(1));
        ledger.Complete(3);
        ledger.Complete(2);
        Assert.True(ledger.IsOldest(1));
        ledger.Complete(1);

        // 2 and 3 were answered, 4 to 6 never arrived (lost to ENOBUFS): 7 is next.
        Assert.True(ledger.IsOldest(7));
        Assert.Equal(2, ledger.Outstanding);
        ledger.CompleteThrough(8);
        Assert.Equal(0, ledger.Outstanding);
        Assert.False(ledger.IsOldest(8));
    }

    [Fact]
    public void Ids_wrap_around()
    {
        var ledger = new VerdictLedger(16);
        ledger.Received(uint.MaxValue - 1);
        ledger.Received(uint.MaxValue);
        ledger.Received(0);
        ledger.Received(1);
        ledger.Complete(0);
        ledger.CompleteThrough(uint.MaxValue);
        Assert.True(ledger.IsOldest(1));
        Assert.True(ledger.Reliable);
    }

    [Fact]
    public void Unknown_and_repeated_answers_change_nothing()
    {
        var ledger = new VerdictLedger(16);
        ledger.Received(10);
        ledger.Received(11);
        ledger.Complete(5);
        ledger.Complete(12);
        ledger.Complete(11);
        ledger.Complete(11);
        Assert.True(ledger.IsOldest(10));
        Assert.Equal(1, ledger.Outstanding);
    }

    [Fact]
    public void Gives_up_when_ids_go_backwards_or_too_many_are_held()
    {
        var backwards = new VerdictLedger(16);
        backwards.Received(5);
        Assert.False(backwards.Received(4));
        Assert.False(backwards.Reliable);
        Assert.False(backwards.IsOldest(5));

        var full = new VerdictLedger(16);
        for (uint id = 0; id < 16; id++)
        {
            Assert.True(full.Received(id));
        }

        Assert.False(full.Received(16));
        Assert.False(full.Reliable);
    }
}
