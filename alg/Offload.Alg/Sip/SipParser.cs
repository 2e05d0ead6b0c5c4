using System.Buffers.Text;

namespace Offload.Alg.Sip;

/// <summary>
/// Reads a SIP message's frame (RFC 3261 section 7): start line, headers up to the empty line, body of
/// Content-Length bytes. One pass over the headers; every read is bounded by the payload.
/// </summary>
internal static class SipParser
{
    /// <summary>The largest Content-Length accepted: no SIP body fits in more than a 64 KiB datagram or segment train.</summary>
    public const int MaxContentLength = 65535;

    /// <summary>
    /// Reads the message at the start of <paramref name="payload"/>. Over UDP a message without Content-Length takes
    /// the rest of the datagram (RFC 3261 section 18.3); over TCP it is malformed.
    /// </summary>
    public static SipParseStatus Parse(ReadOnlySpan<byte> payload, bool stream, out SipMessage message)
    {
        message = default;
        message.ContentLengthStart = -1;
        message.ContentLengthEnd = -1;
        int firstEnd = payload.IndexOf((byte)'\n');
        if (firstEnd < 0)
        {
            return LooksLikeSipStart(payload) ? SipParseStatus.Incomplete : SipParseStatus.NotSip;
        }

        var first = TrimCr(payload[..firstEnd]);
        if (!ReadStartLine(first, ref message))
        {
            return SipParseStatus.NotSip;
        }

        message.HeadersStart = firstEnd + 1;
        int cseqStart = -1, cseqEnd = -1;
        var reader = new SipHeaderReader(payload, message.HeadersStart);
        while (reader.Next(out var header))
        {
            switch (header.Kind)
            {
                case SipHeaderKind.ContentLength:
                    if (message.ContentLengthStart >= 0)
                    {
                        return SipParseStatus.Malformed; // two lengths: which one frames the body is anyone's guess
                    }

                    message.ContentLengthStart = header.ValueStart;
                    message.ContentLengthEnd = header.ValueEnd;
                    break;
                case SipHeaderKind.CSeq when cseqStart < 0:
                    cseqStart = header.ValueStart;
                    cseqEnd = header.ValueEnd;
                    break;
            }
        }

        if (!reader.Ended)
        {
            return SipParseStatus.Incomplete;
        }

        message.HeadersEnd = reader.Position;
        message.BodyStart = reader.BodyStart;
        int available = payload.Length - message.BodyStart;
        if (message.ContentLengthStart < 0)
        {
            if (stream)
            {
                return SipParseStatus.Malformed;
            }

            message.BodyLength = available;
        }
        else
        {
            var text = payload[message.ContentLengthStart..message.ContentLengthEnd];
            if (!Utf8Parser.TryParse(text, out int length, out int used) || used != text.Length || length < 0 || length > MaxContentLength)
            {
                return SipParseStatus.Malformed;
            }

            if (length > available)
            {
                // Over TCP the message's whole length is known all the same: where the next one starts.
                message.BodyLength = length;
                return stream ? SipParseStatus.Incomplete : SipParseStatus.Malformed;
            }

            message.BodyLength = length;
        }

        if (message.IsResponse && cseqStart >= 0)
        {
            // "CSeq: 1 INVITE": the method the response answers.
            var cseq = payload[cseqStart..cseqEnd];
            int space = cseq.IndexOfAny((byte)' ', (byte)'\t');
            message.Method = space < 0 ? SipMethod.Other : MethodOf(cseq[(space + 1)..].TrimStart(" \t"u8));
        }

        return SipParseStatus.Ok;
    }

    private static bool LooksLikeSipStart(ReadOnlySpan<byte> payload) =>
        payload.Length >= 7 && (payload.StartsWith("SIP/2.0"u8) || payload.IndexOf(" sip:"u8) > 0);

    private static bool ReadStartLine(ReadOnlySpan<byte> line, ref SipMessage message)
    {
        if (line.StartsWith("SIP/2.0 "u8))
        {
            // Status-Line: SIP-Version SP Status-Code SP Reason-Phrase
            var rest = line[8..];
            if (rest.Length < 3 || !Utf8Parser.TryParse(rest[..3], out int code, out int used) || used != 3 || code < 100 || code > 699)
            {
                return false;
            }

            message.IsResponse = true;
            message.StatusCode = code;
            return true;
        }

        // Request-Line: Method SP Request-URI SP SIP-Version
        int firstSpace = line.IndexOf((byte)' ');
        int lastSpace = line.LastIndexOf((byte)' ');
        if (firstSpace <= 0 || lastSpace <= firstSpace + 1 || !line[(lastSpace + 1)..].SequenceEqual("SIP/2.0"u8))
        {
            return false;
        }

        message.Method = MethodOf(line[..firstSpace]);
        message.UriStart = firstSpace + 1;
        message.UriEnd = lastSpace;
        return true;
    }

    /// <summary>The method a token names (methods are case-sensitive, RFC 3261 section 7.1).</summary>
    public static SipMethod MethodOf(ReadOnlySpan<byte> token)
    {
        int end = token.IndexOfAny((byte)' ', (byte)'\t');
        if (end >= 0)
        {
            token = token[..end];
        }

        return token switch
        {
            _ when token.SequenceEqual("INVITE"u8) => SipMethod.Invite,
            _ when token.SequenceEqual("ACK"u8) => SipMethod.Ack,
            _ when token.SequenceEqual("BYE"u8) => SipMethod.Bye,
            _ when token.SequenceEqual("CANCEL"u8) => SipMethod.Cancel,
            _ when token.SequenceEqual("REGISTER"u8) => SipMethod.Register,
            _ when token.SequenceEqual("UPDATE"u8) => SipMethod.Update,
            _ when token.SequenceEqual("PRACK"u8) => SipMethod.Prack,
            _ => SipMethod.Other,
        };
    }

    internal static ReadOnlySpan<byte> TrimCr(ReadOnlySpan<byte> line) =>
        line.Length > 0 && line[^1] == (byte)'\r' ? line[..^1] : line;
}
