using System.Buffers.Text;
using System.Text;

namespace Offload.Alg.Sip;

/// <summary>
/// The header half of nf_nat_sip: every address:port in the Request-URI, the topmost Via, the Contacts, From and To
/// that names one end of the translated flow is replaced by what the other end sees (the kernel's map_addr), and
/// the Via's maddr=, received= and rport= parameters are mapped as the kernel maps them.
/// </summary>
internal static class SipHeaderRewriter
{
    /// <summary>URIs read in one header (a Contact may list several): beyond it, the rest is left as it is.</summary>
    private const int MaxUrisPerHeader = 8;

    public static void Translate(ref HelperContext context, ReadOnlySpan<byte> text, in SipMessage message, ref SipEdits edits)
    {
        byte family = context.Family;
        if (!message.IsResponse && TryReadUriHost(text, message.UriStart, message.UriEnd, family, out var uri))
        {
            MapAddress(ref context, uri, ref edits);
        }

        bool sawVia = false;
        var reader = new SipHeaderReader(text, message.HeadersStart);
        while (reader.Next(out var header))
        {
            switch (header.Kind)
            {
                case SipHeaderKind.Via when !sawVia:
                    sawVia = true;
                    TranslateVia(ref context, text, header, message.IsResponse, ref edits);
                    break;
                case SipHeaderKind.Contact:
                    int at = header.ValueStart;
                    for (int i = 0; i < MaxUrisPerHeader && FindUriHost(text, ref at, header.ValueEnd, family, out var contact); i++)
                    {
                        MapAddress(ref context, contact, ref edits);
                    }

                    break;
                case SipHeaderKind.From:
                case SipHeaderKind.To:
                    int from = header.ValueStart;
                    if (FindUriHost(text, ref from, header.ValueEnd, family, out var named))
                    {
                        MapAddress(ref context, named, ref edits);
                    }

                    break;
            }
        }
    }

    /// <summary>The first Contact's host and port, and its expiry (the Contact's expires= or the Expires header; -1 when neither says).</summary>
    public static bool TryFindContact(ReadOnlySpan<byte> text, in SipMessage message, byte family, out SipEndpoint contact, out int expires)
    {
        contact = default;
        expires = -1;
        bool found = false;
        var reader = new SipHeaderReader(text, message.HeadersStart);
        while (reader.Next(out var header))
        {
            var value = text[header.ValueStart..header.ValueEnd];
            if (header.Kind == SipHeaderKind.Contact && !found)
            {
                int at = header.ValueStart;
                found = FindUriHost(text, ref at, header.ValueEnd, family, out contact);
                int param = value.IndexOf("expires="u8);
                if (found && param >= 0 && Utf8Parser.TryParse(value[(param + 8)..], out int contactExpires, out _))
                {
                    expires = contactExpires;
                }
            }
            else if (header.Kind == SipHeaderKind.Expires && expires < 0 && Utf8Parser.TryParse(value, out int headerExpires, out _))
            {
                expires = headerExpires;
            }
        }

        return found;
    }

    private static void TranslateVia(ref HelperContext context, ReadOnlySpan<byte> text, SipHeader header, bool response, ref SipEdits edits)
    {
        ref readonly var own = ref context.Tuple;
        ref readonly var other = ref context.OtherTuple;
        byte family = context.Family;

        // "SIP/2.0/UDP host:port;params": the sent-by follows the transport and its blanks.
        var value = text[header.ValueStart..header.ValueEnd];
        int transport = value.IndexOf("/UDP"u8);
        if (transport < 0)
        {
            transport = value.IndexOf("/TCP"u8);
        }

        if (transport < 0)
        {
            return;
        }

        int at = transport + 4;
        while (at < value.Length && (value[at] == (byte)' ' || value[at] == (byte)'\t' || value[at] == (byte)'\r' || value[at] == (byte)'\n'))
        {
            at++;
        }

        if (!SipAddressText.TryReadHostPort(value[at..], family, header.ValueStart + at, out var sentBy))
        {
            return;
        }

        // Only a Via of this flow's sender (a request) or receiver (a response) is ours to change.
        bool ours = response
            ? sentBy.Address == own.Destination && sentBy.Port == own.DestinationPort
            : sentBy.Address == own.Source && sentBy.Port == own.SourcePort;
        if (!ours)
        {
            return;
        }

        MapAddress(ref context, sentBy, ref edits);

        // The parameters of this Via value, up to the next value.
        int parametersStart = at + sentBy.Length;
        int valueEnd = value[parametersStart..].IndexOf((byte)',');
        var parameters = valueEnd < 0 ? value[parametersStart..] : value.Slice(parametersStart, valueEnd);
        int baseOffset = header.ValueStart + parametersStart;

        // maddr= (where to send responses): the sender's own address becomes the one the peer sees.
        if (FindParameter(parameters, "maddr="u8, out int maddrAt)
            && SipAddressText.TryReadBare(parameters[maddrAt..], family, out var maddr, out int maddrLength)
            && maddr == own.Source && maddr != other.Destination)
        {
            AddAddress(ref edits, baseOffset + maddrAt, maddrLength, other.Destination, family);
        }

        // received= (where the peer got the request from): the translated address becomes the sender's real one.
        if (FindParameter(parameters, "received="u8, out int receivedAt)
            && SipAddressText.TryReadBare(parameters[receivedAt..], family, out var received, out int receivedLength)
            && received == own.Destination && received != other.Source)
        {
            AddAddress(ref edits, baseOffset + receivedAt, receivedLength, other.Source, family);
        }

        // rport= (RFC 3581: the port the peer got the request from), likewise.
        if (FindParameter(parameters, "rport="u8, out int rportAt)
            && Utf8Parser.TryParse(parameters[rportAt..], out ushort rport, out int digits) && digits > 0
            && rport == own.DestinationPort && rport != other.SourcePort)
        {
            if (Utf8Formatter.TryFormat(other.SourcePort, edits.Scratch, out int written))
            {
                edits.Add(baseOffset + rportAt, digits, written);
            }
            else
            {
                edits.Fail();
            }
        }
    }

    private static bool FindParameter(ReadOnlySpan<byte> parameters, ReadOnlySpan<byte> name, out int valueAt)
    {
        // Parameter names are case-insensitive (RFC 3261 section 7.3.1); each follows a ';'.
        int at = 0;
        while (at < parameters.Length)
        {
            int semicolon = parameters[at..].IndexOf((byte)';');
            if (semicolon < 0)
            {
                break;
            }

            at += semicolon + 1;
            while (at < parameters.Length && parameters[at] == (byte)' ')
            {
                at++;
            }

            if (parameters.Length - at >= name.Length && Ascii.EqualsIgnoreCase(parameters.Slice(at, name.Length), name))
            {
                valueAt = at + name.Length;
                return true;
            }
        }

        valueAt = 0;
        return false;
    }

    /// <summary>
    /// The kernel's map_addr: an address:port that is this direction's source becomes what the peer sees of it, one
    /// that is its destination becomes the peer's own; anything else stays. The result is always written with its port.
    /// </summary>
    private static void MapAddress(ref HelperContext context, in SipEndpoint endpoint, ref SipEdits edits)
    {
        ref readonly var own = ref context.Tuple;
        ref readonly var other = ref context.OtherTuple;
        InetAddress address;
        ushort port;
        if (endpoint.Address == own.Source && endpoint.Port == own.SourcePort)
        {
            (address, port) = (other.Destination, other.DestinationPort);
        }
        else if (endpoint.Address == own.Destination && endpoint.Port == own.DestinationPort)
        {
            (address, port) = (other.Source, other.SourcePort);
        }
        else
        {
            return;
        }

        if (address == endpoint.Address && port == endpoint.Port)
        {
            return;
        }

        if (edits.Scratch.Length < SipAddressText.MaxLength)
        {
            edits.Fail();
            return;
        }

        int written = SipAddressText.Format(address, context.Family, port, withPort: true, bracket: true, edits.Scratch);
        edits.Add(endpoint.Start, endpoint.Length, written);
    }

    private static void AddAddress(ref SipEdits edits, int offset, int length, InetAddress address, byte family)
    {
        if (edits.Scratch.Length < SipAddressText.MaxLength)
        {
            edits.Fail();
            return;
        }

        int written = SipAddressText.Format(address, family, 0, withPort: false, bracket: false, edits.Scratch);
        edits.Add(offset, length, written);
    }

    private static bool TryReadUriHost(ReadOnlySpan<byte> text, int start, int end, byte family, out SipEndpoint endpoint)
    {
        int at = start;
        return FindUriHost(text, ref at, end, family, out endpoint);
    }

    /// <summary>
    /// The next "sip:" URI between <paramref name="at"/> and <paramref name="end"/> whose host is an address: its
    /// host and port, past any user part. <paramref name="at"/> moves past what was read.
    /// </summary>
    private static bool FindUriHost(ReadOnlySpan<byte> text, ref int at, int end, byte family, out SipEndpoint endpoint)
    {
        endpoint = default;
        while (at < end)
        {
            int scheme = IndexOfIgnoreCase(text[at..end], "sip:"u8);
            if (scheme < 0)
            {
                at = end;
                return false;
            }

            int host = at + scheme + 4;
            at = host;
            // The user part ends at '@'; the URI itself at one of these.
            int limit = host;
            int atSign = -1;
            while (limit < end && text[limit] is not ((byte)'>' or (byte)';' or (byte)',' or (byte)' ' or (byte)'?' or (byte)'\r' or (byte)'\n'))
            {
                if (text[limit] == (byte)'@')
                {
                    atSign = limit;
                }

                limit++;
            }

            if (atSign >= 0)
            {
                host = atSign + 1;
            }

            at = limit;
            if (SipAddressText.TryReadHostPort(text[host..limit], family, host, out endpoint))
            {
                return true;
            }
        }

        return false;
    }

    private static int IndexOfIgnoreCase(ReadOnlySpan<byte> text, ReadOnlySpan<byte> lowerNeedle)
    {
        for (int i = 0; i + lowerNeedle.Length <= text.Length; i++)
        {
            int j = text[i..].IndexOfAny((byte)lowerNeedle[0], (byte)(lowerNeedle[0] & ~0x20));
            if (j < 0)
            {
                return -1;
            }

            i += j;
            if (i + lowerNeedle.Length <= text.Length && Ascii.EqualsIgnoreCase(text.Slice(i, lowerNeedle.Length), lowerNeedle))
            {
                return i;
            }
        }

        return -1;
    }
}
