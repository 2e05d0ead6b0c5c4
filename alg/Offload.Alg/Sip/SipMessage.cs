namespace Offload.Alg.Sip;

/// <summary>What a SIP message's first line and headers say, as offsets into the payload it was read from.</summary>
internal struct SipMessage
{
    /// <summary>True for a response (<c>SIP/2.0 200 OK</c>), false for a request.</summary>
    public bool IsResponse;

    /// <summary>A response's status code; 0 for a request.</summary>
    public int StatusCode;

    /// <summary>The request's method, or for a response the method its CSeq names.</summary>
    public SipMethod Method;

    /// <summary>Where a request's Request-URI lies (start, end); both 0 for a response.</summary>
    public int UriStart, UriEnd;

    /// <summary>Where the headers start (after the first line) and where the empty line that ends them starts.</summary>
    public int HeadersStart, HeadersEnd;

    /// <summary>
    /// Where the body starts and how long it is (Content-Length, or the rest of a datagram without one); also set for a
    /// TCP message whose headers are whole but whose body goes on in later segments (<see cref="SipParseStatus.Incomplete"/>).
    /// </summary>
    public int BodyStart, BodyLength;

    /// <summary>Where the Content-Length value lies; -1 when the message has none.</summary>
    public int ContentLengthStart, ContentLengthEnd;

    /// <summary>The whole message's length (headers, empty line, body): where the next one starts on TCP.</summary>
    public readonly int Length => BodyStart + BodyLength;
}

/// <summary>The methods the helper acts on; every other one is <see cref="Other"/>.</summary>
internal enum SipMethod : byte
{
    Other,
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Update,
    Prack,
}

/// <summary>Why a payload was not read as a whole SIP message.</summary>
internal enum SipParseStatus : byte
{
    /// <summary>A whole message.</summary>
    Ok,

    /// <summary>Not SIP at all (no request or status line): passed untouched, as the kernel does.</summary>
    NotSip,

    /// <summary>The headers or the body go on past the payload: a message split across TCP segments.</summary>
    Incomplete,

    /// <summary>A SIP start line with headers SIP does not allow (no Content-Length over TCP, an absurd one, a body shorter than it says).</summary>
    Malformed,
}
