using System.Buffers.Text;
using System.Text;
using Offload.Alg.Sip;

namespace Offload.Alg.Rtsp;

/// <summary>
/// A port parameter of a transport spec (<c>client_port=5000-5001</c>, <c>server_port=6970</c>): the RTP port and the
/// RTCP port (the same for a single port), the separator written between them (<c>-</c>, or <c>/</c> as some clients
/// write two ports that need not be consecutive), and where the value lies.
/// </summary>
internal readonly record struct RtspPorts(bool Present, ushort Rtp, ushort Rtcp, byte Separator, int Start, int Length)
{
    /// <summary>One port only: no RTCP port was announced.</summary>
    public bool Single => Separator == 0;
}

/// <summary>An address parameter (<c>destination=</c>, <c>source=</c>): the address when it is a literal of the flow's family, and where the value lies.</summary>
internal readonly record struct RtspAddress(bool Present, bool Parsed, InetAddress Address, int Start, int Length);

/// <summary>One transport spec of a Transport header (RFC 2326 section 12.39), as offsets into the message.</summary>
internal struct RtspTransportSpec
{
    /// <summary>RTP over the RTSP connection (<c>RTP/AVP/TCP</c>, or <c>interleaved=</c>): nothing to expect.</summary>
    public bool Interleaved;

    /// <summary>A multicast transport: the media does not come to the client's own ports.</summary>
    public bool Multicast;

    /// <summary>A parameter that could not be read (a bad port number, a port range backwards).</summary>
    public bool Malformed;

    public RtspPorts ClientPorts;
    public RtspPorts ServerPorts;
    public RtspAddress Destination;
    public RtspAddress Source;

    /// <summary>A unicast UDP transport with the client's ports: what the helper acts on.</summary>
    public readonly bool IsUdpUnicast => !Interleaved && !Multicast && !Malformed && ClientPorts.Present;
}

/// <summary>
/// Walks the transport specs of a Transport value (<c>spec,spec,...</c>; each <c>protocol/profile[/lower];param;param=value</c>),
/// quoted strings kept whole. Each spec is read once; at most <see cref="MaxSpecs"/> are read.
/// </summary>
internal ref struct RtspTransportReader
{
    /// <summary>Transport specs read from one header (clients offer two or three); the rest are left alone, and counted.</summary>
    public const int MaxSpecs = 8;

    private readonly ReadOnlySpan<byte> _message;
    private readonly int _end;
    private readonly byte _family;
    private int _position;
    private int _read;

    /// <param name="message">The message the value lies in.</param>
    /// <param name="start">Where the Transport value starts in <paramref name="message"/>.</param>
    /// <param name="end">Where it ends.</param>
    /// <param name="family">The flow's family (4 or 6): an address of another family is not read.</param>
    public RtspTransportReader(ReadOnlySpan<byte> message, int start, int end, byte family)
    {
        _message = message;
        _position = start;
        _end = end;
        _family = family;
    }

    /// <summary>True when the header held more specs than <see cref="MaxSpecs"/>.</summary>
    public bool TooMany { get; private set; }

    /// <summary>The next spec; false when none is left.</summary>
    public bool Next(out RtspTransportSpec spec)
    {
        spec = default;
        while (_position < _end && IsSpace(_message[_position]))
        {
            _position++;
        }

        if (_position >= _end)
        {
            return false;
        }

        if (_read == MaxSpecs)
        {
            TooMany = true;
            return false;
        }

        _read++;
        int specEnd = FindOutsideQuotes(_position, _end, (byte)',');
        int field = _position;
        bool firstField = true;
        while (field < specEnd)
        {
            int fieldEnd = FindOutsideQuotes(field, specEnd, (byte)';');
            var text = Trim(field, fieldEnd, out int textStart);
            if (firstField)
            {
                // transport-protocol/profile[/lower-transport]
                spec.Interleaved |= text.Length >= 4 && Ascii.EqualsIgnoreCase(text[^4..], "/TCP"u8);
                firstField = false;
            }
            else
            {
                ReadParameter(text, textStart, ref spec);
            }

            field = fieldEnd + 1;
        }

        _position = specEnd + 1;
        return true;
    }

    private readonly void ReadParameter(ReadOnlySpan<byte> text, int textStart, ref RtspTransportSpec spec)
    {
        int equals = text.IndexOf((byte)'=');
        var name = equals < 0 ? text : text[..equals].TrimEnd(" \t"u8);
        var value = equals < 0 ? [] : text[(equals + 1)..];
        int lead = value.Length - value.TrimStart(" \t"u8).Length;
        value = value[lead..];
        int valueStart = textStart + equals + 1 + lead;
        if (Ascii.EqualsIgnoreCase(name, "multicast"u8))
        {
            spec.Multicast = true;
        }
        else if (Ascii.EqualsIgnoreCase(name, "interleaved"u8))
        {
            spec.Interleaved = true;
        }
        else if (Ascii.EqualsIgnoreCase(name, "client_port"u8))
        {
            spec.ClientPorts = ReadPorts(value, valueStart, ref spec.Malformed);
        }
        else if (Ascii.EqualsIgnoreCase(name, "server_port"u8))
        {
            spec.ServerPorts = ReadPorts(value, valueStart, ref spec.Malformed);
        }
        else if (Ascii.EqualsIgnoreCase(name, "destination"u8))
        {
            spec.Destination = ReadAddress(value, valueStart);
        }
        else if (Ascii.EqualsIgnoreCase(name, "source"u8))
        {
            spec.Source = ReadAddress(value, valueStart);
        }
    }

    /// <summary><c>port</c>, <c>port-port</c> or <c>port/port</c>; the second port above the first.</summary>
    private static RtspPorts ReadPorts(ReadOnlySpan<byte> value, int start, ref bool malformed)
    {
        if (!TryReadPort(value, out ushort rtp, out int used))
        {
            malformed = true;
            return default;
        }

        if (used == value.Length)
        {
            return new RtspPorts(true, rtp, rtp, 0, start, used);
        }

        byte separator = value[used];
        if ((separator != (byte)'-' && separator != (byte)'/')
            || !TryReadPort(value[(used + 1)..], out ushort rtcp, out int used2)
            || used + 1 + used2 != value.Length || rtcp <= rtp)
        {
            malformed = true;
            return default;
        }

        return new RtspPorts(true, rtp, rtcp, separator, start, value.Length);
    }

    private static bool TryReadPort(ReadOnlySpan<byte> text, out ushort port, out int used)
    {
        port = 0;
        used = 0;
        while (used < text.Length && used < 6 && char.IsAsciiDigit((char)text[used]))
        {
            used++;
        }

        return used is > 0 and <= 5 && Utf8Parser.TryParse(text[..used], out port, out _) && port != 0;
    }

    /// <summary>An address, quoted or not; parsed when it is a literal of the flow's family (a host name is not resolved).</summary>
    private readonly RtspAddress ReadAddress(ReadOnlySpan<byte> value, int start)
    {
        if (value.Length >= 2 && value[0] == (byte)'"' && value[^1] == (byte)'"')
        {
            value = value[1..^1];
            start++;
        }

        bool parsed = SipAddressText.TryReadBare(value, _family, out var address, out int used) && used == value.Length;
        return new RtspAddress(true, parsed, parsed ? address : default, start, value.Length);
    }

    private readonly int FindOutsideQuotes(int from, int end, byte separator)
    {
        bool quoted = false;
        for (int i = from; i < end; i++)
        {
            byte b = _message[i];
            if (b == (byte)'"')
            {
                quoted = !quoted;
            }
            else if (b == separator && !quoted)
            {
                return i;
            }
        }

        return end;
    }

    private readonly ReadOnlySpan<byte> Trim(int from, int to, out int start)
    {
        while (from < to && IsSpace(_message[from]))
        {
            from++;
        }

        while (to > from && IsSpace(_message[to - 1]))
        {
            to--;
        }

        start = from;
        return _message[from..to];
    }

    // Folded lines leave CR and LF inside the value: they separate like spaces.
    private static bool IsSpace(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n';
}
