using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Offload.Alg.Tests.H323;

/// <summary>One logical channel of a fastStart or an H.245 OpenLogicalChannel: media addresses of its forward and reverse parameters.</summary>
internal sealed record Channel(
    int Number = 1,
    (string Address, ushort Port)? ForwardMedia = null,
    (string Address, ushort Port)? ForwardControl = null,
    (string Address, ushort Port)? ReverseMedia = null,
    (string Address, ushort Port)? ReverseControl = null,
    (string Address, ushort Port)? T120 = null);

/// <summary>
/// Real H.323 messages, encoded with <see cref="PerWriter"/> after the ITU-T ASN.1 (H.225.0 v4, H.245 v7): the fields an
/// endpoint sends (protocol identifiers, endpoint types, conference and call identifiers, the mandatory extension
/// booleans), with the addresses the tests ask for. Each builder returns the bytes and the offsets of the addresses in
/// the order they were written.
/// </summary>
internal static class H323Messages
{
    /// <summary>itu-t(0) recommendation(0) h(8) 2250 version(0) 4.</summary>
    private static readonly byte[] H225ProtocolId = [0x00, 0x08, 0x91, 0x4a, 0x00, 0x04];

    public static readonly byte[] ConferenceId = [.. Enumerable.Range(0x10, 16).Select(i => (byte)i)];

    /// <summary>An endpointIdentifier, "ep01" in BMP characters.</summary>
    private static readonly byte[] EndpointId = [0, (byte)'e', 0, (byte)'p', 0, (byte)'0', 0, (byte)'1'];

    public const byte SetupType = 0x05;
    public const byte ConnectType = 0x07;
    public const byte FacilityType = 0x62;

    private static PerWriter Oid(PerWriter w, byte[] contents) => w.Length(contents.Length).Bytes(contents);

    private static PerWriter TransportAddress(PerWriter w, string address, ushort port) =>
        IsV6(address)
            ? w.Bit(false).Bits(3, 3).Bit(false).Address(address, port) // ip6Address (extensible)
            : w.Bit(false).Bits(0, 3).Address(address, port); // ipAddress

    private static PerWriter H245TransportAddress(PerWriter w, string address, ushort port) =>
        w.Bit(false).Bits(0, 1) // unicastAddress
            .Bit(false).Bits(IsV6(address) ? 2u : 0u, 3) // iPAddress or iP6Address
            .Bit(false).Address(address, port);

    private static bool IsV6(string address) => IPAddress.Parse(address).AddressFamily == AddressFamily.InterNetworkV6;

    /// <summary>EndpointType with a terminal (no non-standard data), mc and undefinedNode false.</summary>
    private static PerWriter EndpointType(PerWriter w) =>
        w.Bit(false).Bits(0b000001, 6).Bit(false).Bits(0, 1).Bit(false).Bit(false);

    private static PerWriter G711Ulaw(PerWriter w) =>
        w.Bit(false).Bits(3, 3) // DataType: audioData
            .Bit(false).Bits(3, 4) // g711Ulaw64k
            .Byte(20 - 1); // INTEGER (1..256)

    private static PerWriter H2250(string? mediaAddress, ushort mediaPort, string? controlAddress, ushort controlPort, int session = 1)
    {
        var w = new PerWriter().Bit(false);
        uint bitmap = (mediaAddress is null ? 0u : 1u << 7) | (controlAddress is null ? 0u : 1u << 5);
        w.Bits(bitmap, 10).Byte(session);
        if (mediaAddress is not null)
        {
            H245TransportAddress(w, mediaAddress, mediaPort);
        }

        if (controlAddress is not null)
        {
            H245TransportAddress(w, controlAddress, controlPort);
        }

        return w;
    }

    public static PerWriter OpenLogicalChannel(PerWriter w, Channel channel)
    {
        bool reverse = channel.ReverseMedia is not null || channel.ReverseControl is not null;
        bool separateStack = channel.T120 is not null;
        w.Bit(separateStack).Bit(reverse).Word(channel.Number - 1);

        // forwardLogicalChannelParameters
        w.Bit(false).Bit(false);
        if (separateStack)
        {
            w.Bit(false).Bits(4, 3) // DataType: data
                .Bit(false).Bit(false).Bits(1, 4) // DataApplicationCapability: application t120
                .Bit(true).Bits(10 - 7, 7).Open(new PerWriter()) // DataProtocolCapability: separateLANStack (an extension)
                .Bits(0, 2).Byte(0); // maxBitRate: one byte
        }
        else
        {
            G711Ulaw(w);
        }

        var forward = channel.ForwardMedia is not null || channel.ForwardControl is not null || !reverse
            ? H2250(channel.ForwardMedia?.Address, channel.ForwardMedia?.Port ?? 0, channel.ForwardControl?.Address, channel.ForwardControl?.Port ?? 0)
            : H2250(null, 0, null, 0);
        w.Bit(true).Bits(3 - 3, 7).Open(forward); // multiplexParameters: h2250LogicalChannelParameters (an extension)

        if (reverse)
        {
            w.Bit(false).Bit(true); // reverseLogicalChannelParameters, with multiplexParameters
            G711Ulaw(w);
            w.Bit(true).Bits(2 - 2, 7).Open(H2250(channel.ReverseMedia?.Address, channel.ReverseMedia?.Port ?? 0, channel.ReverseControl?.Address, channel.ReverseControl?.Port ?? 0));
        }

        if (separateStack)
        {
            var stack = new PerWriter().Bit(false).Bits(0, 2) // NetworkAccessParameters: no distribution, no externalReference
                .Bit(false).Bits(2, 2); // networkAddress: localAreaAddress
            H245TransportAddress(stack, channel.T120!.Value.Address, channel.T120.Value.Port);
            stack.Bit(false); // associateConference
            w.Extensions(true, false).Open(stack);
        }

        return w;
    }

    /// <summary>An H.245 OpenLogicalChannel request (MultimediaSystemControlMessage).</summary>
    public static PerWriter OpenLogicalChannelRequest(Channel channel) =>
        OpenLogicalChannel(new PerWriter().Bit(false).Bits(0, 2).Bit(false).Bits(3, 4), channel);

    /// <summary>An H.245 OpenLogicalChannelAck with the receiver's media addresses (h2250LogicalChannelAckParameters).</summary>
    public static PerWriter OpenLogicalChannelAck(int number, (string Address, ushort Port)? media, (string Address, ushort Port)? control)
    {
        var ack = new PerWriter().Bit(false).Bits(0, 0) // forwardMultiplexAckParameters: h2250LogicalChannelAckParameters (no index bits)
            .Bit(false).Bits((media is null ? 0u : 1u << 2) | (control is null ? 0u : 1u << 1), 5);
        if (media is not null)
        {
            H245TransportAddress(ack, media.Value.Address, media.Value.Port);
        }

        if (control is not null)
        {
            H245TransportAddress(ack, control.Value.Address, control.Value.Port);
        }

        return new PerWriter().Bit(false).Bits(1, 2).Bit(false).Bits(5, 5) // response: openLogicalChannelAck
            .Bit(true).Bit(false).Word(number - 1)
            .Extensions(false, true).Open(ack);
    }

    /// <summary>H323-UserInformation with a Setup.</summary>
    public static PerWriter Setup(
        (string Address, ushort Port)? h245 = null,
        (string Address, ushort Port)? destCallSignal = null,
        (string Address, ushort Port)? sourceCallSignal = null,
        Channel[]? fastStart = null,
        bool tunnelling = false)
    {
        var body = UserInformationHead(0).Bit(true) // extensions follow
            .Bits((h245 is null ? 0u : 1u << 6) | (destCallSignal is null ? 0u : 1u << 3), 7);
        Oid(body, H225ProtocolId);
        if (h245 is not null)
        {
            TransportAddress(body, h245.Value.Address, h245.Value.Port);
        }

        EndpointType(body);
        if (destCallSignal is not null)
        {
            TransportAddress(body, destCallSignal.Value.Address, destCallSignal.Value.Port);
        }

        body.Bit(false) // activeMC
            .Bytes(ConferenceId)
            .Bit(false).Bits(0, 2) // conferenceGoal: create
            .Bit(false).Bits(0, 2); // callType: pointToPoint

        // Extensions: sourceCallSignalAddress(0), callIdentifier(2), fastStart(6), mediaWaitForConnect(7), canOverlapSend(8).
        body.Extensions(sourceCallSignal is not null, false, true, false, false, false, fastStart is not null, true, true);
        if (sourceCallSignal is not null)
        {
            body.Open(TransportAddress(new PerWriter(), sourceCallSignal.Value.Address, sourceCallSignal.Value.Port));
        }

        body.Open(new PerWriter().Bit(false).Bytes(ConferenceId)); // callIdentifier
        if (fastStart is not null)
        {
            body.Open(FastStart(fastStart));
        }

        body.Open(new PerWriter().Bit(false)).Open(new PerWriter().Bit(false));
        return UserInformationTail(body, tunnelling);
    }

    /// <summary>H323-UserInformation with a Connect.</summary>
    public static PerWriter Connect((string Address, ushort Port)? h245 = null, Channel[]? fastStart = null, PerWriter[]? tunnelled = null)
    {
        var body = UserInformationHead(2).Bit(true).Bits(h245 is null ? 0u : 1u, 1);
        Oid(body, H225ProtocolId);
        if (h245 is not null)
        {
            TransportAddress(body, h245.Value.Address, h245.Value.Port);
        }

        EndpointType(body).Bytes(ConferenceId);

        // Extensions: callIdentifier(0), fastStart(4), multipleCalls(5), maintainConnection(6).
        body.Extensions(true, false, false, false, fastStart is not null, true, true);
        body.Open(new PerWriter().Bit(false).Bytes(ConferenceId));
        if (fastStart is not null)
        {
            body.Open(FastStart(fastStart));
        }

        body.Open(new PerWriter().Bit(false)).Open(new PerWriter().Bit(false));
        return UserInformationTail(body, tunnelled is not null, tunnelled);
    }

    /// <summary>H323-UserInformation with a Facility: its reason (1 callForwarded, 3 undefinedReason) and an h245Address.</summary>
    public static PerWriter Facility(int reason, (string Address, ushort Port) h245)
    {
        var body = UserInformationHead(6).Bit(true).Bits(0, 3);
        Oid(body, H225ProtocolId);
        body.Bit(false).Bits((uint)reason, 2);

        // Extensions: callIdentifier(0), h245Address(6).
        body.Extensions(true, false, false, false, false, false, true);
        body.Open(new PerWriter().Bit(false).Bytes(ConferenceId));
        body.Open(TransportAddress(new PerWriter(), h245.Address, h245.Port));
        return UserInformationTail(body, tunnelling: false);
    }

    private static PerWriter FastStart(Channel[] channels)
    {
        var w = new PerWriter().Length(channels.Length);
        foreach (var channel in channels)
        {
            w.Open(OpenLogicalChannel(new PerWriter(), channel));
        }

        return w;
    }

    private static PerWriter UserInformationHead(int bodyIndex) =>
        new PerWriter().Bit(false).Bit(false) // H323-UserInformation: no extensions, no user-data
            .Bit(true).Bit(false) // H323-UU-PDU: extensions, no nonStandardData
            .Bit(false).Bits((uint)bodyIndex, 3);

    private static PerWriter UserInformationTail(PerWriter message, bool tunnelling, PerWriter[]? h245Control = null)
    {
        // H323-UU-PDU's extensions: h4501SupplementaryService, h245Tunneling, h245Control.
        message.Extensions(false, true, h245Control is not null);
        message.Open(new PerWriter().Bit(tunnelling));
        if (h245Control is not null)
        {
            var control = new PerWriter().Length(h245Control.Length);
            foreach (var item in h245Control)
            {
                control.Open(item);
            }

            message.Open(control);
        }

        return message;
    }

    /// <summary>A Q.931 message in a TPKT: call reference, message type, a bearer capability, the User-user element with H.225.0.</summary>
    public static (byte[] Bytes, int[] Offsets) Q931(byte messageType, PerWriter userInformation, ushort callReference = 0x1234)
    {
        var uu = userInformation.ToArray();
        var q931 = new List<byte> { 0x08, 0x02, (byte)(callReference >> 8), (byte)callReference, messageType };
        q931.AddRange([0x04, 0x03, 0x88, 0x93, 0xa5]); // bearer capability
        q931.Add(0x7e);
        q931.Add((byte)((uu.Length + 1) >> 8));
        q931.Add((byte)(uu.Length + 1));
        q931.Add(0x05);
        int uuStart = 4 + q931.Count;
        q931.AddRange(uu);
        return (Tpkt([.. q931]), [.. userInformation.AddressOffsets.Select(o => uuStart + o)]);
    }

    /// <summary>An H.245 message in a TPKT.</summary>
    public static (byte[] Bytes, int[] Offsets) H245(PerWriter message) =>
        (Tpkt(message.ToArray()), [.. message.AddressOffsets.Select(o => o + 4)]);

    public static byte[] Tpkt(byte[] data)
    {
        var tpkt = new byte[data.Length + 4];
        tpkt[0] = 3;
        BinaryPrimitives.WriteUInt16BigEndian(tpkt.AsSpan(2), (ushort)tpkt.Length);
        data.CopyTo(tpkt, 4);
        return tpkt;
    }

    // ---- RAS ----

    private static PerWriter RasMessage(int index) => new PerWriter().Bit(false).Bits((uint)index, 5);

    /// <summary>A RegistrationRequest with one call signal and one RAS address, an h323-ID alias and a time to live.</summary>
    public static PerWriter RegistrationRequest((string Address, ushort Port) callSignal, (string Address, ushort Port) ras, ushort sequence = 1)
    {
        var w = RasMessage(3).Bit(true).Bits(0b010, 3).Word(sequence - 1);
        Oid(w, H225ProtocolId);
        w.Bit(false); // discoveryComplete
        TransportAddress(w.Length(1), callSignal.Address, callSignal.Port);
        TransportAddress(w.Length(1), ras.Address, ras.Port);
        EndpointType(w);
        w.Length(1).Bit(false).Bits(1, 1).Byte(5 - 1).Bytes("\0a\0l\0i\0c\0e"u8); // terminalAlias: h323-ID "alice"
        w.Bit(false).Bits(0, 2).Bit(false).Byte(0xb5).Byte(0).Word(0x1234); // endpointVendor
        // Extensions: timeToLive(1), keepAlive(5), willSupplyUUIEs(7), maintainConnection(8).
        w.Extensions(false, true, false, false, false, true, false, true, true);
        w.Open(new PerWriter().Bits(1, 2).Word(300 - 1));
        w.Open(new PerWriter().Bit(false)).Open(new PerWriter().Bit(false)).Open(new PerWriter().Bit(false));
        return w;
    }

    /// <summary>A RegistrationConfirm naming the call signal address the gatekeeper registered.</summary>
    public static PerWriter RegistrationConfirm((string Address, ushort Port) callSignal, ushort sequence = 1)
    {
        var w = RasMessage(4).Bit(false).Bits(0, 3).Word(sequence - 1);
        Oid(w, H225ProtocolId);
        TransportAddress(w.Length(1), callSignal.Address, callSignal.Port);
        w.Bits(4 - 1, 7).Align().Bytes(EndpointId); // endpointIdentifier "ep01"
        return w;
    }

    /// <summary>An AdmissionRequest of a calling endpoint with its srcCallSignalAddress (and the callee's, if known).</summary>
    public static PerWriter AdmissionRequest((string Address, ushort Port)? destCallSignal, (string Address, ushort Port) srcCallSignal, ushort sequence = 2)
    {
        var w = RasMessage(9).Bit(false).Bits((destCallSignal is null ? 0u : 1u << 4) | (1u << 2), 7).Word(sequence - 1)
            .Bit(false).Bits(0, 2); // callType: pointToPoint
        w.Bits(4 - 1, 7).Align().Bytes(EndpointId);
        if (destCallSignal is not null)
        {
            TransportAddress(w, destCallSignal.Value.Address, destCallSignal.Value.Port);
        }

        w.Length(1).Bit(false).Bits(0, 1).Bits(4 - 1, 7).Align().Bytes([0x12, 0x34]); // srcInfo: dialedDigits "1234"
        TransportAddress(w, srcCallSignal.Address, srcCallSignal.Port);
        w.Bits(1, 2).Word(640).Word(0x1234).Bytes(ConferenceId).Bit(false).Bit(false); // bandWidth, CRV, conferenceID, activeMC, answerCall
        return w;
    }

    /// <summary>An AdmissionConfirm naming where to send the call's Setup.</summary>
    public static PerWriter AdmissionConfirm((string Address, ushort Port) destCallSignal, ushort sequence = 2)
    {
        var w = RasMessage(10).Bit(false).Bits(0, 2).Word(sequence - 1).Bits(1, 2).Word(640)
            .Bit(false).Bits(0, 1); // callModel: direct
        TransportAddress(w, destCallSignal.Address, destCallSignal.Port);
        return w;
    }
}
