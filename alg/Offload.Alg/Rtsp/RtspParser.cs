using System.Buffers.Binary;
using System.Buffers.Text;
using System.Text;
using Offload.Alg.Sip;

namespace Offload.Alg.Rtsp;

/// <summary>The methods the helper acts on; every other one is <see cref="Other"/>.</summary>
internal enum RtspMethod : byte
{
    Other,
    Setup,
    Teardown,
}

/// <summary>What reading one RTSP message (or interleaved frame) at the start of a span found.</summary>
internal enum RtspParseStatus : byte
{
    /// <summary>A whole header block was read (its body may go on past the span: see <see cref="RtspMessage.Length"/>).</summary>
    Ok,

    /// <summary>An interleaved binary frame (<c>$</c>, channel, 16-bit length): <see cref="RtspMessage.Length"/> is its size.</summary>
    Interleaved,

    /// <summary>Not the start of an RTSP message: the rest of a body, or another protocol.</summary>
    NotRtsp,

    /// <summary>An RTSP start line whose headers do not end within the span (split across segments).</summary>
    Incomplete,

    /// <summary>An RTSP message with a bad Content-Length or CSeq, or too many header lines.</summary>
    Malformed,
}

/// <summary>What an RTSP message's first line and headers say, as offsets into the span it was read from.</summary>
internal struct RtspMessage
{
    /// <summary>True for a response (<c>RTSP/1.0 200 OK</c>).</summary>
    public bool IsResponse;

    /// <summary>A response's status code; 0 for a request.</summary>
    public int StatusCode;

    /// <summary>A request's method.</summary>
    public RtspMethod Method;

    /// <summary>The CSeq, or -1 when the message has none.</summary>
    public int CSeq;

    /// <summary>Where the Transport value lies (folded lines included, line end excluded); -1 when there is none.</summary>
    public int TransportStart, TransportEnd;

    /// <summary>Where the body starts, and the whole message's length (header block and Content-Length bytes of body): may exceed the span.</summary>
    public int BodyStart, Length;
}

/// <summary>
/// Reads the frame of an RTSP message (RFC 2326 section 6 and 7, RFC 7826): the start line, the headers up to the
/// empty line, a body of Content-Length bytes; or an interleaved binary frame (RFC 2326 section 10.12). Every read is
/// bounded by the span, every number by its range; the work is one pass over the header block.
/// </summary>
internal static class RtspParser
{
    /// <summary>Header lines one message may have; more are malformed (a header block is a few dozen lines).</summary>
    public const int MaxHeaderLines = 128;

    /// <summary>The largest Content-Length accepted (an SDP or a parameter list; far more is not RTSP).</summary>
    public const int MaxContentLength = 1 << 24;

    /// <summary>Reads the message or interleaved frame at the start of <paramref name="data"/>.</summary>
    public static RtspParseStatus Parse(ReadOnlySpan<byte> data, out RtspMessage message)
    {
        message = default;
        message.CSeq = -1;
        message.TransportStart = -1;
        message.TransportEnd = -1;
        if (data.IsEmpty)
        {
            return RtspParseStatus.NotRtsp;
        }

        if (data[0] == (byte)'$')
        {
            if (data.Length < 4)
            {
                return RtspParseStatus.Incomplete;
            }

            message.Length = 4 + BinaryPrimitives.ReadUInt16BigEndian(data[2..]);
            return RtspParseStatus.Interleaved;
        }

        int firstEnd = data.IndexOf((byte)'\n');
        var first = SipParser.TrimCr(firstEnd < 0 ? data : data[..firstEnd]);
        if (!ReadStartLine(first, ref message, complete: firstEnd >= 0))
        {
            return RtspParseStatus.NotRtsp;
        }

        if (firstEnd < 0)
        {
            return RtspParseStatus.Incomplete;
        }

        int position = firstEnd + 1;
        int contentLength = 0;
        bool lastWasTransport = false;
        for (int lines = 0; ; lines++)
        {
            if (lines == MaxHeaderLines)
            {
                return RtspParseStatus.Malformed;
            }

            int lineEnd = data[position..].IndexOf((byte)'\n');
            if (lineEnd < 0)
            {
                return RtspParseStatus.Incomplete;
            }

            lineEnd += position;
            var line = SipParser.TrimCr(data[position..lineEnd]);
            if (line.IsEmpty)
            {
                message.BodyStart = lineEnd + 1;
                break;
            }

            if (line[0] is (byte)' ' or (byte)'\t')
            {
                // A folded line continues the header above (RFC 2326 section 4.2, as HTTP/1.1's LWS).
                if (lastWasTransport)
                {
                    message.TransportEnd = position + line.Length;
                }

                position = lineEnd + 1;
                continue;
            }

            lastWasTransport = false;
            int colon = line.IndexOf((byte)':');
            if (colon > 0)
            {
                var name = line[..colon].TrimEnd(" \t"u8);
                int valueStart = position + colon + 1;
                var value = line[(colon + 1)..];
                int lead = value.Length - value.TrimStart(" \t"u8).Length;
                valueStart += lead;
                value = value[lead..].TrimEnd(" \t"u8);
                if (name.Length == 9 && Ascii.EqualsIgnoreCase(name, "Transport"u8))
                {
                    // A second Transport header is unusual; the first one is the one read.
                    if (message.TransportStart < 0)
                    {
                        message.TransportStart = valueStart;
                        message.TransportEnd = valueStart + value.Length;
                        lastWasTransport = true;
                    }
                }
                else if (name.Length == 14 && Ascii.EqualsIgnoreCase(name, "Content-Length"u8))
                {
                    if (!Utf8Parser.TryParse(value, out contentLength, out int used) || used != value.Length || contentLength < 0 || contentLength > MaxContentLength)
                    {
                        return RtspParseStatus.Malformed;
                    }
                }
                else if (name.Length == 4 && Ascii.EqualsIgnoreCase(name, "CSeq"u8))
                {
                    if (!Utf8Parser.TryParse(value, out int cseq, out int used) || used != value.Length || cseq < 0)
                    {
                        return RtspParseStatus.Malformed;
                    }

                    message.CSeq = cseq;
                }
            }

            position = lineEnd + 1;
        }

        message.Length = message.BodyStart + contentLength;
        return RtspParseStatus.Ok;
    }

    private static bool ReadStartLine(ReadOnlySpan<byte> line, ref RtspMessage message, bool complete)
    {
        if (line.StartsWith("RTSP/"u8))
        {
            // Status-Line: RTSP-Version SP Status-Code SP Reason-Phrase
            int space = line.IndexOf((byte)' ');
            if (space < 0 || line.Length < space + 4)
            {
                return !complete && line.Length < 16; // too short to tell yet
            }

            var code = line.Slice(space + 1, 3);
            if (!Utf8Parser.TryParse(code, out int status, out int used) || used != 3 || status < 100 || status > 999)
            {
                return false;
            }

            message.IsResponse = true;
            message.StatusCode = status;
            return true;
        }

        // Request-Line: Method SP Request-URI SP RTSP-Version
        int firstSpace = line.IndexOf((byte)' ');
        int lastSpace = line.LastIndexOf((byte)' ');
        if (firstSpace <= 0 || lastSpace <= firstSpace || !line[(lastSpace + 1)..].StartsWith("RTSP/"u8))
        {
            return false;
        }

        var method = line[..firstSpace];
        message.Method = method.SequenceEqual("SETUP"u8) ? RtspMethod.Setup
            : method.SequenceEqual("TEARDOWN"u8) ? RtspMethod.Teardown
            : RtspMethod.Other;
        return true;
    }
}
