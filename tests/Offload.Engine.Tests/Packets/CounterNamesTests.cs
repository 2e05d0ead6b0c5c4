using Offload.Engine.Packets;
using Xunit;

namespace Offload.Engine.Tests.Packets;

/// <summary>The engine counts a malformed packet under EngineCounter.MalformedTruncated + (error - 1): the two enums must stay in step.</summary>
public sealed class CounterNamesTests
{
    [Fact]
    public void Every_packet_error_has_its_malformed_counter_at_the_matching_place()
    {
        foreach (var error in Enum.GetValues<PacketError>().Where(e => e != PacketError.None))
        {
            var counter = EngineCounter.MalformedTruncated + ((int)error - 1);
            Assert.Equal("Malformed" + error, counter.ToString());
        }
    }
}
