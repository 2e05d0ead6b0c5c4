namespace Offload.Alg.Amanda;

/// <summary>
/// The Amanda backup helper (the kernel's nf_conntrack_amanda with nf_nat_amanda). The Amanda server asks a
/// client's amandad on UDP port 10080 for a backup; the client's reply carries a <c>CONNECT</c> line announcing the
/// TCP ports (DATA, MESG, INDEX, STATE) the server is to connect to. This helper expects those connections, from
/// the server to the client, and when the UDP flow is translated lets them follow its translation, rewriting an
/// announced port the engine had to move.
/// </summary>
/// <remarks>
/// <para>Only the reply direction (client to server) is read, as in the kernel. The ports are looked for once, in
/// the payload as the client sent it, and rewritten front to back in one pass.</para>
/// <para>Unlike the kernel, this helper cannot lengthen the UDP flow's own timeout to five minutes while a
/// backup is negotiated (the SDK has no such call): the flow keeps the engine's UDP timeouts.</para>
/// </remarks>
public sealed class AmandaHelper : ConntrackHelper
{
    /// <summary>The kernel's Amanda policy: four outstanding expectations per UDP flow (one per stream), for three minutes.</summary>
    public static readonly ExpectationPolicy DefaultPolicy = new(4, TimeSpan.FromMinutes(3));

    /// <summary>How long an Amanda exchange lives after each of the client's answers (the kernel's master_timeout).</summary>
    public static readonly TimeSpan MasterTimeout = TimeSpan.FromMinutes(5);

    /// <summary>amandad's UDP port.</summary>
    public const ushort DefaultPort = 10080;

    public AmandaHelper()
        : base("amanda", DefaultPolicy)
    {
        Protocol = IpProtocol.Udp;
        Ports = [DefaultPort];
    }

    public override HelperVerdict Help(ref HelperContext context)
    {
        // Only the client's answers announce ports; the server's requests are never read.
        if (context.Protocol != IpProtocol.Udp || context.Direction != ConnDirection.Reply)
        {
            return HelperVerdict.Accept;
        }

        // The client's answers to the server can come late: keep the exchange for longer than UDP's timeout, as the
        // kernel's helper does.
        context.RefreshTimeout(MasterTimeout);

        var payload = context.Payload;
        if (payload.IsEmpty)
        {
            return HelperVerdict.Accept;
        }

        Span<AmandaPort> ports = stackalloc AmandaPort[AmandaParser.MaxPorts];
        var status = AmandaParser.Scan(payload, ports, out int count);
        if (status == AmandaScanStatus.Malformed)
        {
            // Like the kernel, the ports read before the bad one are still expected.
            context.Count(HelperEvent.MalformedCommand);
        }

        for (int i = 0; i < count; i++)
        {
            if (Announce(ref context, payload, ports[i]) == HelperVerdict.Drop)
            {
                return HelperVerdict.Drop;
            }
        }

        return HelperVerdict.Accept;
    }

    private static HelperVerdict Announce(ref HelperContext context, ReadOnlySpan<byte> payload, in AmandaPort announced)
    {
        ref readonly var own = ref context.Tuple;
        ref readonly var other = ref context.OtherTuple;

        // The server (the peer, as it sees itself) connects to the client as the server sees it.
        var request = context.FromPeer(IpProtocol.Tcp, announced.Port);

        if (context.Expect(ref request) != ExpectResult.Added)
        {
            // The kernel drops the reply too; amandad sends it again.
            context.Count(HelperEvent.ExpectationFailed);
            return HelperVerdict.Drop;
        }

        if (!context.IsNatted)
        {
            return HelperVerdict.Accept;
        }

        // The kernel writes the port it expects in decimal whenever the flow is translated; only a changed text
        // ("DATA 00080" as "80", or a port the engine moved) makes a difference to the packet.
        Span<byte> text = stackalloc byte[AmandaParser.MaxPortDigits];
        int written = AmandaParser.FormatPort(request.DestinationPort, text);
        var digits = text.Slice(0, written);
        if (digits.SequenceEqual(payload.Slice(announced.Offset, announced.Length)))
        {
            return HelperVerdict.Accept;
        }

        if (!context.Rewrite(announced.Offset, announced.Length, digits))
        {
            context.Count(HelperEvent.RewriteFailed);
            return HelperVerdict.Drop;
        }

        return HelperVerdict.Accept;
    }
}
