namespace Offload.Alg.Sane;

/// <summary>
/// The SANE scanner helper (the kernel's nf_conntrack_sane): a client asks saned on TCP port 6566 to start a scan
/// (SANE_NET_START); the server answers GOOD with a port, and the client opens the data connection to the server on
/// that port. This helper remembers, per control connection, that a START is waiting for its answer, and expects
/// the data connection when the answer is GOOD.
/// </summary>
/// <remarks>
/// <para>The kernel has no NAT helper for SANE and needs none: the data connection goes to the address the client
/// already reaches the server at, and a translated client is translated again by the usual rules. This helper lets
/// the data connection follow the control connection's translation instead, so that it also reaches a server
/// behind a port forward; and should the engine move the announced port (when another expectation holds it, or a
/// translated server's expectations are kept in a port range), it rewrites the reply's port, which the kernel
/// never does.</para>
/// <para>Stricter than the kernel: a GOOD reply announcing port 0 is counted as malformed and not expected.</para>
/// </remarks>
public sealed class SaneHelper : ConntrackHelper
{
    /// <summary>The kernel's SANE policy: one outstanding expectation per control connection, for five minutes.</summary>
    public static readonly ExpectationPolicy DefaultPolicy = new(1, TimeSpan.FromMinutes(5));

    /// <summary>saned's TCP port.</summary>
    public const ushort DefaultPort = 6566;

    public SaneHelper()
        : base("sane", DefaultPolicy)
    {
        Ports = [DefaultPort];
    }

    public override HelperVerdict Help(ref HelperContext context)
    {
        // Until the connection has seen traffic both ways its segments are not read, as in the kernel.
        if (context.Protocol != IpProtocol.Tcp
            || (context.CtInfo != CtInfo.Established && context.CtInfo != CtInfo.EstablishedReply))
        {
            return HelperVerdict.Accept;
        }

        var payload = context.Payload;
        if (payload.IsEmpty)
        {
            return HelperVerdict.Accept;
        }

        if (context.Direction == ConnDirection.Original)
        {
            switch (SaneParser.ReadRequest(payload))
            {
                case SaneMessage.StartRequest:
                    context.GetState<SaneState>().StartRequested = true;
                    break;
                case SaneMessage.OtherRequest when context.TryGetState<SaneState>(out var requested):
                    // Another procedure: a START before it has had its answer.
                    requested.StartRequested = false;
                    break;
            }

            return HelperVerdict.Accept;
        }

        if (!context.TryGetState<SaneState>(out var state) || !state.StartRequested)
        {
            // A reply to something else, or an answer nobody asked for.
            return HelperVerdict.Accept;
        }

        // Whatever it says, this segment is the answer: the next one is not.
        state.StartRequested = false;
        switch (SaneParser.ReadStartReply(payload, out ushort port))
        {
            case SaneMessage.StartGood:
                return Expect(ref context, port);
            case SaneMessage.StartMalformed:
                context.Count(HelperEvent.MalformedCommand);
                return HelperVerdict.Accept;
            default:
                return HelperVerdict.Accept;
        }
    }

    private static HelperVerdict Expect(ref HelperContext context, ushort port)
    {
        ref readonly var own = ref context.Tuple;
        ref readonly var other = ref context.OtherTuple;

        // The client (the peer, as it sees itself) connects to the server as the client sees it.
        var request = context.FromPeer(IpProtocol.Tcp, port);

        if (context.Expect(ref request) != ExpectResult.Added)
        {
            // As the kernel: without the expectation the data connection would fail; TCP sends the reply again.
            context.Count(HelperEvent.ExpectationFailed);
            return HelperVerdict.Drop;
        }

        if (request.DestinationPort == port)
        {
            return HelperVerdict.Accept;
        }

        Span<byte> moved = [(byte)(request.DestinationPort >> 8), (byte)request.DestinationPort];
        if (!context.Rewrite(SaneParser.PortOffset, moved.Length, moved))
        {
            context.Count(HelperEvent.RewriteFailed);
            return HelperVerdict.Drop;
        }

        return HelperVerdict.Accept;
    }

    /// <summary>Per control connection: whether a START request waits for its answer.</summary>
    private sealed class SaneState
    {
        public bool StartRequested;
    }
}
