using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Offload.Replay.Capture;
using Xunit;

namespace Offload.Replay.Tests.Capture;

public sealed class MalformedCaptureTests
{
    private const int HostileLength = 200 * 1024 * 1024;   // under the reader's limit, far over what the tests' streams hold

    [Fact]
    public void EmptyAndUnknownFiles()
    {
        Assert.Equal(0, Fails([]).Offset);
        Assert.Equal(0, Fails([0xD4, 0xC3]).Offset);
        CaptureFormatException unknown = Fails("GIF89a..."u8.ToArray());
        Assert.Contains("magic", unknown.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void PcapHeaderProblems()
    {
        byte[] valid = PcapBuilder.Build(false, false, LinkLayer.Raw, 0);
        Fails(valid[..23]);
        Assert.Equal(4, Fails(PcapBuilder.Build(false, 0xA1B2C3D4, 3, LinkLayer.Raw, 0)).Offset);
        // Modified ("Kuznetzov") pcap has a different record layout; it is refused, not misread.
        Fails(PcapBuilder.Build(false, 0xA1B2CD34, 2, LinkLayer.Raw, 0));
    }

    [Fact]
    public void PcapRecordProblems()
    {
        byte[] valid = PcapBuilder.Build(true, false, LinkLayer.Raw, 0, new PcapRecord(1, 2, [1, 2, 3, 4], 4));

        // Cut in the record header, then in the data.
        Assert.Equal(24, Fails(valid[..30]).Offset);
        CaptureFormatException cut = Fails(valid[..^1]);
        Assert.Equal(24, cut.Offset);
        Assert.Contains("ends inside", cut.Message, StringComparison.Ordinal);

        byte[] hostile = (byte[])valid.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(hostile.AsSpan(24 + 8), uint.MaxValue);
        Assert.Contains("limit", Fails(hostile).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void HostilePcapLengthDoesNotAllocateItsClaim(bool seekable)
    {
        byte[] file = PcapBuilder.Build(false, false, LinkLayer.Raw, 0, new PcapRecord(1, 2, CaptureTestUtil.Bytes(100, 1), 100));
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(24 + 8), HostileLength);
        AssertFailsCheaply(file, seekable);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void HostilePcapngLengthDoesNotAllocateItsClaim(bool seekable)
    {
        var builder = new PcapngBuilder().Section().Interface(LinkLayer.Raw);
        builder.Bytes(builder.U32Bytes(6)).Bytes(builder.U32Bytes(HostileLength)).Bytes(CaptureTestUtil.Bytes(5000, 1));
        AssertFailsCheaply(builder.ToArray(), seekable);
    }

    [Fact]
    public void HostileSectionHeaderLength()
    {
        var builder = new PcapngBuilder().Section(bigEndian: true);
        byte[] file = builder.ToArray();
        BinaryPrimitives.WriteUInt32BigEndian(file.AsSpan(4), HostileLength);
        AssertFailsCheaply(file, seekable: false);
    }

    [Theory]
    [InlineData(0u, "below the minimum")]
    [InlineData(8u, "below the minimum")]
    [InlineData(30u, "multiple of 4")]
    [InlineData(0xFFFF_FFF0u, "limit")]
    [InlineData(0x1000_0004u, "limit")]
    public void BadBlockLengths(uint length, string why)
    {
        var builder = new PcapngBuilder().Section();
        long blockStart = builder.ToArray().Length;
        builder.Bytes(builder.U32Bytes(0xDEAD)).Bytes(builder.U32Bytes(length)).Bytes(new byte[64]);
        CaptureFormatException error = Fails(builder.ToArray());
        Assert.Equal(blockStart + 4, error.Offset);
        Assert.Contains(why, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SectionHeaderProblems()
    {
        byte[] valid = new PcapngBuilder().Section().ToArray();

        byte[] badOrder = (byte[])valid.Clone();
        badOrder[8] = 0x4C;
        Assert.Equal(8, Fails(badOrder).Offset);

        byte[] tooShort = (byte[])valid.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(tooShort.AsSpan(4), 24);
        Assert.Contains("below the minimum", Fails(tooShort).Message, StringComparison.Ordinal);

        Assert.Contains("version 2.0", Fails(new PcapngBuilder().Section(major: 2).ToArray()).Message, StringComparison.Ordinal);

        byte[] badTrailer = (byte[])valid.Clone();
        badTrailer[^4] = 0x20;
        Assert.Contains("trailing length", Fails(badTrailer).Message, StringComparison.Ordinal);

        // A later section header is checked the same way.
        byte[] second = [.. new PcapngBuilder().Section().Interface(LinkLayer.Raw).Enhanced(0, 1, [1]).ToArray(), .. badOrder];
        using var reader = new CaptureReader(new MemoryStream(second));
        Assert.True(reader.TryRead(out _));
        Assert.Throws<CaptureFormatException>(() => reader.TryRead(out _));
    }

    [Fact]
    public void TrailingLengthMustMatch()
    {
        var builder = new PcapngBuilder().Section().Interface(LinkLayer.Raw);
        long epbStart = builder.ToArray().Length;
        byte[] file = builder.Enhanced(0, 1, [1, 2, 3, 4]).ToArray();
        file[^4] ^= 0x04;
        CaptureFormatException error = Fails(file);
        Assert.Equal(epbStart + 32, error.Offset);
    }

    [Fact]
    public void PacketBlockProblems()
    {
        // Packet before any interface.
        Assert.Contains("before any interface", Fails(new PcapngBuilder().Section().Enhanced(0, 1, [1]).ToArray()).Message, StringComparison.Ordinal);
        Assert.Contains("before any interface", Fails(new PcapngBuilder().Section().Simple(1, [1]).ToArray()).Message, StringComparison.Ordinal);

        // Interface id beyond those described.
        Assert.Contains("describes only 1", Fails(new PcapngBuilder().Section().Interface(LinkLayer.Raw).Enhanced(1, 1, [1]).ToArray()).Message, StringComparison.Ordinal);

        // Captured length larger than the block.
        var builder = new PcapngBuilder().Section().Interface(LinkLayer.Raw);
        byte[] body = new byte[24];
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(12), 5);   // 5 captured bytes, but room for 4
        Assert.Contains("exceeds", Fails(builder.Block(6, body).ToArray()).Message, StringComparison.Ordinal);

        // Blocks too short for their fixed fields.
        Assert.Contains("too short", Fails(new PcapngBuilder().Section().Interface(LinkLayer.Raw).Block(6, new byte[16]).ToArray()).Message, StringComparison.Ordinal);
        Assert.Contains("too short", Fails(new PcapngBuilder().Section().Block(1, new byte[4]).ToArray()).Message, StringComparison.Ordinal);
        Assert.Contains("too short", Fails(new PcapngBuilder().Section().Interface(LinkLayer.Raw).Block(3, []).ToArray()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void OptionProblems()
    {
        // An option longer than what is left of its block.
        var builder = new PcapngBuilder().Section();
        byte[] body = [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 200, 0, (byte)'x', 0, 0, 0];
        Assert.Contains("option 2 has length 200", Fails(builder.Block(1, body).ToArray()).Message, StringComparison.Ordinal);

        // Resolutions that cannot be represented, or a resolution of the wrong size.
        Assert.Contains("if_tsresol", Fails(new PcapngBuilder().Section().Interface(LinkLayer.Raw, 0, TestOption.Tsresol(20)).ToArray()).Message, StringComparison.Ordinal);
        Assert.Contains("if_tsresol", Fails(new PcapngBuilder().Section().Interface(LinkLayer.Raw, 0, TestOption.Tsresol(0xC0)).ToArray()).Message, StringComparison.Ordinal);
        Assert.Contains("if_tsresol", Fails(new PcapngBuilder().Section().Interface(LinkLayer.Raw, 0, TestOption.Raw(9, [9, 9])).ToArray()).Message, StringComparison.Ordinal);
        Assert.Contains("if_tsoffset", Fails(new PcapngBuilder().Section().Interface(LinkLayer.Raw, 0, TestOption.U32(14, 1)).ToArray()).Message, StringComparison.Ordinal);
        Assert.Contains("epb_flags", Fails(new PcapngBuilder().Section().Interface(LinkLayer.Raw).Enhanced(0, 1, [1], null, TestOption.U64(2, 1)).ToArray()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TimestampsPastTheRangeOfALong()
    {
        Assert.Contains("2262", Fails(new PcapngBuilder().Section().Interface(LinkLayer.Raw, 0, TestOption.Tsresol(9)).Enhanced(0, ulong.MaxValue, [1]).ToArray()).Message, StringComparison.Ordinal);
        Assert.Contains("2262", Fails(new PcapngBuilder().Section().Interface(LinkLayer.Raw).Enhanced(0, 10_000_000_000_000_000, [1]).ToArray()).Message, StringComparison.Ordinal);
        Assert.Contains("offset", Fails(new PcapngBuilder().Section().Interface(LinkLayer.Raw, 0, TestOption.U64(14, long.MaxValue)).Enhanced(0, 1, [1]).ToArray()).Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Cutting a valid file anywhere gives either a clean end (at a block boundary, with the packets before it) or
    /// <see cref="CaptureFormatException"/> (inside a block, the last one included), on seekable and trickling streams.
    /// </summary>
    [Fact]
    public void EveryTruncationEndsCleanlyAtABoundaryAndThrowsInsideABlock()
    {
        var builder = new PcapngBuilder()
            .Section()
            .Interface(LinkLayer.Ethernet, 0, TestOption.Name("lan0"), TestOption.Tsresol(9))
            .Enhanced(0, 1, CaptureTestUtil.Bytes(5, 1), null, TestOption.Flags(1))
            .Block(0xBAD, [1, 2, 3])
            .Section(bigEndian: true)
            .Interface(LinkLayer.Raw)
            .Simple(3, [0x45, 0, 0])
            .Enhanced(0, 2, CaptureTestUtil.Bytes(8, 2));
        byte[] file = builder.ToArray();
        var boundaries = new HashSet<long>(builder.BlockStarts) { file.Length };
        var packetBlocksEndingAt = new Dictionary<long, int>();
        int packetsSoFar = 0;
        for (int i = 0; i < builder.BlockStarts.Count; i++)
        {
            long start = builder.BlockStarts[i];
            long end = i + 1 < builder.BlockStarts.Count ? builder.BlockStarts[i + 1] : file.Length;
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan((int)start));
            if (type is 6 or 3 or 0x06000000 or 0x03000000)
            {
                packetsSoFar++;
            }

            packetBlocksEndingAt[end] = packetsSoFar;
        }

        for (int cut = 0; cut < file.Length; cut++)
        {
            byte[] prefix = file[..cut];
            foreach (Func<byte[], Stream> open in new Func<byte[], Stream>[] { b => new MemoryStream(b), b => new TrickleStream(b) })
            {
                if (cut > 0 && boundaries.Contains(cut))
                {
                    using var reader = new CaptureReader(open(prefix));
                    Assert.Equal(packetBlocksEndingAt[cut], CaptureTestUtil.ReadAll(reader).Count);
                }
                else
                {
                    CaptureFormatException error = Assert.Throws<CaptureFormatException>(() =>
                    {
                        using var reader = new CaptureReader(open(prefix));
                        CaptureTestUtil.ReadAll(reader);
                    });
                    Assert.InRange(error.Offset, 0, cut);
                }
            }
        }
    }

    [Fact]
    public void EveryTruncationOfAPcapFile()
    {
        byte[] file = PcapBuilder.Build(false, true, LinkLayer.Raw, 0,
            new PcapRecord(1, 2, [1, 2, 3], 3), new PcapRecord(3, 4, [], 0), new PcapRecord(5, 6, [4], 1));
        var boundaries = new Dictionary<int, int> { [24] = 0, [43] = 1, [59] = 2, [76] = 3 };
        Assert.Equal(76, file.Length);
        for (int cut = 0; cut <= file.Length; cut++)
        {
            if (boundaries.TryGetValue(cut, out int count))
            {
                Assert.Equal(count, CaptureTestUtil.ReadAll(file[..cut]).Count);
            }
            else
            {
                Assert.Throws<CaptureFormatException>(() => CaptureTestUtil.ReadAll(file[..cut]));
            }
        }
    }

    /// <summary>Arbitrary bytes, bare or behind a valid file header, fail only with CaptureFormatException.</summary>
    [Fact]
    public async Task ArbitraryBytesOnlyEverRaiseCaptureFormatException()
    {
        byte[][] heads =
        [
            [],
            PcapBuilder.Build(false, false, LinkLayer.Ethernet, 0),
            PcapBuilder.Build(true, true, LinkLayer.Raw, 0),
            new PcapngBuilder().Section().ToArray(),
            new PcapngBuilder().Section(bigEndian: true).Interface(LinkLayer.Raw).ToArray(),
            new PcapngBuilder().Section().Interface(LinkLayer.Ethernet).ToArray()[..^4],
        ];
        Gen<(int Head, byte[] Tail)> inputs =
            from head in Gen.Choose(0, heads.Length - 1)
            from tail in ArbMap.Default.GeneratorFor<byte[]>()
            select (head, tail);

        await RunProperty(inputs, input => ReadsOrFailsCleanly([.. heads[input.Head], .. input.Tail]));
    }

    /// <summary>Valid files with bytes overwritten and possibly cut short fail only with CaptureFormatException.</summary>
    [Fact]
    public async Task MutatedFilesOnlyEverRaiseCaptureFormatException()
    {
        var written = new MemoryStream();
        using (var writer = new PcapngWriter(written, leaveOpen: true))
        {
            writer.AddInterface("lan0", LinkLayer.Ethernet);
            writer.AddInterface("wan0", LinkLayer.Raw);
            for (int i = 0; i < 6; i++)
            {
                writer.WritePacket(i % 2, i * 1_000_000_007L, CaptureTestUtil.Bytes(i * 11, (byte)i), (PacketDirection)(i % 3));
            }
        }

        byte[][] files =
        [
            written.ToArray(),
            new PcapngBuilder()
                .Section(bigEndian: true)
                .Interface(LinkLayer.Raw, 16, TestOption.Name("b"), TestOption.Tsresol(0x94), TestOption.U64(14, 5))
                .Simple(40, CaptureTestUtil.Bytes(40, 1))
                .Block(0xBAD, [1, 2, 3])
                .Enhanced(0, 77, CaptureTestUtil.Bytes(9, 3), 100, TestOption.Flags(2))
                .Section()
                .Interface(LinkLayer.Ethernet)
                .Enhanced(0, 1, [1])
                .ToArray(),
            PcapBuilder.Build(false, false, LinkLayer.Ethernet, 0, new PcapRecord(1, 2, CaptureTestUtil.Bytes(30, 1), 30), new PcapRecord(3, 4, [5], 1)),
            PcapBuilder.Build(true, true, LinkLayer.Raw, 0, new PcapRecord(1, 2, CaptureTestUtil.Bytes(30, 1), 30), new PcapRecord(3, 4, [5], 1)),
        ];

        Gen<(int File, (int Position, byte Value)[] Mutations, int Cut)> inputs =
            from file in Gen.Choose(0, files.Length - 1)
            from mutations in Gen.Zip(Gen.Choose(0, 4096), ArbMap.Default.GeneratorFor<byte>()).ArrayOf()
            from cut in Gen.Choose(0, 4096)
            select (file, mutations, cut);

        await RunProperty(inputs, input =>
        {
            byte[] bytes = (byte[])files[input.File].Clone();
            foreach ((int position, byte value) in input.Mutations)
            {
                bytes[position % bytes.Length] = value;
            }

            // Half the cases keep the whole file; the others cut it somewhere.
            int length = input.Cut % (2 * bytes.Length);
            ReadsOrFailsCleanly(length < bytes.Length ? bytes[..length] : bytes);
        });
    }

    private static async Task RunProperty<T>(Gen<T> inputs, Action<T> check)
    {
        Property property = Prop.ForAll(inputs.ToArbitrary(), check);
        // A hang in the reader would stall the test run: bound it, so that it fails instead.
        await Task.Run(() => Check.One(Config.QuickThrowOnFailure.WithMaxTest(2000), property)).WaitAsync(TimeSpan.FromMinutes(2));
    }

    private static void ReadsOrFailsCleanly(byte[] file)
    {
        foreach (Stream stream in new Stream[] { new MemoryStream(file), new TrickleStream(file, 13) })
        {
            try
            {
                using var reader = new CaptureReader(stream);
                int packets = 0;
                while (reader.TryRead(out CapturedPacket packet))
                {
                    // Each packet comes from a block of at least 12 bytes (16 for a pcap record).
                    packets++;
                    Assert.True(packets * 12 <= file.Length, "more packets than the file can hold");
                    Assert.True(packet.Data.Length <= file.Length);
                    Assert.InRange(packet.InterfaceId, 0, reader.Interfaces.Count - 1);
                    Assert.Equal(reader.Interfaces[packet.InterfaceId].LinkType, packet.LinkType);
                }
            }
            catch (CaptureFormatException error)
            {
                Assert.InRange(error.Offset, 0, file.Length);
            }
        }
    }

    private static CaptureFormatException Fails(byte[] file) =>
        Assert.Throws<CaptureFormatException>(() =>
        {
            using var reader = new CaptureReader(new MemoryStream(file));
            CaptureTestUtil.ReadAll(reader);
        });

    // A claimed length of 200 MiB on a stream holding a few KiB: the reader must fail without allocating the claim.
    private static void AssertFailsCheaply(byte[] file, bool seekable)
    {
        Stream stream = seekable ? new MemoryStream(file) : new TrickleStream(file, 4096);
        long before = GC.GetAllocatedBytesForCurrentThread();
        CaptureFormatException error = Assert.Throws<CaptureFormatException>(() =>
        {
            using var reader = new CaptureReader(stream);
            while (reader.TryRead(out _))
            {
            }
        });
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Contains("ends inside", error.Message, StringComparison.Ordinal);
        Assert.True(allocated < 1024 * 1024, $"allocated {allocated} bytes for a {file.Length}-byte file");
    }
}
