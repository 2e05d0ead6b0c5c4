using System.Buffers.Binary;
using Offload.Interop.Netlink;
using Offload.Interop.Nfqueue;
using Xunit;
using static Offload.Interop.Netlink.NetlinkConstants;
using static Offload.Interop.Nfqueue.NfqConstants;

namespace Offload.Interop.Tests.Netlink;

public sealed class WriterTests
{
    [Fact]
    public void Bind_request_is_laid_out_byte_for_byte_as_the_kernel_expects()
    {
        var buffer = new byte[128];
        buffer.AsSpan().Fill(0xAA);
        var w = new NetlinkMessageWriter(buffer);
        NfqMessages.WriteConfig(ref w, 7, 1, ack: true, NFQNL_CFG_CMD_BIND, NFQNL_COPY_PACKET, 0xFFFF, 1024, 0x1F, NFQA_CFG_F_FAIL_OPEN);

        byte[] expected =
        [
            // nlmsghdr: len 64, type 0x0302 (queue, config), flags REQUEST|ACK, seq 1, pid 0
            64, 0, 0, 0, 0x02, 0x03, 0x05, 0x00, 1, 0, 0, 0, 0, 0, 0, 0,
            // nfgenmsg: AF_UNSPEC, v0, queue 7 (network order)
            0, 0, 0, 7,
            // NFQA_CFG_CMD: bind, pad, pf 0
            8, 0, 1, 0, 1, 0, 0, 0,
            // NFQA_CFG_PARAMS: copy range 0xFFFF (network order), copy mode packet, 3 bytes padding zeroed
            9, 0, 2, 0, 0, 0, 0xFF, 0xFF, 2, 0, 0, 0,
            // NFQA_CFG_QUEUE_MAXLEN 1024
            8, 0, 3, 0, 0, 0, 4, 0,
            // NFQA_CFG_MASK 0x1F, NFQA_CFG_FLAGS fail-open
            8, 0, 4, 0, 0, 0, 0, 0x1F,
            8, 0, 5, 0, 0, 0, 0, 1,
        ];
        Assert.Equal(expected, w.WrittenSpan.ToArray());
        Assert.Equal(0xAA, buffer[64]);
    }

    [Fact]
    public void Batch_verdict_with_a_mark_is_laid_out_byte_for_byte_as_the_kernel_expects()
    {
        var buffer = new byte[64];
        buffer.AsSpan().Fill(0xAA);
        var w = new NetlinkMessageWriter(buffer);
        NfqMessages.WriteVerdictBatch(ref w, 7, 3, 0x01020304, NF_ACCEPT, hasMark: true, 0xC0FFEE01);

        byte[] expected =
        [
            // nlmsghdr: len 40, type 0x0303 (queue, verdict batch), flags REQUEST, seq 3, pid 0
            40, 0, 0, 0, 0x03, 0x03, 0x01, 0x00, 3, 0, 0, 0, 0, 0, 0, 0,
            // nfgenmsg: AF_UNSPEC, v0, queue 7 (network order)
            0, 0, 0, 7,
            // NFQA_VERDICT_HDR (2): verdict accept, max id (both network order)
            12, 0, 2, 0, 0, 0, 0, 1, 1, 2, 3, 4,
            // NFQA_MARK (3), network order: the kernel sets it on every packet the batch covers
            8, 0, 3, 0, 0xC0, 0xFF, 0xEE, 0x01,
        ];
        Assert.Equal(expected, w.WrittenSpan.ToArray());
        Assert.Equal(NfqMessages.VerdictSize(hasMark: true, -1), w.Length);
        Assert.Equal(0xAA, buffer[40]);
    }

    [Fact]
    public void Verdict_with_mark_and_payload_reads_back()
    {
        var buffer = new byte[256];
        var w = new NetlinkMessageWriter(buffer);
        byte[] payload = [1, 2, 3, 4, 5];
        NfqMessages.WriteVerdict(ref w, 3, 9, 77, NF_ACCEPT, hasMark: true, 0xBEEF, payload, hasPayload: true);
        Assert.Equal(NfqMessages.VerdictSize(true, payload.Length), w.Length);

        var reader = new NetlinkMessageReader(w.WrittenSpan);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.Equal(MessageType(NFQNL_MSG_VERDICT), m.Type);
        Assert.Equal(NLM_F_REQUEST, m.Flags);
        Assert.Equal(9u, m.Sequence);
        Assert.Equal(3, BinaryPrimitives.ReadUInt16BigEndian(m.Payload[2..]));
        AttributeReader attrs = m.GetAttributes(4);
        Assert.True(attrs.TryRead(out NetlinkAttribute a));
        Assert.Equal(NFQA_VERDICT_HDR, a.Type);
        Assert.Equal(NF_ACCEPT, BinaryPrimitives.ReadUInt32BigEndian(a.Value));
        Assert.Equal(77u, BinaryPrimitives.ReadUInt32BigEndian(a.Value[4..]));
        Assert.True(attrs.TryRead(out a));
        Assert.Equal(NFQA_MARK, a.Type);
        Assert.True(a.TryGetU32BigEndian(out uint mark));
        Assert.Equal(0xBEEFu, mark);
        Assert.True(attrs.TryRead(out a));
        Assert.Equal(NFQA_PAYLOAD, a.Type);
        Assert.Equal(payload, a.Value.ToArray());
        Assert.False(attrs.TryRead(out _));
        Assert.False(attrs.IsMalformed);
        Assert.False(reader.TryRead(out _));
    }

    [Fact]
    public void Nested_attributes_get_their_length_and_flag()
    {
        var buffer = new byte[128];
        var w = new NetlinkMessageWriter(buffer);
        w.BeginMessage(0x100, NLM_F_REQUEST, 1);
        w.WriteNfGenMsg(2, 0, 0);
        int outer = w.BeginNested(19);
        w.PutU16BigEndian(1, 0x8100);
        int inner = w.BeginNested(2);
        w.PutU8(5, 9);
        w.EndNested(inner);
        w.EndNested(outer);
        w.PutU32(20, 0x01020304);
        int length = w.EndMessage();
        Assert.Equal(w.Length, length);

        var reader = new NetlinkMessageReader(w.WrittenSpan);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        AttributeReader attrs = m.GetAttributes(4);
        Assert.True(attrs.TryRead(out NetlinkAttribute nest));
        Assert.True(nest.IsNested);
        Assert.Equal(19, nest.Type);
        Assert.Equal(8 + 4 + 8, nest.Value.Length);
        AttributeReader inside = nest.GetNested();
        Assert.True(inside.TryRead(out NetlinkAttribute a));
        Assert.True(a.TryGetU16BigEndian(out ushort tpid));
        Assert.Equal(0x8100, tpid);
        Assert.True(inside.TryRead(out NetlinkAttribute innerNest));
        Assert.True(innerNest.IsNested);
        AttributeReader deepest = innerNest.GetNested();
        Assert.True(deepest.TryRead(out a));
        Assert.True(a.TryGetU8(out byte b));
        Assert.Equal(9, b);
        Assert.False(inside.TryRead(out _));
        Assert.True(attrs.TryRead(out a));
        Assert.True(a.TryGetU32(out uint host));
        Assert.Equal(0x01020304u, host);
    }

    [Fact]
    public void Padding_is_zeroed_even_in_a_dirty_buffer()
    {
        var buffer = new byte[64];
        buffer.AsSpan().Fill(0xFF);
        var w = new NetlinkMessageWriter(buffer);
        w.BeginMessage(0x100, 0, 0);
        w.PutAttribute(1, [7]);
        w.EndMessage();
        Assert.Equal(24, w.Length);
        Assert.Equal([5, 0, 1, 0, 7, 0, 0, 0], buffer[16..24]);
    }

    [Fact]
    public void Several_messages_back_to_back_read_back_in_order()
    {
        var buffer = new byte[512];
        var w = new NetlinkMessageWriter(buffer);
        for (uint i = 1; i <= 5; i++)
        {
            NfqMessages.WriteVerdictBatch(ref w, 1, i, i * 10, NF_DROP);
        }

        Assert.Equal(5 * NfqMessages.PlainVerdictSize, w.Length);
        var reader = new NetlinkMessageReader(w.WrittenSpan);
        uint expected = 1;
        while (reader.TryRead(out NetlinkMessage m))
        {
            Assert.Equal(expected++, m.Sequence);
            Assert.Equal(MessageType(NFQNL_MSG_VERDICT_BATCH), m.Type);
        }

        Assert.Equal(6u, expected);
        Assert.False(reader.IsMalformed);
    }

    [Fact]
    public void Misuse_and_overflow_throw()
    {
        Assert.Throws<InvalidOperationException>(() =>
        {
            var w = new NetlinkMessageWriter(new byte[20]);
            w.BeginMessage(1, 0, 0);
            w.PutU32BigEndian(1, 1);
        });
        Assert.Throws<InvalidOperationException>(() =>
        {
            var w = new NetlinkMessageWriter(new byte[20]);
            w.EndMessage();
        });
        Assert.Throws<InvalidOperationException>(() =>
        {
            var w = new NetlinkMessageWriter(new byte[100]);
            w.BeginMessage(1, 0, 0);
            w.BeginMessage(1, 0, 0);
        });
        Assert.Throws<InvalidOperationException>(() =>
        {
            var w = new NetlinkMessageWriter(new byte[70000]);
            w.BeginMessage(1, 0, 0);
            w.ReserveAttribute(1, ushort.MaxValue);
        });
    }
}
