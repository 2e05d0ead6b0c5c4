using System.Buffers.Binary;
using Offload.Replay.Compare;
using Xunit;

namespace Offload.Replay.Tests.Compare;

/// <summary>
/// The comparison behind <c>offloadctl replay --compare</c> and the kernel tests: flow by flow, packet by packet, each
/// differing field named (addresses, ports, sequence and ack numbers, TTL, checksums, payload, any other byte); a
/// checksum the kernel left to its device counts as the finished one it becomes.
/// </summary>
public sealed class ReplayComparisonTests
{
    private static byte[] Segment(uint seq, string payload = "hello", string source = "198.51.100.1", ushort sport = 40000, byte ttl = 63) =>
        Wire.V4(source, "198.51.100.2", 6, Wire.Tcp(sport, 21, seq, 77, Wire.Ack, payload: System.Text.Encoding.ASCII.GetBytes(payload)), ttl: ttl);

    private static List<SentPacket> Sent(params byte[][] packets) => [.. packets.Select((p, i) => new SentPacket("wan0", i, p))];

    private static string Report(ReplayComparison comparison)
    {
        var text = new StringWriter();
        comparison.Write(text);
        return text.ToString();
    }

    [Fact]
    public void TheSamePacketsAreEqual()
    {
        var comparison = ReplayComparison.Compare(Sent(Segment(1), Segment(6)), Sent(Segment(1), Segment(6)));

        Assert.True(comparison.IsEqual, Report(comparison));
        Assert.Single(comparison.Flows);
        Assert.StartsWith("compare: equal: 1 flows, 1 equal, 0 differ", comparison.Summary);
    }

    [Fact]
    public void ASequenceNumberOffByThreeIsNamedWithBothValuesAndTheChecksums()
    {
        var comparison = ReplayComparison.Compare(Sent(Segment(1), Segment(6)), Sent(Segment(1), Segment(9)));

        Assert.False(comparison.IsEqual);
        var flow = Assert.Single(comparison.Flows);
        Assert.Equal(1, flow.FirstDifference);
        Assert.Contains("seq: kernel 6, ours 9", flow.Differences);
        Assert.Contains(flow.Differences, d => d.StartsWith("tcp checksum:", StringComparison.Ordinal));
        Assert.DoesNotContain(flow.Differences, d => d.StartsWith("header byte", StringComparison.Ordinal));
        Assert.Contains("packet 2 of 2", Report(comparison));
        Assert.Equal(1, comparison.DifferingPackets);
    }

    [Fact]
    public void APayloadRewrittenDifferentlyShowsWhereItDiffers()
    {
        var comparison = ReplayComparison.Compare(Sent(Segment(1, "PORT 198,51,100,1,4,1")), Sent(Segment(1, "PORT 192,0,2,2,4,1")));

        var flow = Assert.Single(comparison.Flows);
        Assert.Contains("total length: kernel 61, ours 58", flow.Differences);
        Assert.Contains(flow.Differences, d => d.StartsWith("payload: 21 and 18 bytes, first difference at byte 7: kernel 382c35312c313030, ours 322c302c322c322c", StringComparison.Ordinal));
    }

    [Fact]
    public void ATtlAndAnAddressTranslatedDifferentlyAreNamedAndTheFlowsPaired()
    {
        // Ours left from another address: a flow of its own, paired with the kernel's so that the address shows.
        var comparison = ReplayComparison.Compare(Sent(Segment(1)), Sent(Segment(1, source: "198.51.100.9", ttl: 64)));

        var flow = Assert.Single(comparison.Flows);
        Assert.NotEqual(flow.Kernel, flow.Ours);
        Assert.Contains("source: kernel 198.51.100.1, ours 198.51.100.9", flow.Differences);
        Assert.Contains("ttl: kernel 63, ours 64", flow.Differences);
    }

    [Fact]
    public void AnyOtherByteIsStillADifference()
    {
        byte[] ours = Segment(1);
        ours[1] = 0x08; // the TOS byte: no field of its own in the report
        Wire.FixIPv4HeaderChecksum(ours);

        var flow = Assert.Single(ReplayComparison.Compare(Sent(Segment(1)), Sent(ours)).Flows);
        Assert.Contains("header byte 1: kernel 00, ours 08", flow.Differences);
    }

    [Fact]
    public void MissingAndExtraPacketsAndFlowsAreCounted()
    {
        var kernel = Sent(Segment(1), Segment(6), Segment(1, sport: 40001));
        var ours = Sent(Segment(1), Wire.V4("198.51.100.1", "198.51.100.2", 17, Wire.Udp(5, 6)));

        var comparison = ReplayComparison.Compare(kernel, ours);

        Assert.False(comparison.IsEqual);
        var short1 = comparison.Flows.Single(f => f.Kernel?.Contains("sport=40000", StringComparison.Ordinal) == true);
        Assert.Contains("the kernel sent 2 packets, ours 1", short1.Differences);
        Assert.Contains(comparison.Flows, f => f.Ours is null && f.Kernel!.Contains("sport=40001", StringComparison.Ordinal));
        Assert.Contains(comparison.Flows, f => f.Kernel is null && f.Ours!.StartsWith("udp", StringComparison.Ordinal));
        Assert.Contains("(1 only the kernel's, 1 only ours)", comparison.Summary);
        Assert.Equal(3, comparison.DifferingPackets);
    }

    [Fact]
    public void AChecksumTheKernelLeftToItsDeviceEqualsOurFinishedOne()
    {
        byte[] finished = Segment(1);
        byte[] partial = OffloadedChecksumTests.Partial(finished);
        Assert.NotEqual(finished, partial);

        Assert.True(ReplayComparison.Compare(Sent(partial), Sent(finished)).IsEqual);

        // Ours must leave finished: one left to a device that is not there differs.
        var flow = Assert.Single(ReplayComparison.Compare(Sent(partial), Sent(partial)).Flows);
        Assert.Contains(flow.Differences, d => d.StartsWith("tcp checksum:", StringComparison.Ordinal));
    }

    [Fact]
    public void AKernelChecksumThatIsNeitherValidNorPartialIsNotForgiven()
    {
        byte[] bad = Segment(1);
        BinaryPrimitives.WriteUInt16BigEndian(bad.AsSpan(20 + 16), 0x1234);

        Assert.False(ReplayComparison.Compare(Sent(bad), Sent(Segment(1))).IsEqual);
    }

    [Fact]
    public void NothingSentByTheKernelIsNothingToCompare()
    {
        var comparison = ReplayComparison.Compare([], []);

        Assert.False(comparison.IsEqual);
        Assert.Contains("NOTHING TO COMPARE", comparison.Summary);
    }

    [Fact]
    public void FlowsByDifferentInterfacesAreDifferentFlows()
    {
        var kernel = new List<SentPacket> { new("wan0", 0, Segment(1)) };
        var ours = new List<SentPacket> { new("lan0", 0, Segment(1)) };

        var comparison = ReplayComparison.Compare(kernel, ours);

        Assert.False(comparison.IsEqual);
        Assert.Equal(2, comparison.Flows.Count);
    }
}
