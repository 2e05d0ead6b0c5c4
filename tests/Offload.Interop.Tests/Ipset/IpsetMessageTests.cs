using System.Net;
using Offload.Interop.Ipset;
using Offload.Interop.Netlink;
using Xunit;
using static Offload.Interop.Ipset.IpsetConstants;
using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Tests.Ipset;

/// <summary>
/// Our requests, byte for byte against what the ipset tool sent to the kernel for the same command (Data/ipset-*.bin).
/// The only liberty: the tool's trailing IPSET_ATTR_LINENO 0 in adds and deletes, which we do not send.
/// </summary>
public sealed class IpsetMessageTests
{
    private static readonly byte[] Name = "offl\0"u8.ToArray();
    private static readonly byte[] Name6 = "offl6\0"u8.ToArray();
    private static readonly IpsetEntry V4 = new(IpsetFamily.IPv4, IpsetEntry.Udp, Ip("192.0.2.1"), 5000, Ip("192.0.2.2"));
    private static readonly IpsetEntry V6 = new(IpsetFamily.IPv6, IpsetEntry.Udp, Ip("2001:db8::1"), 5000, Ip("2001:db8::2"));

    [Fact]
    public void Protocol_request_matches_the_tool()
    {
        byte[] tool = IpsetRecorded.Load(IpsetRecorded.RequestProtocol);
        AssertSame(tool, (ref NetlinkMessageWriter w) => IpsetMessages.WriteProtocolRequest(ref w, IpsetRecorded.Sequence(tool)));
    }

    [Fact]
    public void Type_request_matches_the_tool()
    {
        byte[] tool = IpsetRecorded.Load(IpsetRecorded.RequestType);
        AssertSame(tool, (ref NetlinkMessageWriter w) =>
            IpsetMessages.WriteTypeRequest(ref w, IpsetRecorded.Sequence(tool), IPSET_PROTOCOL, IpsetType.HashIpPortIp, IpsetFamily.IPv4));
    }

    [Theory]
    [InlineData(IpsetRecorded.CreateIpPortIpInet, "offl", IpsetType.HashIpPortIp, IpsetFamily.IPv4, (byte)6, 60u, 1024u)]
    [InlineData(IpsetRecorded.CreateIpPortIpInet6, "offl6", IpsetType.HashIpPortIp, IpsetFamily.IPv6, (byte)6, 60u, 1024u)]
    [InlineData(IpsetRecorded.CreateIpPortInet, "offlp", IpsetType.HashIpPort, IpsetFamily.IPv4, (byte)7, null, 65536u)]
    public void Create_with_exist_semantics_matches_the_tools_create_exist(
        string file, string name, IpsetType type, byte family, byte revision, uint? timeout, uint maxElements)
    {
        byte[] tool = IpsetRecorded.Load(file);
        byte[] setName = [.. System.Text.Encoding.ASCII.GetBytes(name), 0];
        AssertSame(tool, (ref NetlinkMessageWriter w) =>
            IpsetMessages.WriteCreate(ref w, IpsetRecorded.Sequence(tool), IPSET_PROTOCOL, setName, type, revision, family, timeout, maxElements));

        // -exist is the absence of NLM_F_EXCL; nothing else in the message says it.
        Assert.Equal(0, Flags(tool) & NLM_F_EXCL);
    }

    [Fact]
    public void Add_of_an_ipv4_entry_with_timeout_matches_the_tool()
    {
        byte[] tool = IpsetRecorded.Load(IpsetRecorded.AddIpv4);
        AssertSame(IpsetRecorded.WithoutLineNumber(tool), (ref NetlinkMessageWriter w) =>
            IpsetMessages.WriteEntryCommand(ref w, IPSET_CMD_ADD, IpsetRecorded.Sequence(tool), IPSET_PROTOCOL, Name, V4, 30));
        Assert.Equal(NLM_F_REQUEST | NLM_F_ACK, Flags(tool));
    }

    [Fact]
    public void Add_of_an_ipv6_entry_with_timeout_matches_the_tool()
    {
        byte[] tool = IpsetRecorded.Load(IpsetRecorded.AddIpv6);
        AssertSame(IpsetRecorded.WithoutLineNumber(tool), (ref NetlinkMessageWriter w) =>
            IpsetMessages.WriteEntryCommand(ref w, IPSET_CMD_ADD, IpsetRecorded.Sequence(tool), IPSET_PROTOCOL, Name6, V6, 30));
    }

    [Fact]
    public void Add_of_a_hash_ip_port_entry_without_timeout_matches_the_tool()
    {
        byte[] tool = IpsetRecorded.Load(IpsetRecorded.AddIpPort);
        var entry = new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Tcp, Ip("192.0.2.9"), 21);
        AssertSame(IpsetRecorded.WithoutLineNumber(tool), (ref NetlinkMessageWriter w) =>
            IpsetMessages.WriteEntryCommand(ref w, IPSET_CMD_ADD, IpsetRecorded.Sequence(tool), IPSET_PROTOCOL, "offlp\0"u8, entry, null));
    }

    [Fact]
    public void Delete_matches_the_tool()
    {
        byte[] tool = IpsetRecorded.Load(IpsetRecorded.DelIpv4);
        AssertSame(IpsetRecorded.WithoutLineNumber(tool), (ref NetlinkMessageWriter w) =>
            IpsetMessages.WriteEntryCommand(ref w, IPSET_CMD_DEL, IpsetRecorded.Sequence(tool), IPSET_PROTOCOL, Name, V4, null));
    }

    [Fact]
    public void Test_matches_the_tool_exactly()
    {
        byte[] tool = IpsetRecorded.Load(IpsetRecorded.TestIpv4);
        AssertSame(tool, (ref NetlinkMessageWriter w) =>
            IpsetMessages.WriteEntryCommand(ref w, IPSET_CMD_TEST, IpsetRecorded.Sequence(tool), IPSET_PROTOCOL, Name, V4, null));
    }

    [Theory]
    [InlineData(IpsetRecorded.Flush, IPSET_CMD_FLUSH)]
    [InlineData(IpsetRecorded.Destroy, IPSET_CMD_DESTROY)]
    public void Set_commands_match_the_tool(string file, byte command)
    {
        byte[] tool = IpsetRecorded.Load(file);
        AssertSame(tool, (ref NetlinkMessageWriter w) => IpsetMessages.WriteSetCommand(ref w, command, IpsetRecorded.Sequence(tool), IPSET_PROTOCOL, Name));
    }

    [Fact]
    public void The_largest_entry_message_fits_the_size_we_reserve_for_it()
    {
        var buffer = new byte[1024];
        var w = new NetlinkMessageWriter(buffer);
        byte[] longest = [.. Enumerable.Repeat((byte)'n', IpsetMessages.MaxNameBytes), 0];
        IpsetMessages.WriteEntryCommand(ref w, IPSET_CMD_ADD, 1, IPSET_PROTOCOL, longest, V6, uint.MaxValue);
        Assert.Equal(IpsetMessages.MaxEntryMessageSize, w.Length);
    }

    [Theory]
    [InlineData("", false, 0)]
    [InlineData("a", true, 2)]
    [InlineData("0123456789012345678901234567890", true, 32)]
    [InlineData("01234567890123456789012345678901", false, 0)]
    [InlineData("with\0nul", false, 0)]
    [InlineData("ünï", true, 6)]
    public void Set_names_are_1_to_31_bytes_of_utf8_and_get_their_nul(string name, bool ok, int length)
    {
        Span<byte> buffer = stackalloc byte[IPSET_MAXNAMELEN];
        buffer.Fill(0xAA);
        Assert.Equal(ok, IpsetMessages.TryEncodeName(name, buffer, out int written));
        Assert.Equal(length, written);
        if (ok)
        {
            Assert.Equal(0, buffer[written - 1]);
            Assert.Equal(name, System.Text.Encoding.UTF8.GetString(buffer[..(written - 1)]));
        }
    }

    private delegate void Write(ref NetlinkMessageWriter w);

    private static void AssertSame(byte[] expected, Write write)
    {
        var buffer = new byte[512];

        // Dirty the buffer: padding must be written as zeros, not inherited.
        buffer.AsSpan().Fill(0x5A);
        var w = new NetlinkMessageWriter(buffer);
        write(ref w);
        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(w.WrittenSpan));
    }

    private static ushort Flags(byte[] message) => HostOrder.ReadU16(message.AsSpan(KernelLayout.NlMsgHdr.Flags));

    private static byte[] Ip(string text) => IPAddress.Parse(text).GetAddressBytes();
}
