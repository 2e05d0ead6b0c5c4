using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Offload.Engine.Packets;
using Xunit;

namespace Offload.Engine.Tests.Packets;

public class ChecksumTests
{
    [Fact]
    public void Sum_of_every_length_from_0_to_200_matches_the_word_by_word_reference()
    {
        var random = new System.Random(1071);
        for (int length = 0; length <= 200; length++)
        {
            for (int round = 0; round < 20; round++)
            {
                var data = new byte[length];
                // Mix plain random data with runs of 0xFF, which carry on every add and test the end-around carry.
                if (round % 4 == 0)
                {
                    data.AsSpan().Fill(0xFF);
                }
                else
                {
                    random.NextBytes(data);
                }

                ushort expected = RefChecksum.Sum(data);
                Assert.Equal(expected, Checksum.Fold(Checksum.Add(0, data)));
                Assert.Equal((ushort)~expected, Checksum.Finish(Checksum.Add(0, data)));
                Assert.Equal((ushort)~expected, Checksum.Compute(data));
            }
        }
    }

    [Theory]
    [InlineData(1499, 0)]
    [InlineData(1500, 1)]
    [InlineData(1501, 3)]
    [InlineData(9000, 2)]
    [InlineData(65535, 1)]
    public void Sum_of_a_packet_sized_run_at_any_alignment_matches_the_reference(int length, int offset)
    {
        // Vectors take 32 bytes a step from wherever the span starts; 0xFF in every byte carries the most.
        var random = new System.Random(length);
        var buffer = new byte[length + offset];
        foreach (bool ones in new[] { true, false })
        {
            if (ones)
            {
                buffer.AsSpan().Fill(0xFF);
            }
            else
            {
                random.NextBytes(buffer);
            }

            var data = buffer.AsSpan(offset, length);
            Assert.Equal(RefChecksum.Sum(data), Checksum.Fold(Checksum.Add(0, data)));
            Assert.Equal(OnesAdd(FoldReference(0xFFFF_FFFF_0000_0001UL), RefChecksum.Sum(data)), Checksum.Fold(Checksum.Add(0xFFFF_FFFF_0000_0001UL, data)));
        }
    }

    [Fact]
    public void Sum_split_at_any_even_point_equals_the_sum_in_one_piece()
    {
        var random = new System.Random(7);
        for (int length = 0; length <= 67; length++)
        {
            var data = new byte[length];
            random.NextBytes(data);
            ushort whole = Checksum.Fold(Checksum.Add(0, data));
            for (int split = 0; split <= length; split += 2)
            {
                ulong partial = Checksum.Add(0, data.AsSpan(0, split));
                Assert.Equal(whole, Checksum.Fold(Checksum.Add(partial, data.AsSpan(split))));
            }
        }
    }

    [Fact]
    public void Add_carries_correctly_from_any_starting_sum()
    {
        var random = new System.Random(99);
        ulong[] starts = [0, 1, 0xFFFF, 0x1_0000, 0xFFFF_FFFF, 0x8000_0000_0000_0000, ulong.MaxValue - 1, ulong.MaxValue];
        foreach (ulong start in starts.Concat(Enumerable.Range(0, 50).Select(_ => (ulong)random.NextInt64() * 3)))
        {
            var data = new byte[random.Next(0, 300)];
            if (random.Next(2) == 0)
            {
                data.AsSpan().Fill(0xFF);
            }
            else
            {
                random.NextBytes(data);
            }

            Assert.Equal(OnesAdd(FoldReference(start), RefChecksum.Sum(data)), Checksum.Fold(Checksum.Add(start, data)));
        }
    }

    [Fact]
    public void Fold_keeps_zero_apart_from_negative_zero()
    {
        Assert.Equal(0, Checksum.Fold(0));
        Assert.Equal(0xFFFF, Checksum.Fold(0xFFFF));
        Assert.Equal(0xFFFF, Checksum.Fold(0xFFFF_FFFF));
        Assert.Equal(0xFFFF, Checksum.Fold(ulong.MaxValue));
        Assert.Equal(1, Checksum.Fold(0x1_0000));
        Assert.Equal(0xFFFF, Checksum.Finish(0));
        Assert.Equal(0, Checksum.Finish(0xFFFF));
    }

    [Fact]
    public void Rfc1071_worked_example()
    {
        // RFC 1071 section 3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 after the end-around carry.
        byte[] data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        Assert.Equal(0xddf2, Checksum.Fold(Checksum.Add(0, data)));
        Assert.Equal(0x220d, Checksum.Compute(data));
    }

    [Fact]
    public void Rfc1624_example_gives_zero_not_negative_zero()
    {
        // RFC 1624 section 4: the rest of the header sums to 0xCD7A; m changes from 0x5555 to 0x3285.
        // HC = ~(0xCD7A + 0x5555) = 0xDD2F; the recomputed HC' is 0x0000, which eqn. 3 gives and eqn. 2 does not.
        Assert.Equal(0x0000, Checksum.Update(0xDD2F, 0x5555, 0x3285));

        // The same through the 32-bit form (m in the low half, high half unchanged) and the byte form.
        Assert.Equal(0x0000, Checksum.Update(0xDD2F, 0x1234_5555u, 0x1234_3285u));
        Assert.Equal(0x0000, Checksum.Update(0xDD2F, [0x55, 0x55], [0x32, 0x85]));
    }

    [Fact]
    public void Ipv4_header_example_verifies()
    {
        // A real header (from a capture): 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
        byte[] header = Convert.FromHexString("450000730000400040110000c0a80001c0a800c7");
        Assert.Equal(0xb861, Checksum.Compute(header));
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(10), 0xb861);
        Assert.Equal(0xFFFF, Checksum.Fold(Checksum.Add(0, header)));
        Assert.True(PacketParser.IPv4HeaderChecksumIsValid(header));
        header[15] ^= 1;
        Assert.False(PacketParser.IPv4HeaderChecksumIsValid(header));
    }

    [Fact]
    public void Pseudo_header_matches_reference_for_both_families()
    {
        var random = new System.Random(5);
        for (int i = 0; i < 500; i++)
        {
            int addressLength = i % 2 == 0 ? 4 : 16;
            var source = new byte[addressLength];
            var destination = new byte[addressLength];
            random.NextBytes(source);
            random.NextBytes(destination);
            byte protocol = (byte)random.Next(256);
            int length = random.Next(0, 65536);
            Assert.Equal(
                (ushort)RefChecksum.Pseudo(source, destination, protocol, length),
                Checksum.Fold(Checksum.PseudoHeader(source, destination, protocol, length)));
        }
    }

    // Once a bug (a plain add that lost the end-around carry), fixed in a1fe992.
    [Fact]
    public void Pseudo_header_carries_when_the_address_sum_is_near_the_top()
    {
        var ones = Enumerable.Repeat((byte)0xFF, 16).ToArray();
        var zeros = new byte[16];
        Assert.Equal(
            (ushort)RefChecksum.Pseudo(ones, zeros, 17, 8),
            Checksum.Fold(Checksum.PseudoHeader(ones, zeros, 17, 8)));
    }

    public sealed record Change(int Kind, int Offset, byte[] NewBytes);

    public sealed record ChangeCase(byte[] Data, Change[] Changes);

    private static Gen<byte> AnyByte => Gen.Choose(0, 255).Select(i => (byte)i);

    // Data of 12..100 even bytes whose checksum field sits at offset 10 (as in an IPv4 header); changes go anywhere else.
    private static Gen<ChangeCase> ChangeCases =>
        from words in Gen.Choose(6, 50)
        from data in Gen.ArrayOf(Gen.Frequency((1, Gen.Constant((byte)0)), (1, Gen.Constant((byte)0xFF)), (4, AnyByte)), words * 2)
        from changes in Gen.ArrayOf(ChangeFor(words * 2), 5).SelectMany(all => Gen.Choose(1, 5).Select(n => all[..n]))
        select new ChangeCase(data, changes);

    private static Gen<Change> ChangeFor(int length) =>
        from kind in Gen.Choose(0, 2)
        from run in Gen.Choose(1, 6)
        let size = kind == 0 ? 2 : kind == 1 ? 4 : run * 2
        from word in Gen.Choose(0, (length / 2) - 1)
        from bytes in Gen.ArrayOf(Gen.Frequency((1, Gen.Constant((byte)0)), (1, Gen.Constant((byte)0xFF)), (4, AnyByte)), size)
        select new Change(kind, Math.Min(word * 2, length - size), bytes);

    [Fact]
    public void Incremental_updates_equal_full_recomputation_after_random_changes()
    {
        Check.One(Deterministic.Runs(3000, 1624), Prop.ForAll(ChangeCases.ToArbitrary(), c =>
        {
            const int field = 10;
            var data = (byte[])c.Data.Clone();
            data[field] = 0;
            data[field + 1] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(field), Checksum.Compute(data));

            foreach (var change in c.Changes)
            {
                int offset = AwayFromField(change.Offset, change.NewBytes.Length, data.Length, field);
                if (offset < 0)
                {
                    continue;
                }

                var old = data.AsSpan(offset, change.NewBytes.Length).ToArray();
                switch (change.Kind)
                {
                    case 0:
                        Checksum.UpdateField(data, field, BinaryPrimitives.ReadUInt16BigEndian(old), BinaryPrimitives.ReadUInt16BigEndian(change.NewBytes));
                        break;
                    case 1:
                        Checksum.UpdateField(data, field, BinaryPrimitives.ReadUInt32BigEndian(old), BinaryPrimitives.ReadUInt32BigEndian(change.NewBytes));
                        break;
                    default:
                        Checksum.UpdateField(data, field, old, change.NewBytes);
                        break;
                }

                change.NewBytes.CopyTo(data, offset);

                ushort incremental = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(field));
                var zeroed = (byte[])data.Clone();
                zeroed[field] = 0;
                zeroed[field + 1] = 0;
                ushort full = RefChecksum.Field(zeroed);

                // The only allowed difference: data that is all zero has the full checksum 0xFFFF, while
                // RFC 1624 eqn. 3 yields the other zero, 0x0000. Both verify.
                bool allZero = zeroed.All(b => b == 0);
                Assert.True(
                    incremental == full || (allZero && incremental == 0 && full == 0xFFFF),
                    $"incremental {incremental:x4} full {full:x4} data {Convert.ToHexString(data)}");
                Assert.True(allZero || RefChecksum.Verifies(data));
            }
        }));
    }

    [Fact]
    public void Differences_applied_at_once_equal_updates_made_in_turn()
    {
        // Bit for bit, 0x0000 and 0xFFFF included: NAT applies an address's and a port's differences in one step.
        var random = new System.Random(1624);
        ushort[] edges = [0x0000, 0xFFFF, 0x0001, 0xFFFE, 0x8000];
        Span<byte> oldBytes = stackalloc byte[4], newBytes = stackalloc byte[4];
        for (int round = 0; round < 200_000; round++)
        {
            ushort check = round < 25 ? edges[round % 5] : (ushort)random.Next(65536);
            uint oldAddress = round < 25 ? (round / 5 % 2 == 0 ? 0u : uint.MaxValue) : (uint)random.NextInt64(1L << 32);
            uint newAddress = round < 25 ? edges[round / 5] * 0x10001u : (uint)random.NextInt64(1L << 32);
            ushort oldPort = (ushort)random.Next(65536), newPort = (ushort)random.Next(65536);
            ushort inTurn = Checksum.Update(Checksum.Update(check, oldAddress, newAddress), oldPort, newPort);
            ushort atOnce = Checksum.Apply(check, Checksum.Combine(Checksum.Difference(oldAddress, newAddress), Checksum.Difference(oldPort, newPort)));
            Assert.Equal(inTurn, atOnce);

            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(oldBytes, oldAddress);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(newBytes, newAddress);
            Assert.Equal(
                Checksum.Update(Checksum.Update(check, oldBytes, newBytes), oldPort, newPort),
                Checksum.Apply(check, Checksum.Combine(Checksum.Difference(oldBytes, newBytes), Checksum.Difference(oldPort, newPort))));
        }
    }

    [Fact]
    public void Update_for_32_bit_values_equals_two_16_bit_updates()
    {
        Check.One(Deterministic.Runs(2000, 32), Prop.ForAll(
            Gen.Choose(0, 0xFFFF).Three().Select(t => (Check: (ushort)t.Item1, Old: (uint)t.Item2 * 65599u, New: (uint)t.Item3 * 40503u)).ToArbitrary(),
            t =>
            {
                ushort viaWords = Checksum.Update(Checksum.Update(t.Check, (ushort)(t.Old >> 16), (ushort)(t.New >> 16)), (ushort)t.Old, (ushort)t.New);
                ushort direct = Checksum.Update(t.Check, t.Old, t.New);
                // Equal as one's complement numbers (0 and 0xFFFF are the same zero).
                Assert.Equal(viaWords % 0xFFFF, direct % 0xFFFF);
            }));
    }

    // Moves a change of `size` bytes so it does not touch the checksum field: after it if it fits, else before it.
    private static int AwayFromField(int offset, int size, int length, int field)
    {
        if (offset + size <= field || offset >= field + 2)
        {
            return offset;
        }

        if (field + 2 + size <= length)
        {
            return field + 2;
        }

        return field - size >= 0 ? field - size : -1;
    }

    private static ushort FoldReference(ulong value)
    {
        if (value == 0)
        {
            return 0;
        }

        ulong r = value % 0xFFFF;
        return r == 0 ? (ushort)0xFFFF : (ushort)r;
    }

    private static ushort OnesAdd(ushort a, ushort b)
    {
        uint s = (uint)a + b;
        s = (s & 0xFFFF) + (s >> 16);
        return (ushort)s;
    }
}
