using System.Net;
using Offload.Interop.Ipset;
using Offload.Interop.Netlink;
using Offload.Interop.Tests.Support;
using Xunit;
using static Offload.Interop.Ipset.IpsetConstants;
using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Tests.Ipset;

/// <summary>
/// IpsetClient's protocol logic over a fake socket that answers with recorded or synthesised kernel messages:
/// the handshake, revision choice, batching, and which operation each answer (or its absence) is charged to.
/// </summary>
public sealed class IpsetClientReplayTests
{
    private static readonly IpsetEntry Entry = new(IpsetFamily.IPv4, IpsetEntry.Udp, Ip("192.0.2.1"), 5000, Ip("192.0.2.2"));

    [Fact]
    public void Open_asks_the_kernels_protocol_and_speaks_it()
    {
        using IpsetClient client = Open(out FakeTransport t);
        Assert.Equal(IPSET_PROTOCOL, client.Protocol);
        byte[] request = Assert.Single(t.Sent);
        byte[] tool = IpsetRecorded.Load(IpsetRecorded.RequestProtocol);
        Assert.Equal(Convert.ToHexString(tool[16..]), Convert.ToHexString(request[16..]));
    }

    [Fact]
    public void Open_refuses_a_kernel_whose_protocol_is_too_old()
    {
        var t = new FakeTransport();
        byte[] reply = IpsetRecorded.Answering(IpsetRecorded.ReplyProtocol, 1);
        reply[24] = 5;
        t.Incoming.Enqueue(new FakeTransport.Datagram(reply));
        NetlinkException e = Assert.Throws<NetlinkException>(() => IpsetClient.Open(t, 1 << 20));
        Assert.Equal(Errno.EPROTONOSUPPORT, e.Errno);
    }

    [Theory]
    [InlineData(6, 6)]
    [InlineData(9, 6)]
    [InlineData(3, 3)]
    public void Create_asks_for_the_older_of_the_kernels_newest_revision_and_ours(byte kernelNewest, byte expected)
    {
        using IpsetClient client = Open(out FakeTransport t);
        t.Incoming.Enqueue(new FakeTransport.Datagram(IpsetRecorded.TypeReplyWithRevision(2, kernelNewest)));
        client.Create("offl", IpsetType.HashIpPortIp, IpsetFamily.IPv4, 60, 1024);

        Assert.Equal(3, t.Sent.Count);
        Assert.Equal(MessageType(IPSET_CMD_TYPE), Type(t.Sent[1]));
        byte[] create = t.Sent[2];
        Assert.Equal(MessageType(IPSET_CMD_CREATE), Type(create));
        Assert.Equal([expected], Attribute(create, IPSET_ATTR_REVISION));
    }

    [Fact]
    public void Create_names_the_clash_when_the_set_exists_otherwise()
    {
        using IpsetClient client = Open(out FakeTransport t);
        t.Incoming.Enqueue(new FakeTransport.Datagram(IpsetRecorded.TypeReplyWithRevision(2, 6)));
        t.Answer = (seq, type) => [Synth.Error(seq, type, -(int)Errno.EEXIST)];
        NetlinkException e = Assert.Throws<NetlinkException>(() => client.Create("offl", IpsetType.HashIpPortIp, IpsetFamily.IPv4, 60, 1024));
        Assert.Equal(Errno.EEXIST, e.Errno);
        Assert.Contains("another type, timeout or maxelem", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Destroy_of_a_missing_set_is_fine_but_flush_of_one_is_not()
    {
        using IpsetClient client = Open(out FakeTransport t);
        t.Answer = (seq, type) => [Synth.Error(seq, type, -(int)Errno.ENOENT)];
        client.Destroy("gone");
        NetlinkException e = Assert.Throws<NetlinkException>(() => client.Flush("gone"));
        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Equal("flush ipset gone", e.Operation);
    }

    [Fact]
    public void Test_reads_the_kernels_not_in_set_answer_as_false()
    {
        using IpsetClient client = Open(out FakeTransport t);
        t.Answer = (seq, _) => [IpsetRecorded.Answering(IpsetRecorded.ReplyTestNotInSet, seq)];
        Assert.False(client.Test("offl", Entry));

        t.Answer = (seq, type) => [Synth.Error(seq, type)];
        Assert.True(client.Test("offl", Entry));

        t.Answer = (seq, type) => [Synth.Error(seq, type, -(int)Errno.ENOENT)];
        Assert.Equal(Errno.ENOENT, Assert.Throws<NetlinkException>(() => client.Test("offl", Entry)).Errno);
    }

    [Fact]
    public void Add_refused_throws_the_ipset_code_with_its_meaning_and_the_kernels_text()
    {
        using IpsetClient client = Open(out FakeTransport t);
        t.Answer = (seq, type) => [Synth.Error(seq, type, -IPSET_ERR_TIMEOUT, "no timeouts here")];
        NetlinkException e = Assert.Throws<NetlinkException>(() => client.Add("offl", Entry, 30));
        Assert.Equal(IpsetErrors.Timeout, e.Errno);
        Assert.Equal("no timeouts here", e.KernelMessage);
        Assert.Contains("IPSET_ERR_TIMEOUT", e.Message, StringComparison.Ordinal);
        Assert.Equal("add 192.0.2.1,udp:5000,192.0.2.2 to ipset offl", e.Operation);
    }

    [Fact]
    public void Apply_sends_at_most_256_messages_at_once_each_numbered_and_acknowledged()
    {
        using IpsetClient client = Open(out FakeTransport t);
        IpsetOperation[] ops = Operations(600);
        var results = new Errno[600];
        results.AsSpan().Fill(Errno.EIO);

        Assert.Equal(0, client.Apply(ops, results));

        Assert.All(results, r => Assert.Equal(Errno.None, r));
        byte[][] sends = t.Sent.Skip(1).ToArray();
        Assert.Equal(3, sends.Length);
        Assert.Equal(3, client.Counters.Sends);
        Assert.Equal(600, client.Counters.Operations);
        List<(ushort Type, ushort Flags, uint Sequence)> messages = sends.SelectMany(Decode).ToList();
        Assert.Equal([256, 256, 88], sends.Select(s => Decode(s).Count));
        Assert.All(messages, m => Assert.Equal(NLM_F_REQUEST | NLM_F_ACK, m.Flags));
        Assert.Equal(ops.Select(o => MessageType(o.Kind == IpsetOperationKind.Add ? IPSET_CMD_ADD : IPSET_CMD_DEL)), messages.Select(m => m.Type));
        Assert.Equal(messages.Count, messages.Select(m => m.Sequence).Distinct().Count());
    }

    [Fact]
    public void Apply_charges_each_refusal_to_its_own_operation()
    {
        using IpsetClient client = Open(out FakeTransport t);
        IpsetOperation[] ops = Operations(10);
        uint first = 0;
        t.Answer = (seq, type) =>
        {
            first = first == 0 ? seq : first;
            int index = (int)(seq - first);
            return [Synth.Error(seq, type, index is 3 or 7 ? -IPSET_ERR_HASH_FULL : 0)];
        };
        var results = new Errno[10];

        Assert.Equal(2, client.Apply(ops, results));

        Assert.Equal([3, 7], Enumerable.Range(0, 10).Where(i => results[i] != Errno.None));
        Assert.Equal(IpsetErrors.HashFull, results[3]);
        Assert.Equal(IpsetErrors.HashFull, client.Counters.LastError);
        Assert.Equal(2, client.Counters.Failed);
    }

    [Fact]
    public void Apply_answers_in_any_order_and_ignores_answers_to_nothing_in_flight()
    {
        using IpsetClient client = Open(out FakeTransport t);
        var held = new List<byte[]>();
        IpsetOperation[] ops = Operations(6);

        // The answers arrive reversed, after one to a request long gone.
        t.Answer = (seq, type) =>
        {
            held.Insert(0, Synth.Error(seq, type, seq % 2 == 0 ? -(int)Errno.ENOENT : 0));
            if (held.Count == ops.Length)
            {
                held.Insert(0, Synth.Error(99999, type, -(int)Errno.EPERM));
                return held.ToArray();
            }

            return [];
        };
        var results = new Errno[6];
        int failed = client.Apply(ops, results);

        Assert.Equal(3, failed);
        Assert.Equal(1, client.Counters.StaleAnswers);
        Assert.Equal(3, results.Count(r => r == Errno.ENOENT));
        Assert.DoesNotContain(Errno.EPERM, results);
    }

    [Fact]
    public void Apply_fails_what_it_cannot_send_without_sending_it()
    {
        using IpsetClient client = Open(out FakeTransport t);
        IpsetOperation[] ops = [Operations(1)[0], IpsetOperation.Add(new string('x', 32), Entry), default, Operations(1)[0]];
        var results = new Errno[4];

        Assert.Equal(2, client.Apply(ops, results));

        Assert.Equal([Errno.None, Errno.EINVAL, Errno.EINVAL, Errno.None], results);
        Assert.Equal(2, Decode(t.Sent[^1]).Count);
    }

    [Fact]
    public void Apply_charges_a_missing_answer_to_its_operation_as_a_timeout()
    {
        using IpsetClient client = Open(out FakeTransport t);
        client.AckTimeout = TimeSpan.FromMilliseconds(50);
        uint first = 0;
        t.Answer = (seq, type) =>
        {
            first = first == 0 ? seq : first;
            return seq - first == 2 ? [] : [Synth.Error(seq, type)];
        };
        var results = new Errno[5];

        Assert.Equal(1, client.Apply(Operations(5), results));

        Assert.Equal(Errno.ETIMEDOUT, results[2]);
        Assert.Equal(1, client.Counters.Unanswered);
    }

    [Fact]
    public void Apply_after_an_overrun_charges_the_lost_answers_as_ENOBUFS_and_stops_waiting()
    {
        using IpsetClient client = Open(out FakeTransport t);
        uint first = 0;
        t.Answer = (seq, type) =>
        {
            first = first == 0 ? seq : first;

            // The kernel dropped the answers to the second and third message: the socket reports ENOBUFS once.
            return (seq - first) switch
            {
                1 => [null!],
                2 => [],
                _ => [Synth.Error(seq, type)],
            };
        };
        var results = new Errno[5];

        Assert.Equal(2, client.Apply(Operations(5), results));

        Assert.Equal([Errno.None, Errno.ENOBUFS, Errno.ENOBUFS, Errno.None, Errno.None], results);
        Assert.Equal(1, client.Counters.NoBufferEvents);
        Assert.Equal(2, client.Counters.Unanswered);
        Assert.Equal(client.AckTimeout, t.ReceiveTimeout);
    }

    [Fact]
    public void Apply_fails_a_whole_send_the_kernel_refused_and_goes_on()
    {
        var t = new ThrowingTransport();
        t.Incoming.Enqueue(new FakeTransport.Datagram(IpsetRecorded.Answering(IpsetRecorded.ReplyProtocol, 1)));
        using IpsetClient client = IpsetClient.Open(t, 1 << 20);
        t.FailNext = true;
        var results = new Errno[300];

        Assert.Equal(256, client.Apply(Operations(300), results));

        Assert.All(results[..256], r => Assert.Equal(Errno.EMSGSIZE, r));
        Assert.All(results[256..], r => Assert.Equal(Errno.None, r));
    }

    [Fact]
    public void Apply_refuses_a_results_span_too_short()
    {
        using IpsetClient client = Open(out _);
        Assert.Throws<ArgumentException>(() => client.Apply(Operations(3), new Errno[2]));
    }

    private static IpsetClient Open(out FakeTransport t)
    {
        t = new FakeTransport();

        // The protocol request is not acknowledged but answered: queue the answer to our first sequence number.
        t.Incoming.Enqueue(new FakeTransport.Datagram(IpsetRecorded.Answering(IpsetRecorded.ReplyProtocol, 1)));
        return IpsetClient.Open(t, 1 << 20);
    }

    private static IpsetOperation[] Operations(int count) =>
        Enumerable.Range(0, count).Select(i =>
        {
            var e = new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, Ip("192.0.2.1"), (ushort)(1000 + i), Ip("192.0.2.2"));
            return i % 5 == 4 ? IpsetOperation.Delete("offl", e) : IpsetOperation.Add("offl", e, 30);
        }).ToArray();

    private static List<(ushort Type, ushort Flags, uint Sequence)> Decode(byte[] datagram)
    {
        var list = new List<(ushort, ushort, uint)>();
        var reader = new NetlinkMessageReader(datagram);
        while (reader.TryRead(out NetlinkMessage m))
        {
            list.Add((m.Type, m.Flags, m.Sequence));
        }

        Assert.False(reader.IsMalformed);
        return list;
    }

    private static ushort Type(byte[] message)
    {
        var reader = new NetlinkMessageReader(message);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        return m.Type;
    }

    private static byte[] Attribute(byte[] message, ushort type)
    {
        var reader = new NetlinkMessageReader(message);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        AttributeReader r = m.GetAttributes(KernelLayout.NfGenMsg.Size);
        while (r.TryRead(out NetlinkAttribute a))
        {
            if (a.Type == type)
            {
                return a.Value.ToArray();
            }
        }

        throw new InvalidDataException($"no attribute {type}");
    }

    private static byte[] Ip(string text) => IPAddress.Parse(text).GetAddressBytes();

    /// <summary>A fake whose next batch send fails as the kernel fails an oversized one.</summary>
    private sealed class ThrowingTransport : INetlinkTransport
    {
        private readonly FakeTransport _inner = new();

        internal Queue<FakeTransport.Datagram> Incoming => _inner.Incoming;

        internal bool FailNext { get; set; }

        public uint PortId => _inner.PortId;

        public TimeSpan ReceiveTimeout { get => _inner.ReceiveTimeout; set => _inner.ReceiveTimeout = value; }

        public uint NextSequence() => _inner.NextSequence();

        public void SendBatch(ReadOnlySpan<byte> messages)
        {
            if (FailNext)
            {
                FailNext = false;
                throw new NetlinkException(Errno.EMSGSIZE, "send");
            }

            _inner.SendBatch(messages);
        }

        public int Receive(Span<byte> buffer) => _inner.Receive(buffer);

        public int ReceiveMany(ReceiveSlots slots, int count) => _inner.ReceiveMany(slots, count);

        public void Dispose() => _inner.Dispose();
    }
}
