using FsCheck;
using FsCheck.Fluent;
using Offload.Engine.Conntrack;
using Offload.Engine.Packets;
using Offload.Engine.Tests.Packets;
using Xunit;

namespace Offload.Engine.Tests.Fuzz;

public class ParserFuzzTests
{
    private static Gen<byte> AnyByte => Gen.Choose(0, 255).Select(i => (byte)i);

    // Mostly version 4 or 6 in the first nibble, so the random bytes reach past the version check.
    private static Gen<byte[]> RandomBytes =>
        from length in Gen.Frequency((1, Gen.Choose(0, 20)), (3, Gen.Choose(20, 80)), (1, Gen.Choose(80, 200)))
        from bytes in Gen.ArrayOf(AnyByte, length)
        from version in Gen.Elements(0x40, 0x60, 0x40, 0x60, -1)
        select Biased(bytes, version);

    private static byte[] Biased(byte[] bytes, int version)
    {
        if (bytes.Length > 0 && version >= 0)
        {
            bytes[0] = (byte)(version | (bytes[0] & 0x0F));
        }

        return bytes;
    }

    /// <summary>Parses with the engine and the reference, compares, and checks what a caller relies on. Throws on any difference.</summary>
    internal static void CheckParse(byte[] packet)
    {
        var info = PacketParser.Parse(packet);
        var expected = ReferenceParser.Parse(packet);
        string hex = Convert.ToHexString(packet);
        Assert.True(expected.Error == info.Error, $"error {info.Error}, reference {expected.Error}: {hex}");
        if (!info.IsValid)
        {
            Assert.False(ConnTuples.TryRead(packet, info, out _));
            return;
        }

        Assert.True(
            (expected.Family, expected.Protocol, expected.IsFragment, expected.IsLaterFragment, expected.TotalLength, expected.L4Offset, expected.PayloadOffset)
                == (info.Family, info.Protocol, info.IsFragment, info.IsLaterFragment, info.TotalLength, info.L4Offset, info.PayloadOffset),
            $"fields differ: {Describe(info)} vs reference {Describe(expected)}: {hex}");

        // What every caller relies on: offsets in order and inside the datagram, the datagram inside the buffer.
        Assert.InRange(info.TotalLength, 1, packet.Length);
        Assert.InRange(info.L4Offset, info.Family == 4 ? 20 : 40, info.TotalLength);
        Assert.InRange(info.PayloadOffset, info.L4Offset, info.TotalLength);
        Assert.Equal(info.HasTransportHeader, ConnTuples.TryRead(packet, info, out _));

        // Checksum verification reads only inside the datagram and never throws on a parsed packet.
        if (info.Family == 4)
        {
            PacketParser.IPv4HeaderChecksumIsValid(packet);
        }

        if (!info.IsLaterFragment)
        {
            PacketParser.TransportChecksumIsValid(packet, info);
            PacketParser.TransportChecksumIsValid(packet.AsSpan(0, info.TotalLength), info);
        }
    }

    internal static void CheckParseQuoted(ReadOnlySpan<byte> quoted)
    {
        var info = PacketParser.ParseQuoted(quoted);
        var expected = ReferenceParser.ParseQuoted(quoted);
        Assert.True(expected.Error == info.Error, $"quoted: error {info.Error}, reference {expected.Error}: {Convert.ToHexString(quoted)}");
        if (info.IsValid)
        {
            Assert.Equal((expected.Family, expected.Protocol, expected.L4Offset, expected.IsFragment), (info.Family, info.Protocol, info.L4Offset, info.IsFragment));
            Assert.Equal(quoted.Length, info.TotalLength);
            Assert.True(info.L4Offset + 8 <= quoted.Length);

            // What the engine reads from a quoted packet: addresses and the first 8 transport bytes.
            var tuple = default(ConnTuple);
            ConnTuples.ReadPorts(quoted.Slice(info.L4Offset), info.Protocol, ref tuple);
            InetAddress.Read(info.Family, quoted.Slice(info.SourceAddressOffset));
            InetAddress.Read(info.Family, quoted.Slice(info.DestinationAddressOffset));
        }
    }

    private static string Describe(in PacketInfo i) =>
        $"family={i.Family} proto={i.Protocol} frag={i.IsFragment}/{i.IsLaterFragment} total={i.TotalLength} l4={i.L4Offset} payload={i.PayloadOffset}";

    [Fact]
    public void Random_bytes_parse_like_the_reference_and_never_throw()
    {
        Check.One(Deterministic.Runs(8000, 4242), Prop.ForAll(RandomBytes.ToArbitrary(), packet =>
        {
            CheckParse(packet);
            CheckParseQuoted(packet);
        }));
    }

    [Fact]
    public void Mutated_valid_packets_parse_like_the_reference_and_never_throw()
    {
        Check.One(Deterministic.Runs(8000, 777), Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var r = new System.Random(seed);
            var packet = FuzzPackets.Valid(r, r.Next(2) == 0);
            CheckParse(packet); // the unmutated packet is valid and agrees too
            Assert.True(PacketParser.Parse(packet).IsValid, Convert.ToHexString(packet));

            var mutant = FuzzPackets.Mutate(r, packet);
            if (r.Next(2) == 0)
            {
                FuzzPackets.FixChecksums(mutant);
            }

            CheckParse(mutant);
            for (int i = 0; i < 4; i++)
            {
                CheckParseQuoted(mutant.AsSpan(0, r.Next(mutant.Length + 1)));
            }
        }));
    }

    [Fact]
    public void Random_extension_header_chains_parse_like_the_reference()
    {
        Check.One(Deterministic.Runs(5000, 2460), Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var r = new System.Random(seed);
            var packet = FuzzPackets.RandomChain(r);
            CheckParse(packet);
            CheckParseQuoted(packet);
            CheckParseQuoted(packet.AsSpan(0, r.Next(packet.Length + 1)));
        }));
    }

    [Fact]
    public void Valid_packets_built_by_the_generator_verify_and_parse_to_their_tuple()
    {
        // The generator itself is checked, so the engine fuzz starts from packets the engine must accept as well formed.
        var r = new System.Random(31337);
        for (int i = 0; i < 3000; i++)
        {
            var packet = FuzzPackets.Valid(r, r.Next(2) == 0);
            var info = PacketParser.Parse(packet);
            Assert.True(info.IsValid, Convert.ToHexString(packet));
            Assert.True(FuzzPackets.ChecksumsHold(packet, info), Convert.ToHexString(packet));
            if (info.Family == 4)
            {
                Assert.True(PacketParser.IPv4HeaderChecksumIsValid(packet));
            }

            Assert.True(info.IsFragment || PacketParser.TransportChecksumIsValid(packet, info), Convert.ToHexString(packet));
        }
    }
}
