using Offload.Alg.H323;
using Xunit;
using static Offload.Alg.Tests.H323.H323Messages;

namespace Offload.Alg.Tests.H323;

/// <summary>
/// The PER walker on real encoded messages (built by an encoder of the tests' own, after the ITU-T ASN.1): it finds
/// every address the kernel's nf_conntrack_h323 decodes (h245Address, call signal addresses, fastStart's and H.245's
/// media and control channels, T.120, RAS addresses) at the byte where the encoder wrote it, and skips what lies
/// between (extension additions, endpoint types, identifiers) without losing its place.
/// </summary>
public class H323DecoderTests
{
    private static (PerStatus Status, H323Found[] Found, ulong T120, int Message) Decode(byte[] bytes, int start, int end, PerField type)
    {
        Span<H323Found> room = stackalloc H323Found[H323Actions.MaxFound];
        var findings = new H323Findings(room);
        var status = PerDecoder.Decode(bytes, start, end, type, ref findings);
        return (status, findings.Found.ToArray(), findings.T120Channels, findings.Message);
    }

    private static (PerStatus Status, H323Found[] Found, ulong T120, int Message) DecodeQ931(byte[] tpkt)
    {
        Assert.True(H323Framing.TryReadTpkt(tpkt, 0, out int start, out int length));
        Assert.True(H323Framing.TryFindUserInformation(tpkt, start, length, out _, out int uuStart, out int uuLength));
        return Decode(tpkt, uuStart, uuStart + uuLength, H323Tables.H323UserInformation);
    }

    [Fact]
    public void A_setup_yields_h245_address_dest_and_source_call_signal_addresses_and_fast_start_channels_in_message_order()
    {
        var (bytes, offsets) = Q931(SetupType, Setup(
            h245: ("10.0.0.5", 5000),
            destCallSignal: ("192.0.2.80", 1720),
            sourceCallSignal: ("10.0.0.5", 30000),
            fastStart: [new Channel(1, ForwardControl: ("10.0.0.5", 6001)), new Channel(2, ReverseMedia: ("10.0.0.5", 6000), ReverseControl: ("10.0.0.5", 6001))]));

        var (status, found, _, message) = DecodeQ931(bytes);

        Assert.Equal(PerStatus.Ok, status);
        Assert.Equal(H323Tables.Body.Setup, message);
        Assert.Equal(
            [H323AddressTag.H245Address, H323AddressTag.DestCallSignalAddress, H323AddressTag.SourceCallSignalAddress,
             H323AddressTag.MediaControlChannel, H323AddressTag.MediaChannel, H323AddressTag.MediaControlChannel],
            found.Select(f => f.Tag));
        Assert.Equal(offsets, found.Select(f => f.Offset));
        Assert.All(found, f => Assert.Equal(4, f.Family));
        Assert.Equal([-1, -1, -1, 0, 1, 1], found.Select(f => f.Channel));
        Assert.Equal(new byte[] { 10, 0, 0, 5, 0x13, 0x88 }, bytes[offsets[0]..(offsets[0] + 6)]); // 10.0.0.5:5000
    }

    [Fact]
    public void A_connect_with_an_ipv6_h245_address_and_tunnelled_h245_yields_both()
    {
        var (bytes, offsets) = Q931(ConnectType, Connect(
            h245: ("2001:db8::5", 5001),
            tunnelled: [OpenLogicalChannelAck(1, ("2001:db8::5", 7000), ("2001:db8::5", 7001))]));

        var (status, found, _, message) = DecodeQ931(bytes);

        Assert.Equal(PerStatus.Ok, status);
        Assert.Equal(H323Tables.Body.Connect, message);
        Assert.Equal([H323AddressTag.H245Address, H323AddressTag.MediaChannel, H323AddressTag.MediaControlChannel], found.Select(f => f.Tag));
        Assert.All(found, f => Assert.Equal(6, f.Family));
        Assert.Equal(offsets, found.Select(f => f.Offset));
    }

    [Fact]
    public void An_h245_open_logical_channel_and_its_ack_yield_their_media_addresses()
    {
        var (olc, olcOffsets) = H245(OpenLogicalChannelRequest(new Channel(3, ForwardControl: ("10.0.0.5", 6003))));
        var (ack, ackOffsets) = H245(OpenLogicalChannelAck(3, ("192.0.2.80", 8000), ("192.0.2.80", 8001)));

        var request = Decode(olc, 4, olc.Length, H323Tables.MultimediaSystemControlMessage);
        var response = Decode(ack, 4, ack.Length, H323Tables.MultimediaSystemControlMessage);

        Assert.Equal(PerStatus.Ok, request.Status);
        Assert.Equal([H323AddressTag.MediaControlChannel], request.Found.Select(f => f.Tag));
        Assert.Equal(olcOffsets, request.Found.Select(f => f.Offset));
        Assert.Equal(PerStatus.Ok, response.Status);
        Assert.Equal([H323AddressTag.MediaChannel, H323AddressTag.MediaControlChannel], response.Found.Select(f => f.Tag));
        Assert.Equal(ackOffsets, response.Found.Select(f => f.Offset));
    }

    [Fact]
    public void A_t120_channel_on_a_separate_lan_stack_is_marked_and_its_address_found()
    {
        var (olc, offsets) = H245(OpenLogicalChannelRequest(new Channel(4, T120: ("10.0.0.5", 1503))));

        var (status, found, t120, _) = Decode(olc, 4, olc.Length, H323Tables.MultimediaSystemControlMessage);

        Assert.Equal(PerStatus.Ok, status);
        Assert.Equal(1UL, t120);
        Assert.Equal([H323AddressTag.T120Address], found.Select(f => f.Tag));
        Assert.Equal(offsets, found.Select(f => f.Offset));
    }

    [Fact]
    public void An_audio_channel_is_not_marked_t120()
    {
        var (olc, _) = H245(OpenLogicalChannelRequest(new Channel(1, ForwardControl: ("10.0.0.5", 6001))));
        Assert.Equal(0UL, Decode(olc, 4, olc.Length, H323Tables.MultimediaSystemControlMessage).T120);
    }

    [Fact]
    public void Ras_messages_yield_their_addresses_and_stop_where_the_tables_end()
    {
        var rrq = RegistrationRequest(("10.0.0.5", 1720), ("10.0.0.5", 1719)).ToArray();
        var arq = AdmissionRequest(("192.0.2.80", 1720), ("10.0.0.5", 1720)).ToArray();
        var acf = AdmissionConfirm(("192.0.2.80", 1720)).ToArray();

        var registration = Decode(rrq, 0, rrq.Length, H323Tables.RasMessage);
        var admission = Decode(arq, 0, arq.Length, H323Tables.RasMessage);
        var confirm = Decode(acf, 0, acf.Length, H323Tables.RasMessage);

        Assert.Equal((PerStatus.Ok, H323Tables.Ras.RegistrationRequest), (registration.Status, registration.Message));
        Assert.Equal([H323AddressTag.CallSignalAddress, H323AddressTag.RasAddress], registration.Found.Select(f => f.Tag));
        Assert.Equal(RegistrationRequest(("10.0.0.5", 1720), ("10.0.0.5", 1719)).AddressOffsets, registration.Found.Select(f => f.Offset));
        Assert.Equal((PerStatus.Stopped, H323Tables.Ras.AdmissionRequest), (admission.Status, admission.Message));
        Assert.Equal([H323AddressTag.DestCallSignalAddress, H323AddressTag.SourceCallSignalAddress], admission.Found.Select(f => f.Tag));
        Assert.Equal((PerStatus.Stopped, H323Tables.Ras.AdmissionConfirm), (confirm.Status, confirm.Message));
        Assert.Single(confirm.Found);
    }

    [Fact]
    public void A_message_cut_anywhere_is_refused_whole_and_never_read_past_its_end()
    {
        var (bytes, _) = Q931(SetupType, Setup(h245: ("10.0.0.5", 5000), fastStart: [new Channel(1, ForwardControl: ("10.0.0.5", 6001))]));
        Assert.True(H323Framing.TryReadTpkt(bytes, 0, out int start, out int length));
        Assert.True(H323Framing.TryFindUserInformation(bytes, start, length, out _, out int uuStart, out int uuLength));
        for (int end = uuStart; end < uuStart + uuLength; end++)
        {
            var (status, found, _, _) = Decode(bytes, uuStart, end, H323Tables.H323UserInformation);
            Assert.NotEqual(PerStatus.Ok, status);
            Assert.All(found, f => Assert.True(f.Offset + 6 <= end));
        }
    }

    [Fact]
    public void Tens_of_thousands_of_items_are_refused_as_too_complex_without_walking_them_all()
    {
        // A Setup whose sourceAddress lists 16000 dialed digits (one digit each): valid PER, absurd as a message.
        var w = new PerWriter().Bit(false).Bit(false).Bit(true).Bit(false).Bit(false).Bits(0, 3)
            .Bit(false).Bits(1u << 5, 7).Length(6).Bytes([0, 8, 0x91, 0x4a, 0, 4]).Length(16000);
        for (int i = 0; i < 16000; i++)
        {
            w.Bit(false).Bit(false).Bits(0, 7).Align().Byte(0x10);
        }

        var bytes = w.ToArray();
        Assert.Equal(PerStatus.TooComplex, Decode(bytes, 0, bytes.Length, H323Tables.H323UserInformation).Status);
    }

    [Fact]
    public void Q931_framing_skips_single_octet_and_ordinary_elements_and_refuses_a_user_user_element_past_the_message()
    {
        var (bytes, _) = Q931(SetupType, Setup(h245: ("10.0.0.5", 5000)));
        Assert.True(H323Framing.TryReadTpkt(bytes, 0, out int start, out int length));
        Assert.True(H323Framing.TryFindUserInformation(bytes, start, length, out byte type, out _, out _));
        Assert.Equal(SetupType, type);
        Assert.False(H323Framing.TryFindUserInformation(bytes, start, length - 1, out _, out _, out _));
        Assert.False(H323Framing.TryReadTpkt(bytes.AsSpan(0, bytes.Length - 1), 0, out _, out _));
    }
}
