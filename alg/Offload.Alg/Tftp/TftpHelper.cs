using System.Buffers.Binary;

namespace Offload.Alg.Tftp;

/// <summary>
/// The TFTP helper (the kernel's nf_conntrack_tftp with nf_nat_tftp): a read or write request from the client
/// announces that the server will answer from a new port of its own, to the client's port. The helper expects that
/// answer, so that it is let in and translated back to the client, as a reply to the request would be.
/// </summary>
/// <remarks>
/// Nothing in a TFTP payload names an address, so nothing is rewritten. Both address families are served.
/// </remarks>
public sealed class TftpHelper : ConntrackHelper
{
    /// <summary>The kernel's TFTP policy: one outstanding expectation per request flow, for five minutes.</summary>
    public static readonly ExpectationPolicy DefaultPolicy = new(1, TimeSpan.FromMinutes(5));

    public const ushort DefaultPort = 69;

    /// <summary>The opcodes that open a transfer (RFC 1350): read request and write request.</summary>
    internal const ushort ReadRequest = 1;

    /// <inheritdoc cref="ReadRequest"/>
    internal const ushort WriteRequest = 2;

    /// <summary>The highest opcode a TFTP peer sends (RFC 2347's option acknowledgement).</summary>
    internal const ushort HighestOpcode = 6;

    public TftpHelper()
        : base("tftp", DefaultPolicy)
    {
        Protocol = IpProtocol.Udp;
        Ports = [DefaultPort];
    }

    public override HelperVerdict Help(ref HelperContext context)
    {
        // Only the client asks: a request seen from the server's side is no request (the kernel reads both sides).
        if (context.Protocol != IpProtocol.Udp || context.Direction != ConnDirection.Original)
        {
            return HelperVerdict.Accept;
        }

        var payload = context.Payload;
        if (payload.Length < 2)
        {
            // Not even an opcode: no TFTP peer sends this.
            context.Count(HelperEvent.MalformedCommand);
            return HelperVerdict.Accept;
        }

        ushort opcode = BinaryPrimitives.ReadUInt16BigEndian(payload);
        if (opcode != ReadRequest && opcode != WriteRequest)
        {
            // Data, acknowledgements, errors and option acknowledgements travel on the transfer's own flow;
            // anything else on port 69 is not TFTP.
            if (opcode == 0 || opcode > HighestOpcode)
            {
                context.Count(HelperEvent.MalformedCommand);
            }

            return HelperVerdict.Accept;
        }

        if (!IsWellFormedRequest(payload.Slice(2)))
        {
            // A request names a file and a mode, each ended by a zero byte. The kernel does not look; a request
            // the server cannot read either opens no pinhole here.
            context.Count(HelperEvent.MalformedCommand);
            return HelperVerdict.Accept;
        }

        ref readonly var other = ref context.OtherTuple;
        ref readonly var own = ref context.Tuple;

        // The answer comes from the peer (as it sees itself), from any port, to the sender as the peer sees it.
        var request = context.FromPeer(IpProtocol.Udp, other.DestinationPort);

        if (other.Destination != own.Source || other.DestinationPort != own.SourcePort)
        {
            // The sender's own endpoint is translated. The answer must be sent back to its real address and port,
            // which is what the kernel's nf_nat_tftp restores. Following the master would restore the announced
            // (translated) port and could move the expected port; here the translated endpoint is where the peer
            // already sends, so it must stay, and the way back is named explicitly.
            request.Nat = ExpectationNat.Redirect;
            request.NatAddress = own.Source;
            request.NatPort = own.SourcePort;
        }

        if (context.Expect(ref request) != ExpectResult.Added)
        {
            // Without the expectation the answer would not get through; the client retries its request.
            context.Count(HelperEvent.ExpectationFailed);
            return HelperVerdict.Drop;
        }

        return HelperVerdict.Accept;
    }

    /// <summary>True when <paramref name="body"/> (a request after its opcode) holds a non-empty file name and a mode, each ended by a zero byte.</summary>
    internal static bool IsWellFormedRequest(ReadOnlySpan<byte> body)
    {
        int nameEnd = body.IndexOf((byte)0);
        if (nameEnd <= 0)
        {
            return false;
        }

        var rest = body.Slice(nameEnd + 1);
        return rest.IndexOf((byte)0) > 0;
    }
}
