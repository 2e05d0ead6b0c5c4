using System.Net;
using Offload.Interop.Ctnetlink;
using Offload.Interop.Netlink;
using Xunit;

namespace Offload.Interop.Tests.Ctnetlink;

/// <summary>
/// Our ctnetlink requests byte for byte, written out attribute by attribute from nfnetlink_conntrack.h: a create carries
/// the untranslated reply and the NAT as a one-address, one-port range (the kernel derives the translated reply), the
/// status SEEN_REPLY|ASSURED|CONFIRMED, a timeout, and for TCP the state ESTABLISHED with liberal window tracking; and
/// destroy events are read back to their original tuple.
/// </summary>
public sealed class CtnlMessageTests
{
    private static readonly CtnlTuple Original = Tuple(6, "10.0.0.2", "198.51.100.2", 40000, 30000);
    private static readonly CtnlTuple Reply = Tuple(6, "198.51.100.2", "203.0.113.1", 30000, 61000);

    [Fact]
    public void A_source_natted_tcp_create_is_laid_out_as_the_kernel_reads_it()
    {
        string expected = string.Concat(
            "e4000000", "0001", "0506", "07000000", "00000000",   // nlmsghdr: len 228, CT_NEW of subsys 1, REQUEST|ACK|EXCL|CREATE, seq 7
            "02000000",                                             // nfgenmsg: AF_INET, v0, res_id 0
            "34000180",                                             // CTA_TUPLE_ORIG (nested)
            "14000180", "08000100", "0a000002", "08000200", "c6336402", //   CTA_TUPLE_IP: V4_SRC 10.0.0.2, V4_DST 198.51.100.2
            "1c000280", "05000100", "06000000", "06000200", "9c400000", "06000300", "75300000", // CTA_TUPLE_PROTO: tcp 40000 -> 30000
            "34000280",                                             // CTA_TUPLE_REPLY: the untranslated inverse
            "14000180", "08000100", "c6336402", "08000200", "0a000002",
            "1c000280", "05000100", "06000000", "06000200", "75300000", "06000300", "9c400000",
            "28000680",                                             // CTA_NAT_SRC
            "08000100", "cb007101", "08000200", "cb007101",         //   MINIP = MAXIP = 203.0.113.1
            "14000380", "06000100", "ee480000", "06000200", "ee480000", // CTA_NAT_PROTO: port 61000..61000
            "08000300", "0000000e",                                 // CTA_STATUS: SEEN_REPLY|ASSURED|CONFIRMED
            "08000700", "0000012c",                                 // CTA_TIMEOUT 300
            "30000480", "2c000180",                                 // CTA_PROTOINFO, CTA_PROTOINFO_TCP
            "05000100", "03000000",                                 //   STATE ESTABLISHED
            "05000200", "07000000", "05000300", "02000000",         //   WSCALE_ORIGINAL 7, WSCALE_REPLY 2
            "06000400", "09090000", "06000500", "09090000");        //   FLAGS_ORIGINAL/REPLY: WINDOW_SCALE|BE_LIBERAL, same mask

        byte[] buffer = new byte[CtnlMessages.MaxMessageSize];
        var w = new NetlinkMessageWriter(buffer);
        CtnlMessages.WriteNew(ref w, 7, new CtnlEntry(Original, Reply, 300, 7, 2));

        Assert.Equal(expected, Convert.ToHexStringLower(w.WrittenSpan));
    }

    [Fact]
    public void A_destination_natted_udp_create_carries_nat_dst_and_no_tcp_information()
    {
        var original = Tuple(17, "198.51.100.2", "203.0.113.1", 5004, 61002);
        var reply = Tuple(17, "10.0.0.2", "198.51.100.2", 6004, 5004);
        byte[] buffer = new byte[CtnlMessages.MaxMessageSize];
        var w = new NetlinkMessageWriter(buffer);
        CtnlMessages.WriteNew(ref w, 1, new CtnlEntry(original, reply, 30));

        string hex = Convert.ToHexStringLower(w.WrittenSpan);
        Assert.Contains("28000d80" + "08000100" + "0a000002" + "08000200" + "0a000002" + "14000380" + "06000100" + "17740000" + "06000200" + "17740000", hex, StringComparison.Ordinal);
        Assert.DoesNotContain("28000680", hex, StringComparison.Ordinal);
        Assert.EndsWith("08000700" + "0000001e", hex, StringComparison.Ordinal);
    }

    [Fact]
    public void Get_and_delete_name_the_entry_by_its_original_tuple_alone()
    {
        byte[] buffer = new byte[CtnlMessages.MaxMessageSize];
        var w = new NetlinkMessageWriter(buffer);
        CtnlMessages.WriteGet(ref w, 3, Original);
        CtnlMessages.WriteDelete(ref w, 4, Original);

        string hex = Convert.ToHexStringLower(w.WrittenSpan);
        const string tuple = "34000180" + "14000180" + "08000100" + "0a000002" + "08000200" + "c6336402" + "1c000280" + "05000100" + "06000000" + "06000200" + "9c400000" + "06000300" + "75300000";
        Assert.Equal("48000000" + "0101" + "0100" + "03000000" + "00000000" + "02000000" + tuple
            + "48000000" + "0201" + "0500" + "04000000" + "00000000" + "02000000" + tuple, hex);
    }

    [Fact]
    public void A_destroy_event_is_read_back_to_its_original_tuple_and_other_messages_are_ignored()
    {
        // What the kernel multicasts: CT_DELETE with both tuples (here, written by us as a GET's answer would be), then
        // a message of another kind.
        byte[] buffer = new byte[1024];
        var w = new NetlinkMessageWriter(buffer);
        WriteEvent(ref w, 2, Original, Reply);
        WriteEvent(ref w, 0, Original, Reply);

        Span<CtnlTuple> destroyed = new CtnlTuple[4];
        int n = CtnlDestroyEvents.Parse(w.WrittenSpan, destroyed, out int ignored);

        Assert.Equal(1, n);
        Assert.Equal(Original, destroyed[0]);
        Assert.Equal(1, ignored);
    }

    [Fact]
    public void A_truncated_event_yields_nothing()
    {
        byte[] buffer = new byte[1024];
        var w = new NetlinkMessageWriter(buffer);
        WriteEvent(ref w, 2, Original, Reply);
        byte[] cut = w.WrittenSpan[..40].ToArray();
        cut[0] = 40; // the header says what is there; the tuples are cut short

        Span<CtnlTuple> destroyed = new CtnlTuple[4];
        Assert.Equal(0, CtnlDestroyEvents.Parse(cut, destroyed, out _));
    }

    private static void WriteEvent(ref NetlinkMessageWriter w, byte message, CtnlTuple original, CtnlTuple reply)
    {
        // The layout of an event is that of a request: our writer's own tuple encoding, checked above, stands in for the kernel's.
        byte[] scratch = new byte[CtnlMessages.MaxMessageSize];
        var inner = new NetlinkMessageWriter(scratch);
        CtnlMessages.WriteGet(ref inner, 0, original);
        var withReply = new NetlinkMessageWriter(new byte[CtnlMessages.MaxMessageSize]);
        CtnlMessages.WriteGet(ref withReply, 0, reply);
        ReadOnlySpan<byte> orig = inner.WrittenSpan[20..];
        byte[] rep = withReply.WrittenSpan[20..].ToArray();
        rep[2] = 2; // CTA_TUPLE_REPLY

        w.BeginMessage(CtnlMessages.MessageType(message), 0, 0);
        w.WriteNfGenMsg(CtnlTuple.Inet, 0, 0);
        w.WriteFamilyHeader(orig);
        w.WriteFamilyHeader(rep);
        w.EndMessage();
    }

    private static CtnlTuple Tuple(byte protocol, string source, string destination, ushort sourcePort, ushort destinationPort)
    {
        byte[] s = IPAddress.Parse(source).GetAddressBytes();
        return CtnlTuple.Of(s.Length == 4 ? CtnlTuple.Inet : CtnlTuple.Inet6, protocol, s, IPAddress.Parse(destination).GetAddressBytes(), sourcePort, destinationPort);
    }
}
