using FsCheck;
using FsCheck.Fluent;
using Offload.Interop.Netlink;
using Offload.Interop.Nfqueue;
using Offload.Interop.Tests.Support;
using Xunit;

namespace Offload.Interop.Tests.Netlink;

/// <summary>
/// Whatever bytes arrive, the readers and the packet parser neither throw nor read outside the datagram, and
/// every walk ends. Random bytes alone rarely get past the first header, so most cases start from datagrams the
/// kernel really sent, with some bytes changed (length fields above all).
/// </summary>
public sealed class ReaderPropertyTests
{
    private static readonly Config Runs = Config.QuickThrowOnFailure.WithMaxTest(3000);

    private static readonly byte[][] Seeds =
    [
        Recorded.Load(Recorded.PacketLocalOut),
        Recorded.Load(Recorded.PacketPrerouting),
        Recorded.Load(Recorded.PolicyExtack),
        Recorded.Load(Recorded.BindAck),
        Recorded.Load(Recorded.VerdictEnoent),
        [.. Recorded.Load(Recorded.BindAck), .. Recorded.Load(Recorded.PacketLocalOut)],
        Synth.Packet(5, Synth.Ipv4(1), mark: 3, capLen: 1000, skbInfo: 7, timestamp: (1, 2)),
    ];

    // Offsets of length fields in the seeds (nlmsg_len, first attributes' nla_len) get most of the edits.
    private static readonly Gen<int> Position = Gen.Frequency(
        (3, Gen.Elements(0, 1, 16, 17, 20, 21, 24, 32, 40, 48, 56)),
        (2, Gen.Choose(0, 120)));

    private static readonly Gen<byte[]> Mutated =
        from seed in Gen.Elements(Seeds)
        from edits in Gen.ListOf(Position.SelectMany(p => Gen.Choose(0, 255).Select(b => (p, (byte)b))))
        from cut in Gen.Frequency((3, Gen.Constant(int.MaxValue)), (1, Gen.Choose(0, 120)))
        select Apply(seed, edits, cut);

    [Fact]
    public void Random_bytes_never_throw()
    {
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), Sane));
    }

    [Fact]
    public void Mutated_kernel_messages_never_throw()
    {
        Check.One(Runs, Prop.ForAll(Mutated.ToArbitrary(), Sane));
    }

    [Fact]
    public void The_queue_hands_over_or_answers_every_readable_packet_and_never_throws()
    {
        Gen<byte[][]> bursts = Gen.ArrayOf(Mutated, 6);
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(300), Prop.ForAll(bursts.ToArbitrary(), datagrams =>
        {
            var transport = new FakeTransport();
            using NfQueue queue = NfQueue.Open(transport, 7, new NfQueueOptions { MaxBatch = 4, CopyRange = 64 }, 1 << 20);
            foreach (byte[] d in datagrams)
            {
                transport.Incoming.Enqueue(new FakeTransport.Datagram(d, Truncate: d.Length % 7 == 0));
            }

            var packets = new QueuedPacket[3];
            int handed = 0;
            for (int i = 0; i < 20; i++)
            {
                int n = queue.ReceiveBatch(packets);
                for (int j = 0; j < n; j++)
                {
                    Assert.InRange(packets[j].CapturedLength, 0, 64 + 1024);
                    queue.SetVerdict(packets[j].PacketId, NfVerdict.Accept);
                }

                handed += n;
            }

            NfQueueCounters c = queue.Counters;
            Assert.Equal(handed, c.PacketsReceived);
            Assert.Equal(c.PacketsReceived + c.AutomaticVerdicts, c.PacketsVerdicted);
            return true;
        }));
    }

    private static byte[] Apply(byte[] seed, IEnumerable<(int Position, byte Value)> edits, int cut)
    {
        byte[] bytes = seed.ToArray();
        foreach ((int p, byte v) in edits)
        {
            if (p < bytes.Length)
            {
                bytes[p] = v;
            }
        }

        return cut < bytes.Length ? bytes[..cut] : bytes;
    }

    private static bool Sane(byte[] datagram)
    {
        datagram ??= [];
        var reader = new NetlinkMessageReader(datagram);
        int messages = 0, last = 0;
        while (reader.TryRead(out NetlinkMessage m))
        {
            messages++;
            Assert.True(reader.Position > last && reader.Position <= datagram.Length);
            last = reader.Position;
            Assert.InRange(m.Length, 16, datagram.Length);

            if (m.TryGetError(out NetlinkError e))
            {
                _ = e.Errno;
                _ = e.GetKernelMessageText();
                Walk(e.ExtendedAck, 0);
            }

            _ = m.GetDoneStatus();
            Walk(m.GetAttributes(4), 0);
            Walk(m.GetAttributes(1000), 0);

            if (NfqPacketParser.Parse(datagram, m, out QueuedPacket p) == PacketParseStatus.Ok)
            {
                Span<byte> payload = p.Payload;
                Assert.True(payload.Length <= datagram.Length);
                Assert.True(p.OriginalLength >= p.CapturedLength);
            }

            _ = NfqPacketParser.TryRecoverPacketId(m.Bytes, out _);
        }

        Assert.True(messages <= (datagram.Length / 16) + 1);
        _ = NfqPacketParser.TryRecoverPacketId(datagram, out _);
        return true;
    }

    private static void Walk(AttributeReader attributes, int depth)
    {
        int steps = 0;
        while (attributes.TryRead(out NetlinkAttribute a))
        {
            Assert.True(++steps < 100_000);
            _ = a.TryGetU8(out _);
            _ = a.TryGetU16BigEndian(out _);
            _ = a.TryGetU32BigEndian(out _);
            _ = a.TryGetU32(out _);
            _ = a.TryGetU64BigEndian(out _);
            if (depth < 4)
            {
                Walk(a.GetNested(), depth + 1);
            }
        }
    }
}
