using System.Runtime.InteropServices;
using Offload.Interop.Ctnetlink;
using Offload.Interop.Netlink;
using Offload.Interop.Tests.Support;
using Xunit;
using L = Offload.Interop.Netlink.KernelLayout;
using S = Offload.Interop.Interop.Sys;

namespace Offload.Interop.Tests.Headers;

/// <summary>
/// The sizes and field offsets we read and write by hand, and the layouts of the structs we pass to libc, equal
/// sizeof/offsetof from the real headers.
/// </summary>
public sealed class StructLayoutTests
{
    // (C struct, C member or null for sizeof, our value)
    private static readonly (string Struct, string? Member, long Ours)[] Layouts =
    [
        ("struct nlmsghdr", null, L.NlMsgHdr.Size),
        ("struct nlmsghdr", "nlmsg_len", L.NlMsgHdr.Length),
        ("struct nlmsghdr", "nlmsg_type", L.NlMsgHdr.Type),
        ("struct nlmsghdr", "nlmsg_flags", L.NlMsgHdr.Flags),
        ("struct nlmsghdr", "nlmsg_seq", L.NlMsgHdr.Sequence),
        ("struct nlmsghdr", "nlmsg_pid", L.NlMsgHdr.PortId),
        ("struct nfgenmsg", null, L.NfGenMsg.Size),
        ("struct nfgenmsg", "nfgen_family", L.NfGenMsg.Family),
        ("struct nfgenmsg", "version", L.NfGenMsg.Version),
        ("struct nfgenmsg", "res_id", L.NfGenMsg.ResourceId),
        ("struct nlattr", null, L.NlAttr.Size),
        ("struct nlattr", "nla_len", L.NlAttr.Length),
        ("struct nlattr", "nla_type", L.NlAttr.Type),
        ("struct nlmsgerr", null, L.NlMsgErr.Size),
        ("struct nlmsgerr", "error", L.NlMsgErr.Error),
        ("struct nlmsgerr", "msg", L.NlMsgErr.Message),
        ("struct nfqnl_msg_packet_hdr", null, L.NfqPacketHdr.Size),
        ("struct nfqnl_msg_packet_hdr", "packet_id", L.NfqPacketHdr.PacketId),
        ("struct nfqnl_msg_packet_hdr", "hw_protocol", L.NfqPacketHdr.HwProtocol),
        ("struct nfqnl_msg_packet_hdr", "hook", L.NfqPacketHdr.Hook),
        ("struct nfqnl_msg_verdict_hdr", null, L.NfqVerdictHdr.Size),
        ("struct nfqnl_msg_verdict_hdr", "verdict", L.NfqVerdictHdr.Verdict),
        ("struct nfqnl_msg_verdict_hdr", "id", L.NfqVerdictHdr.Id),
        ("struct nfqnl_msg_config_cmd", null, L.NfqConfigCmd.Size),
        ("struct nfqnl_msg_config_cmd", "command", L.NfqConfigCmd.Command),
        ("struct nfqnl_msg_config_cmd", "_pad", L.NfqConfigCmd.Pad),
        ("struct nfqnl_msg_config_cmd", "pf", L.NfqConfigCmd.Pf),
        ("struct nfqnl_msg_config_params", null, L.NfqConfigParams.Size),
        ("struct nfqnl_msg_config_params", "copy_range", L.NfqConfigParams.CopyRange),
        ("struct nfqnl_msg_config_params", "copy_mode", L.NfqConfigParams.CopyMode),
        ("struct nfqnl_msg_packet_timestamp", null, L.NfqPacketTimestamp.Size),
        ("struct nfqnl_msg_packet_timestamp", "sec", L.NfqPacketTimestamp.Seconds),
        ("struct nfqnl_msg_packet_timestamp", "usec", L.NfqPacketTimestamp.Microseconds),

        // The structs handed to libc by reference: our C# declarations must match byte for byte.
        ("struct sockaddr_nl", null, Marshal.SizeOf<S.SockAddrNl>()),
        ("struct sockaddr_nl", "nl_family", Offset<S.SockAddrNl>("nl_family")),
        ("struct sockaddr_nl", "nl_pad", Offset<S.SockAddrNl>("nl_pad")),
        ("struct sockaddr_nl", "nl_pid", Offset<S.SockAddrNl>("nl_pid")),
        ("struct sockaddr_nl", "nl_groups", Offset<S.SockAddrNl>("nl_groups")),
        ("struct iovec", null, Marshal.SizeOf<S.IoVec>()),
        ("struct iovec", "iov_base", Offset<S.IoVec>("iov_base")),
        ("struct iovec", "iov_len", Offset<S.IoVec>("iov_len")),
        ("struct msghdr", null, Marshal.SizeOf<S.MsgHdr>()),
        ("struct msghdr", "msg_name", Offset<S.MsgHdr>("msg_name")),
        ("struct msghdr", "msg_namelen", Offset<S.MsgHdr>("msg_namelen")),
        ("struct msghdr", "msg_iov", Offset<S.MsgHdr>("msg_iov")),
        ("struct msghdr", "msg_iovlen", Offset<S.MsgHdr>("msg_iovlen")),
        ("struct msghdr", "msg_control", Offset<S.MsgHdr>("msg_control")),
        ("struct msghdr", "msg_controllen", Offset<S.MsgHdr>("msg_controllen")),
        ("struct msghdr", "msg_flags", Offset<S.MsgHdr>("msg_flags")),
        ("struct mmsghdr", null, Marshal.SizeOf<S.MMsgHdr>()),
        ("struct mmsghdr", "msg_hdr", Offset<S.MMsgHdr>("msg_hdr")),
        ("struct mmsghdr", "msg_len", Offset<S.MMsgHdr>("msg_len")),
        ("struct timeval", null, Marshal.SizeOf<S.TimeVal>()),
        ("struct timeval", "tv_sec", Offset<S.TimeVal>("tv_sec")),
        ("struct timeval", "tv_usec", Offset<S.TimeVal>("tv_usec")),
        ("struct statx", null, Marshal.SizeOf<S.StatX>()),
        ("struct statx", "stx_mask", Offset<S.StatX>("stx_mask")),
        ("struct statx", "stx_uid", Offset<S.StatX>("stx_uid")),
        ("struct statx", "stx_gid", Offset<S.StatX>("stx_gid")),
        ("struct statx", "stx_mode", Offset<S.StatX>("stx_mode")),
        ("struct statx", "stx_ino", Offset<S.StatX>("stx_ino")),
        ("struct statx", "stx_size", Offset<S.StatX>("stx_size")),
        ("struct statx", "stx_atime", Offset<S.StatX>("stx_atime")),
        ("struct statx", "stx_mtime", Offset<S.StatX>("stx_mtime")),
        ("struct statx", "stx_dev_minor", Offset<S.StatX>("stx_dev_minor")),
        ("struct statx_timestamp", null, Marshal.SizeOf<S.StatXTimestamp>()),
        ("struct statx_timestamp", "tv_nsec", Offset<S.StatXTimestamp>("tv_nsec")),
        ("struct ucred", null, Marshal.SizeOf<S.UCred>()),
        ("struct ucred", "pid", Offset<S.UCred>("pid")),
        ("struct ucred", "uid", Offset<S.UCred>("uid")),
        ("struct ucred", "gid", Offset<S.UCred>("gid")),
        ("struct nf_ct_tcp_flags", null, CtnlConstants.TcpFlagsLayout.Size),
        ("struct nf_ct_tcp_flags", "flags", CtnlConstants.TcpFlagsLayout.Flags),
        ("struct nf_ct_tcp_flags", "mask", CtnlConstants.TcpFlagsLayout.Mask),
    ];

    [CcFact]
    public void Layouts_match_the_C_headers()
    {
        Dictionary<string, long> c = HeaderProbe.Run(HeaderProbe.PrintAll(Layouts.Select(l =>
            (Key(l.Struct, l.Member), l.Member is null ? $"sizeof({l.Struct})" : $"offsetof({l.Struct}, {l.Member})"))));

        var mismatches = Layouts
            .Where(l => c[Key(l.Struct, l.Member)] != l.Ours)
            .Select(l => $"{Key(l.Struct, l.Member)}: ours {l.Ours}, headers {c[Key(l.Struct, l.Member)]}")
            .ToList();
        Assert.Empty(mismatches);
    }

    [Fact]
    public void Aligned_sizes_agree_with_the_writer()
    {
        Assert.Equal(8, NetlinkMessageWriter.AttributeSpace(4));
        Assert.Equal(12, NetlinkMessageWriter.AttributeSpace(L.NfqConfigParams.Size));
        Assert.Equal(12, NetlinkMessageWriter.AttributeSpace(L.NfqPacketHdr.Size));
    }

    private static string Key(string s, string? member) => member is null ? $"sizeof {s}" : $"{s}.{member}";

    private static long Offset<T>(string field) => Marshal.OffsetOf<T>(field).ToInt64();
}
