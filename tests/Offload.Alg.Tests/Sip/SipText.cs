namespace Offload.Alg.Tests.Sip;

/// <summary>SIP messages as a LAN phone and a far-side user agent send them, with correct Content-Length.</summary>
internal static class SipText
{
    public static string Sdp(string address, ushort port, string owner = "", string extra = "") =>
        $"v=0\r\no=alice 2890844526 2890844526 IN IP4 {(owner.Length > 0 ? owner : address)}\r\ns=call\r\nc=IN IP4 {address}\r\nt=0 0\r\n" +
        $"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}";

    public static string Invite(string from, ushort fromPort, string to, string body, string method = "INVITE", string headers = "") =>
        $"{method} sip:bob@{to} SIP/2.0\r\n" +
        $"Via: SIP/2.0/UDP {from}:{fromPort};branch=z9hG4bK776asdhds;rport\r\n" +
        "Max-Forwards: 70\r\n" +
        $"To: Bob <sip:bob@{to}>\r\n" +
        $"From: Alice <sip:alice@{from}:{fromPort}>;tag=1928301774\r\n" +
        "Call-ID: a84b4c76e66710@pc33\r\n" +
        $"CSeq: 314159 {method}\r\n" +
        $"Contact: <sip:alice@{from}:{fromPort}>\r\n" +
        headers +
        (body.Length > 0 ? "Content-Type: application/sdp\r\n" : "") +
        $"Content-Length: {body.Length}\r\n\r\n" + body;

    public static string Ok(string via, string to, ushort toPort, string server, string body, string method = "INVITE", int code = 200) =>
        $"SIP/2.0 {code} OK\r\n" +
        $"Via: {via}\r\n" +
        $"To: Bob <sip:bob@{server}>;tag=a6c85cf\r\n" +
        $"From: Alice <sip:alice@{to}:{toPort}>;tag=1928301774\r\n" +
        "Call-ID: a84b4c76e66710@pc33\r\n" +
        $"CSeq: 314159 {method}\r\n" +
        $"Contact: <sip:bob@{server}:5060>\r\n" +
        (body.Length > 0 ? "Content-Type: application/sdp\r\n" : "") +
        $"Content-Length: {body.Length}\r\n\r\n" + body;

    /// <summary>The value of the first header named <paramref name="name"/> in a message.</summary>
    public static string Header(string message, string name)
    {
        foreach (var line in message.Split("\r\n"))
        {
            if (line.StartsWith(name + ":", StringComparison.OrdinalIgnoreCase))
            {
                return line[(name.Length + 1)..].Trim();
            }
        }

        return "";
    }

    public static string Body(string message) => message[(message.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
}
