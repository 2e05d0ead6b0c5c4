using System.Globalization;
using System.Text;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Packets;

namespace Offload.Engine.Conntrack;

/// <summary>Formats entries the way <c>conntrack -L -o extended</c> does, so the listings read the same as the kernel's.</summary>
public static class ConnectionFormatter
{
    /// <summary>One line for a connection (allocates; listings only).</summary>
    public static string Format(Connection connection, long nowNanoseconds) => Format(ConnectionView.Of(connection), nowNanoseconds);

    /// <summary>One line for a connection copied out of the table (allocates; listings only).</summary>
    public static string Format(in ConnectionView connection, long nowNanoseconds)
    {
        var o = connection.Original;
        var text = new StringBuilder(192);
        text.Append(o.Family == 4 ? "ipv4     2 " : "ipv6     10 ");
        text.Append(CultureInfo.InvariantCulture, $"{ProtocolName(o.Protocol),-8} {o.Protocol} ");
        long seconds = Math.Max(0, (connection.ExpiresAtNanoseconds - nowNanoseconds) / 1_000_000_000L);
        text.Append(seconds.ToString(CultureInfo.InvariantCulture)).Append(' ');
        if (o.Protocol == IpProtocol.Tcp)
        {
            text.Append(TcpStateName(connection.TcpState)).Append(' ');
        }

        text.Append(o.ToString()).Append(' ');
        if (!connection.HasStatus(ConnStatus.SeenReply))
        {
            text.Append("[UNREPLIED] ");
        }

        text.Append(connection.Reply.ToString()).Append(' ');
        if (connection.HasStatus(ConnStatus.Assured))
        {
            text.Append("[ASSURED] ");
        }

        text.Append(CultureInfo.InvariantCulture, $"mark={connection.Mark}");
        if (connection.HelperName is { } helper)
        {
            text.Append(" helper=").Append(helper);
        }

        if (connection.MasterOriginal is { } master)
        {
            text.Append(" master=").Append(master.ToString());
        }

        if (connection.HasStatus(ConnStatus.SeqAdjust))
        {
            text.Append(" seqadj");
        }

        text.Append(" use=1");
        return text.ToString();
    }

    /// <summary>A protocol's name as conntrack -L prints it ("unknown" for those it has no name for).</summary>
    public static string ProtocolName(byte protocol) => protocol switch
    {
        IpProtocol.Tcp => "tcp",
        IpProtocol.Udp => "udp",
        IpProtocol.Icmp => "icmp",
        IpProtocol.IcmpV6 => "icmpv6",
        IpProtocol.Gre => "gre",
        IpProtocol.Sctp => "sctp",
        IpProtocol.UdpLite => "udplite",
        _ => "unknown",
    };

    private static string TcpStateName(TcpConntrackState state) => state switch
    {
        TcpConntrackState.SynSent => "SYN_SENT",
        TcpConntrackState.SynRecv => "SYN_RECV",
        TcpConntrackState.Established => "ESTABLISHED",
        TcpConntrackState.FinWait => "FIN_WAIT",
        TcpConntrackState.CloseWait => "CLOSE_WAIT",
        TcpConntrackState.LastAck => "LAST_ACK",
        TcpConntrackState.TimeWait => "TIME_WAIT",
        TcpConntrackState.Close => "CLOSE",
        TcpConntrackState.SynSent2 => "SYN_SENT2",
        _ => "NONE",
    };
}
