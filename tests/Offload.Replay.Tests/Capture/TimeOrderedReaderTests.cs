using Offload.Replay.Capture;
using Xunit;

namespace Offload.Replay.Tests.Capture;

/// <summary>
/// A capture of several interfaces read in time order, as a router met the packets: dumpcap writes each interface's
/// packets in batches, so the file is not. The merge is stable per interface: one interface's packets keep their file
/// order, whatever their timestamps.
/// </summary>
public sealed class TimeOrderedReaderTests
{
    /// <summary>Two interfaces (0 = lan0, 1 = wan0); each packet's one data byte is its position in the file.</summary>
    private static byte[] Capture(params (uint Interface, ulong Microseconds)[] packets)
    {
        var file = new PcapngBuilder().Section()
            .Interface(LinkLayer.Raw, 0, TestOption.Name("lan0"))
            .Interface(LinkLayer.Raw, 0, TestOption.Name("wan0"));
        for (int i = 0; i < packets.Length; i++)
        {
            file.Enhanced(packets[i].Interface, packets[i].Microseconds, [(byte)i]);
        }

        return file.ToArray();
    }

    private static (List<int> Order, TimeOrderedReader Reader) Read(byte[] file, Func<CaptureInterface, bool>? awaited = null)
    {
        var reader = new TimeOrderedReader(new CaptureReader(new MemoryStream(file)), awaited);
        var order = new List<int>();
        while (reader.TryRead(out var packet))
        {
            order.Add(packet.Data.Span[0]);
        }

        return (order, reader);
    }

    [Fact]
    public void BatchesOfTwoInterfacesComeOutInTimeOrder()
    {
        // As dumpcap writes them: lan0's batch, then wan0's, then lan0's next batch.
        var (order, reader) = Read(Capture((0, 10), (0, 30), (1, 20), (1, 40), (0, 50), (1, 45)));

        Assert.Equal([0, 2, 1, 3, 5, 4], order);
        Assert.Equal(2, reader.Reordered); // the packets at 30 and 50 came back after 20 and 45, which follow them in the file
    }

    [Fact]
    public void OneInterfaceKeepsItsFileOrderEvenWhenItsClockStepsBack()
    {
        var (order, _) = Read(Capture((0, 50), (0, 10), (1, 20), (0, 60)));

        // lan0's 50 stays before its 10; wan0's 20 waits for lan0's head (50), so it comes first.
        Assert.Equal([2, 0, 1, 3], order);
    }

    [Fact]
    public void EqualTimestampsKeepTheFileOrder()
    {
        var (order, reader) = Read(Capture((1, 10), (0, 10), (1, 10), (0, 10)));

        Assert.Equal([0, 1, 2, 3], order);
        Assert.Equal(0, reader.Reordered);
    }

    [Fact]
    public void AFileInTimeOrderIsReadWithoutHoldingMoreThanOneOfEachInterface()
    {
        var (order, reader) = Read(Capture((0, 1), (1, 2), (0, 3), (1, 4), (0, 5), (1, 6)));

        Assert.Equal([0, 1, 2, 3, 4, 5], order);
        Assert.Equal(0, reader.Reordered);
        Assert.True(reader.MostHeld <= 3, $"held {reader.MostHeld}");
    }

    [Fact]
    public void AnInterfaceTheCallerSkipsCostsNoReadAhead()
    {
        // lan0 once, then a long silence on lan0 while wan0 talks: waiting for lan0 would hold all of wan0's packets.
        var packets = new List<(uint, ulong)> { (0, 1) };
        for (int i = 0; i < 100; i++)
        {
            packets.Add((1, (ulong)(2 + i)));
        }

        var (all, waiting) = Read(Capture([.. packets]));
        var (some, skipping) = Read(Capture([.. packets]), ci => ci.Name == "wan0");

        Assert.Equal(101, all.Count);
        Assert.Equal(all, some);
        Assert.True(waiting.MostHeld >= 100, $"held {waiting.MostHeld}");
        Assert.True(skipping.MostHeld <= 2, $"held {skipping.MostHeld}");
    }

    [Fact]
    public void AnEmptyCaptureHasNothingToRead()
    {
        var file = new PcapngBuilder().Section().Interface(LinkLayer.Raw, 0, TestOption.Name("lan0")).ToArray();
        var (order, _) = Read(file);
        Assert.Empty(order);
    }
}
