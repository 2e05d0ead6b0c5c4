using System.Buffers.Binary;
using System.Net;
using Offload.Alg.H323;
using Offload.Engine;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.H323.H323Messages;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.H323;

/// <summary>
/// The RAS helper inside the engine: a LAN endpoint registers with a gatekeeper beyond the WAN. As the kernel's RAS
/// helper with nf_nat_h323, the RegistrationRequest leaves with its callSignalAddress and rasAddress naming the
/// router, the gatekeeper's calls to that address are expected (from the gatekeeper, permanent, helped by the call
/// signalling helper), and the RegistrationConfirm and AdmissionConfirm give the endpoint its own address back.
/// </summary>
public class H323RasHelperTests
{
    private const string Gatekeeper = Server;

    private static (string Address, ushort Port) ReadAt(byte[] packet, int offset)
    {
        var payload = Payload(packet);
        return (new IPAddress(payload.AsSpan(offset, 4)).ToString(), BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(offset + 4)));
    }

    private static (RouterRig Rig, Hop Rrq, (string Address, ushort Port) Registered) Register()
    {
        var rig = Masquerading(new H323RasHelper());
        var rrq = RegistrationRequest((Client, 1720), (Client, 1719));
        var hop = rig.Out(UdpPacket(Client, 1719, Gatekeeper, 1719, rrq.ToArray()));
        Assert.True(hop.Accepted, rig.DropSummary());
        AssertValid(hop.Packet);
        Assert.Equal(rrq.ToArray().Length, Payload(hop.Packet).Length);
        return (rig, hop, ReadAt(hop.Packet, rrq.AddressOffsets[0]));
    }

    [Fact]
    public void A_registration_names_the_router_as_call_signal_and_ras_address()
    {
        var (_, hop, registered) = Register();
        var rrq = RegistrationRequest((Client, 1720), (Client, 1719));

        Assert.Equal((WanAddress, (ushort)1720), registered);
        Assert.Equal((WanAddress, SourcePort(hop.Packet)), ReadAt(hop.Packet, rrq.AddressOffsets[1]));
    }

    [Fact]
    public void The_gatekeepers_calls_to_the_registered_address_are_expected_and_arrive_related_at_the_endpoint()
    {
        var (rig, rrqHop, registered) = Register();

        var expected = Assert.Single(rig.Expectations);
        Assert.Equal((IpProtocol.Tcp, A(Gatekeeper), A(WanAddress), registered.Port),
            (expected.Tuple.Protocol, expected.Tuple.Source, expected.Tuple.Destination, expected.Tuple.DestinationPort));
        Assert.Equal(ExpectationFlags.Permanent, expected.Flags);
        Assert.Equal(TimeSpan.FromSeconds(300), expected.Timeout); // the request's timeToLive, not the class's 240 s
        Assert.IsType<H323Helper>(expected.Helper);

        var call = rig.In(TcpPacket(Gatekeeper, 42000, WanAddress, registered.Port, Syn));
        Assert.True(call.Accepted, rig.DropSummary());
        Assert.Equal(CtInfo.Related, call.CtInfo);
        Assert.Equal((Ip(Client), (ushort)1720), (Destination(call.Packet), DestinationPort(call.Packet)));
        Assert.Single(rig.Expectations); // permanent: it stays for the next call
        _ = rrqHop;
    }

    [Fact]
    public void The_confirmation_gives_the_endpoint_its_own_call_signal_address_back()
    {
        var (rig, rrq, registered) = Register();
        var rcf = RegistrationConfirm(registered);

        var hop = rig.In(UdpPacket(Gatekeeper, 1719, WanAddress, SourcePort(rrq.Packet), rcf.ToArray()));

        Assert.True(hop.Accepted, rig.DropSummary());
        Assert.Equal((Client, (ushort)1720), ReadAt(hop.Packet, rcf.AddressOffsets[0]));
    }

    [Fact]
    public void An_admission_request_names_the_router_as_the_callers_source_and_an_admission_confirm_to_elsewhere_passes()
    {
        var (rig, rrq, _) = Register();
        var arq = AdmissionRequest(("192.0.2.99", 1720), (Client, 1720));

        var hop = rig.Out(UdpPacket(Client, 1719, Gatekeeper, 1719, arq.ToArray()));

        Assert.Equal(("192.0.2.99", (ushort)1720), ReadAt(hop.Packet, arq.AddressOffsets[0]));
        Assert.Equal((WanAddress, (ushort)1720), ReadAt(hop.Packet, arq.AddressOffsets[1]));

        var acf = AdmissionConfirm(("192.0.2.99", 1720)).ToArray();
        var answer = rig.In(UdpPacket(Gatekeeper, 1719, WanAddress, SourcePort(rrq.Packet), acf));
        Assert.Equal(acf, Payload(answer.Packet));
    }

    [Fact]
    public void An_unregistration_withdraws_the_expected_calls()
    {
        var (rig, _, registered) = Register();
        var urq = new PerWriter().Bit(false).Bits(6, 5) // unregistrationRequest
            .Bit(false).Bits(0, 3).Word(9).Length(1).Bit(false).Bits(0, 3).Address(WanAddress, registered.Port);

        Assert.True(rig.Out(UdpPacket(Client, 1719, Gatekeeper, 1719, urq.ToArray())).Accepted);

        Assert.Empty(rig.Expectations);
    }

    [Fact]
    public void A_confirmed_registration_keeps_its_ras_flow_for_its_time_to_live()
    {
        var (rig, rrq, registered) = Register(); // the request's timeToLive: 300 s
        Assert.True(rig.In(UdpPacket(Gatekeeper, 1719, WanAddress, SourcePort(rrq.Packet), RegistrationConfirm(registered).ToArray())).Accepted);

        rig.Clock.NowNanoseconds += TimeSpan.FromSeconds(250).Ticks * 100; // beyond UDP's timeouts, within the registration's
        var again = rig.Out(UdpPacket(Client, 1719, Gatekeeper, 1719, RegistrationRequest((Client, 1720), (Client, 1719), sequence: 2).ToArray()));
        Assert.Equal(rrq.Connection, again.Connection);

        rig.Clock.NowNanoseconds += TimeSpan.FromSeconds(400).Ticks * 100; // past it, with no confirmation since
        var late = rig.Out(UdpPacket(Client, 1719, Gatekeeper, 1719, RegistrationRequest((Client, 1720), (Client, 1719), sequence: 3).ToArray()));
        Assert.NotEqual(rrq.Connection, late.Connection);
    }

    [Fact]
    public void An_info_request_response_names_the_router_as_ras_and_call_signal_address()
    {
        var (rig, rrq, registered) = Register();
        var irr = new PerWriter().Bit(false).Bits(22, 5) // infoRequestResponse
            .Bit(false).Bits(0, 3).Word(4); // no extensions, no optional components, requestSeqNum
        irr.Bit(false).Bits(0b000001, 6).Bit(false).Bits(0, 1).Bit(false).Bit(false); // endpointType: a terminal
        irr.Bits(3, 7).Align().Bytes([0, (byte)'e', 0, (byte)'p', 0, (byte)'0', 0, (byte)'1']);
        irr.Bit(false).Bits(0, 3).Address(Client, 1719).Length(1).Bit(false).Bits(0, 3).Address(Client, 1720);
        irr.Bit(false); // needResponse

        var hop = rig.Out(UdpPacket(Client, 1719, Gatekeeper, 1719, irr.ToArray()));

        Assert.Equal((WanAddress, SourcePort(rrq.Packet)), ReadAt(hop.Packet, irr.AddressOffsets[0]));
        Assert.Equal(registered, ReadAt(hop.Packet, irr.AddressOffsets[1]));
    }
}
