using System.Buffers.Text;
using Offload.Sdk;

/// <summary>The netfilter hacking HOWTO's example in C#: a helper for TCP port 111 that expects a related connection.
/// The client sends "CALLBACK port"; the server then connects back to the client on that port.</summary>
public sealed class CallbackHelper : ConntrackHelper
{
    public CallbackHelper() : base("callback", new ExpectationPolicy(4, TimeSpan.FromMinutes(1))) => Ports = [111];

    public override HelperVerdict Help(ref HelperContext context)
    {
        var payload = context.Payload;
        if (context.Direction != ConnDirection.Original || !payload.StartsWith("CALLBACK "u8)
            || !Utf8Parser.TryParse(payload[9..], out ushort port, out int digits) || port == 0)
        {
            return HelperVerdict.Accept;
        }

        // The server calls the client back as it sees it: after NAT, at the router's address.
        var request = context.FromPeer(IpProtocol.Tcp, port);
        if (context.Expect(ref request) != ExpectResult.Added)
        {
            return HelperVerdict.Drop; // the client will retry
        }

        // NAT may have moved the port: announce the one the server must call.
        Span<byte> text = stackalloc byte[5];
        bool announced = request.DestinationPort == port
            || (Utf8Formatter.TryFormat(request.DestinationPort, text, out int written) && context.Rewrite(9, digits, text[..written]));
        return announced ? HelperVerdict.Accept : HelperVerdict.Drop;
    }
}
