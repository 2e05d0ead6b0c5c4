using System.Buffers.Text;

namespace Offload.Alg.Sip;

/// <summary>The expectation classes of SIP, as the kernel's (SIP_EXPECT_SIGNALLING, _AUDIO, _VIDEO, _IMAGE).</summary>
internal static class SipExpectClass
{
    public const int Signalling = 0;
    public const int Audio = 1;
    public const int Video = 2;
    public const int Image = 3;
}

/// <summary>One address in an SDP line: where its text lies and what it says (Start -1: none).</summary>
internal record struct SdpAddress(int Start, int Length, InetAddress Address)
{
    public static SdpAddress None => new(-1, 0, default);

    public readonly bool Present => Start >= 0;
}

/// <summary>One media description (m=) of a body, with the lines of its section the helper reads.</summary>
internal record struct SdpMedia(int Class, ushort Port, int PortStart, int PortLength, SdpAddress Connection, int RtcpPortStart, int RtcpPortLength, ushort RtcpPort);

/// <summary>
/// Reads an SDP body (RFC 4566) for what NAT and expectations need: the session's o= and c= addresses, and per
/// media (audio, video, image, as the kernel) its port, its own c= and its a=rtcp: port (RFC 3605). Lines end in
/// CRLF or LF. At most <see cref="MaxMedia"/> media are read: more are counted, never scanned for.
/// </summary>
internal static class SdpScanner
{
    /// <summary>Media descriptions read per body. A call has a few; hundreds are an attack on the expectation table.</summary>
    public const int MaxMedia = 8;

    /// <summary>Reads <paramref name="body"/> (offsets relative to its start); false when it holds no v= line.</summary>
    public static bool Scan(ReadOnlySpan<byte> body, byte family, out SdpAddress owner, out SdpAddress session, Span<SdpMedia> media, out int mediaCount, out bool tooMany)
    {
        owner = SdpAddress.None;
        session = SdpAddress.None;
        mediaCount = 0;
        tooMany = false;
        bool sawVersion = false;
        int current = -1; // the media whose section we are in; -1: the session, or a media past the bound
        bool inIgnoredMedia = false;
        int position = 0;
        while (position < body.Length)
        {
            int end = body[position..].IndexOf((byte)'\n');
            int lineEnd = end < 0 ? body.Length : position + end;
            var line = SipParser.TrimCr(body[position..lineEnd]);
            int lineStart = position;
            position = lineEnd + 1;
            if (line.Length < 2 || line[1] != (byte)'=')
            {
                continue;
            }

            switch (line[0])
            {
                case (byte)'v':
                    sawVersion = true;
                    break;
                case (byte)'o' when current < 0 && !inIgnoredMedia:
                    owner = AddressAfterNetType(line, lineStart, family);
                    break;
                case (byte)'c':
                    var address = AddressAfterNetType(line, lineStart, family);
                    if (current >= 0)
                    {
                        media[current].Connection = address;
                    }
                    else if (!inIgnoredMedia)
                    {
                        session = address;
                    }

                    break;
                case (byte)'m':
                    current = -1;
                    inIgnoredMedia = true;
                    if (!TryReadMedia(line, lineStart, out var described))
                    {
                        break; // another media type (application, text, message): nothing to expect
                    }

                    if (mediaCount == media.Length)
                    {
                        tooMany = true;
                        break;
                    }

                    inIgnoredMedia = false;
                    current = mediaCount++;
                    media[current] = described;
                    break;
                case (byte)'a' when current >= 0 && line.StartsWith("a=rtcp:"u8):
                    if (Utf8Parser.TryParse(line[7..], out ushort rtcp, out int digits) && digits > 0)
                    {
                        media[current].RtcpPortStart = lineStart + 7;
                        media[current].RtcpPortLength = digits;
                        media[current].RtcpPort = rtcp;
                    }

                    break;
            }
        }

        return sawVersion;
    }

    private static bool TryReadMedia(ReadOnlySpan<byte> line, int lineStart, out SdpMedia media)
    {
        media = default;
        int kind;
        int skip;
        if (line.StartsWith("m=audio "u8))
        {
            (kind, skip) = (SipExpectClass.Audio, 8);
        }
        else if (line.StartsWith("m=video "u8))
        {
            (kind, skip) = (SipExpectClass.Video, 8);
        }
        else if (line.StartsWith("m=image "u8))
        {
            (kind, skip) = (SipExpectClass.Image, 8);
        }
        else
        {
            return false;
        }

        if (!Utf8Parser.TryParse(line[skip..], out ushort port, out int digits) || digits == 0 || digits > 5)
        {
            return false;
        }

        media = new SdpMedia(kind, port, lineStart + skip, digits, SdpAddress.None, -1, 0, 0);
        return true;
    }

    /// <summary>The address after "IN IP4 " (or "IN IP6 ") in an o= or c= line; a name, or another family, is none.</summary>
    private static SdpAddress AddressAfterNetType(ReadOnlySpan<byte> line, int lineStart, byte family)
    {
        var netType = family == 4 ? "IN IP4 "u8 : "IN IP6 "u8;
        int at = line.IndexOf(netType);
        if (at < 0)
        {
            return SdpAddress.None;
        }

        int start = at + netType.Length;
        if (!SipAddressText.TryReadBare(line[start..], family, out var address, out int used) || used == 0)
        {
            return SdpAddress.None;
        }

        return new SdpAddress(lineStart + start, used, address);
    }
}
