using Offload.Interop.Netlink;
using Offload.Interop.Tests.Support;
using Xunit;
using static Offload.Interop.Netlink.NetlinkConstants;
using static Offload.Interop.Nfqueue.NfqConstants;

namespace Offload.Interop.Tests.Netlink;

public sealed class ReaderTests
{
    [Fact]
    public void Recorded_bind_acknowledgement()
    {
        var reader = new NetlinkMessageReader(Recorded.Load(Recorded.BindAck));
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.True(m.IsError);
        Assert.Equal(NLM_F_CAPPED, m.Flags);
        Assert.Equal(1u, m.Sequence);
        Assert.True(m.TryGetError(out NetlinkError e));
        Assert.True(e.IsAck);
        Assert.Equal(Errno.None, e.Errno);
        Assert.Equal(MessageType(NFQNL_MSG_CONFIG), e.RequestType);
        Assert.Equal(1u, e.RequestSequence);
        Assert.True(e.KernelMessage.IsEmpty);
        Assert.Null(e.GetKernelMessageText());
        Assert.False(reader.TryRead(out _));
        Assert.False(reader.IsMalformed);
    }

    [Fact]
    public void Recorded_policy_error_carries_the_kernels_explanation()
    {
        var reader = new NetlinkMessageReader(Recorded.Load(Recorded.PolicyExtack));
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.Equal(NLM_F_CAPPED | NLM_F_ACK_TLVS, m.Flags);
        Assert.True(m.TryGetError(out NetlinkError e));
        Assert.Equal(Errno.ERANGE, e.Errno);
        Assert.Equal(-34, e.Code);
        Assert.Equal("Attribute failed policy validation", e.GetKernelMessageText());

        // NLMSGERR_ATTR_OFFS points at our NFQA_CFG_CMD: right after nlmsghdr and nfgenmsg.
        AttributeReader ack = e.ExtendedAck;
        uint? offset = null;
        while (ack.TryRead(out NetlinkAttribute a))
        {
            if (a.Type == NLMSGERR_ATTR_OFFS && a.TryGetU32(out uint o))
            {
                offset = o;
            }
        }

        Assert.Equal(20u, offset);
    }

    [Theory]
    [InlineData(Recorded.BindEperm, Errno.EPERM, NFQNL_MSG_CONFIG)]
    [InlineData(Recorded.VerdictEnoent, Errno.ENOENT, NFQNL_MSG_VERDICT)]
    public void Recorded_errors(string file, Errno errno, byte requestMessage)
    {
        var reader = new NetlinkMessageReader(Recorded.Load(file));
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.True(m.TryGetError(out NetlinkError e));
        Assert.False(e.IsAck);
        Assert.Equal(errno, e.Errno);
        Assert.Equal(MessageType(requestMessage), e.RequestType);
        Assert.Null(e.GetKernelMessageText());
    }

    [Fact]
    public void Recorded_packet_ends_unpadded_and_reads_to_its_last_byte()
    {
        byte[] datagram = Recorded.Load(Recorded.PacketLocalOut);
        Assert.Equal(95, datagram.Length);
        var reader = new NetlinkMessageReader(datagram);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.Equal(95, m.Length);
        Assert.Equal(0u, m.PortId);
        var types = new List<ushort>();
        AttributeReader attrs = m.GetAttributes(4);
        while (attrs.TryRead(out NetlinkAttribute a))
        {
            types.Add(a.Type);
        }

        Assert.False(attrs.IsMalformed);
        Assert.Equal([NFQA_PACKET_HDR, NFQA_IFINDEX_OUTDEV, NFQA_MARK, NFQA_PAYLOAD], types);
        Assert.False(reader.TryRead(out _));
        Assert.Equal(95, reader.Position);
        Assert.False(reader.IsMalformed);
    }

    [Fact]
    public void Multipart_answer_ends_with_done()
    {
        var buffer = new byte[256];
        var w = new NetlinkMessageWriter(buffer);
        for (int i = 0; i < 2; i++)
        {
            w.BeginMessage(0x100, NLM_F_MULTI, 5);
            w.PutU32(1, (uint)i);
            w.EndMessage();
        }

        w.BeginMessage(NLMSG_DONE, NLM_F_MULTI, 5);
        w.WriteFamilyHeader([0xFB, 0xFF, 0xFF, 0xFF]);
        w.EndMessage();

        var reader = new NetlinkMessageReader(w.WrittenSpan);
        int parts = 0;
        bool done = false;
        while (reader.TryRead(out NetlinkMessage m))
        {
            Assert.True(m.IsMultipart);
            if (m.IsDone)
            {
                done = true;
                Assert.Equal(-5, m.GetDoneStatus());
            }
            else
            {
                parts++;
            }
        }

        Assert.Equal(2, parts);
        Assert.True(done);
        Assert.False(reader.IsMalformed);
    }

    [Theory]
    [InlineData(new byte[] { 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })] // nlmsg_len below the header
    [InlineData(new byte[] { 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })] // nlmsg_len past the end
    [InlineData(new byte[] { 16, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3 })] // trailing junk
    [InlineData(new byte[] { 1, 2, 3 })] // shorter than a header
    public void Bad_message_lengths_stop_the_walk(byte[] datagram)
    {
        var reader = new NetlinkMessageReader(datagram);
        while (reader.TryRead(out _))
        {
        }

        Assert.True(reader.IsMalformed);
        Assert.False(reader.TryRead(out _));
    }

    [Theory]
    [InlineData(new byte[] { 2, 0, 1, 0 })] // nla_len below the header
    [InlineData(new byte[] { 12, 0, 1, 0, 0, 0, 0, 0 })] // nla_len past the end
    [InlineData(new byte[] { 5, 0, 1, 0, 9, 0, 0, 0, 1, 2 })] // two stray bytes
    public void Bad_attribute_lengths_stop_the_walk(byte[] attributes)
    {
        var reader = new AttributeReader(attributes);
        while (reader.TryRead(out _))
        {
        }

        Assert.True(reader.IsMalformed);
    }

    [Fact]
    public void Short_values_are_refused_not_read_past()
    {
        var reader = new AttributeReader([6, 0, 1, 0, 0xAB, 0xCD]);
        Assert.True(reader.TryRead(out NetlinkAttribute a));
        Assert.False(a.TryGetU32BigEndian(out _));
        Assert.False(a.TryGetU32(out _));
        Assert.False(a.TryGetU64BigEndian(out _));
        Assert.True(a.TryGetU16BigEndian(out ushort v));
        Assert.Equal(0xABCD, v);
    }

    [Fact]
    public void Error_message_too_short_for_nlmsgerr_is_not_decoded()
    {
        var buffer = new byte[64];
        var w = new NetlinkMessageWriter(buffer);
        w.BeginMessage(NLMSG_ERROR, 0, 1);
        w.WriteFamilyHeader([0xFF, 0xFF, 0xFF, 0xFF]);
        w.EndMessage();
        var reader = new NetlinkMessageReader(w.WrittenSpan);
        Assert.True(reader.TryRead(out NetlinkMessage m));
        Assert.False(m.TryGetError(out _));
    }

    [Fact]
    public void Every_truncation_of_a_recorded_packet_is_read_or_refused_never_overrun()
    {
        byte[] datagram = Recorded.Load(Recorded.PacketPrerouting);
        for (int length = 0; length < datagram.Length; length++)
        {
            var reader = new NetlinkMessageReader(datagram.AsSpan(0, length));
            Assert.False(reader.TryRead(out _));
            Assert.Equal(length != 0, reader.IsMalformed);
        }
    }
}
