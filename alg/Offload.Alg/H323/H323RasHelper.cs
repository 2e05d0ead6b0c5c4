using System.Buffers;
using Ras = Offload.Alg.H323.H323Tables.Ras;

namespace Offload.Alg.H323;

/// <summary>
/// The H.323 registration, admission and status helper (the kernel's "RAS" helper), on UDP port 1719: RasMessage in
/// aligned PER. A RegistrationRequest expects the calls its gatekeeper will route to the endpoint's callSignalAddress
/// (permanent, from the gatekeeper, helped by the call signalling helper); with the endpoint translated, the router's
/// address and port are written over its callSignalAddress and rasAddress, and the gatekeeper's answers
/// (RegistrationConfirm, AdmissionConfirm, UnregistrationRequest) get the endpoint's own back. GatekeeperRequest and
/// LocationRequest have their rasAddress and replyAddress translated, AdmissionRequest its call signal addresses, an
/// InfoRequestResponse both kinds.
/// </summary>
internal sealed class H323RasHelper : ConntrackHelper
{
    /// <summary>The kernel's RAS policy (32 outstanding, 4 minutes) as its one class, <c>call</c>: the calls a registration lets in.</summary>
    public static readonly IReadOnlyList<ExpectationClass> Classes = [new("call", 32, TimeSpan.FromMinutes(4))];

    public const ushort DefaultPort = 1719;

    /// <summary>A registration's time to live when its request gives none (the kernel's default_rrq_ttl), in seconds.</summary>
    public const long DefaultTimeToLive = 300;

    /// <summary>How long an unregistration waits for its answer (the kernel's 30 seconds).</summary>
    private static readonly TimeSpan UnregistrationWait = TimeSpan.FromSeconds(30);

    public H323RasHelper()
        : base("h323-ras", Classes)
    {
        Protocol = IpProtocol.Udp;
        Ports = [DefaultPort];
        Calls = new H323Helper();
    }

    /// <summary>The call signalling helper given to the calls a registration expects.</summary>
    internal H323Helper Calls { get; }

    /// <summary>The call signalling helper (and through it the H.245 one), for connections restored from a snapshot when <c>h323</c> is not configured.</summary>
    public override IReadOnlyList<ConntrackHelper> AttachedHelpers => [Calls];

    public override int StateVersion => H323State.Version;

    public override bool SaveState(object state, IBufferWriter<byte> writer) => H323State.Save(state, writer);

    public override object? RestoreState(ReadOnlySpan<byte> data, int version) => H323State.Restore(data, version);

    public override HelperVerdict Help(ref HelperContext context)
    {
        var payload = context.Payload;
        if (payload.IsEmpty)
        {
            return HelperVerdict.Accept;
        }

        Span<H323Found> room = stackalloc H323Found[H323Actions.MaxFound];
        var findings = new H323Findings(room);
        var status = PerDecoder.Decode(payload, 0, payload.Length, H323Tables.RasMessage, ref findings);
        if (status is not (PerStatus.Ok or PerStatus.Stopped))
        {
            context.Count(HelperEvent.MalformedCommand);
            return HelperVerdict.Accept;
        }

        var found = findings.Found;
        switch (findings.Message)
        {
            case Ras.GatekeeperRequest:
            case Ras.LocationRequest:
                return RasAddress(ref context, found);
            case Ras.RegistrationRequest:
                // Its time to live, or the kernel's default_rrq_ttl, holds the registration until the confirmation.
                context.GetState<H323State>().RegistrationTtl = findings.TimeToLive > 0 ? findings.TimeToLive : DefaultTimeToLive;
                return ExpectCalls(ref context, found) == HelperVerdict.Drop ? HelperVerdict.Drop : RasAddress(ref context, found);
            case Ras.RegistrationConfirm:
                var confirmed = SignalAddress(ref context, found, H323AddressTag.CallSignalAddress);
                KeepRegistration(ref context, findings.TimeToLive);
                return confirmed;
            case Ras.UnregistrationRequest:
                var verdict = SignalAddress(ref context, found, H323AddressTag.CallSignalAddress);
                context.Unexpect(H323Actions.CallClass); // the registration's calls are no longer let in
                context.GetState<H323State>().ClearSignalPorts();
                context.RefreshTimeout(UnregistrationWait);
                return verdict;
            case Ras.AdmissionRequest:
                return Admission(ref context, found);
            case Ras.InfoRequestResponse:
                return RasAddress(ref context, found) == HelperVerdict.Drop
                    ? HelperVerdict.Drop
                    : SignalAddress(ref context, found, H323AddressTag.CallSignalAddress);
            case Ras.AdmissionConfirm:
                return AdmissionConfirm(ref context, found);
            default:
                return HelperVerdict.Accept;
        }
    }

    /// <summary>
    /// A confirmed registration keeps its RAS flow for its time to live (the gatekeeper's, or the request's), as the
    /// kernel's process_rcf refreshes the connection (the calls' expectation takes the request's time to live when the
    /// RegistrationRequest makes it, and each new RegistrationRequest renews it).
    /// </summary>
    private static void KeepRegistration(ref HelperContext context, long timeToLive)
    {
        if (!context.TryGetState<H323State>(out var state))
        {
            return;
        }

        if (timeToLive > 0)
        {
            state.RegistrationTtl = timeToLive;
        }

        if (state.RegistrationTtl > 0)
        {
            context.RefreshTimeout(TimeSpan.FromSeconds(state.RegistrationTtl));
        }
    }

    /// <summary>
    /// The first callSignalAddress of a RegistrationRequest that is the endpoint's own: calls from the gatekeeper to it
    /// are expected (permanent, helped by the call signalling helper); translated, the router's endpoint is written
    /// over it (the kernel's expect_q931 and nat_q931).
    /// </summary>
    private HelperVerdict ExpectCalls(ref HelperContext context, scoped ReadOnlySpan<H323Found> found)
    {
        foreach (var address in found)
        {
            if (address.Tag != H323AddressTag.CallSignalAddress
                || !H323Actions.TryRead(ref context, address, out var ip, out ushort port) || ip != context.Tuple.Source || port == 0)
            {
                continue;
            }

            var request = context.FromPeer(IpProtocol.Tcp, port); // from the gatekeeper only (the kernel's gkrouted_only)
            request.Class = H323Actions.CallClass;
            request.Helper = Calls;
            request.Flags = ExpectationFlags.Permanent;
            var state = context.GetState<H323State>();
            if (state.RegistrationTtl > 0)
            {
                // The registration's calls are let in for as long as it lives (the kernel sets them to its time to live).
                request.Timeout = TimeSpan.FromSeconds(state.RegistrationTtl);
            }

            int direction = H323Actions.DirectionIndex(ref context);
            if (!context.IsNatted)
            {
                if (context.Expect(ref request) != ExpectResult.Added)
                {
                    context.Count(HelperEvent.ExpectationFailed);
                    return HelperVerdict.Drop;
                }

                state.SetSignalPorts(direction, port, port);
                return HelperVerdict.Accept;
            }

            if (state.SignalPort(direction) == port && state.SignalPort(1 - direction) != 0)
            {
                request.DestinationPort = state.SignalPort(1 - direction); // a re-registration keeps its port
                request.Nat = ExpectationNat.Redirect;
                request.NatAddress = ip;
                request.NatPort = port;
            }

            if (context.Expect(ref request) != ExpectResult.Added)
            {
                context.Count(HelperEvent.ExpectationFailed);
                return HelperVerdict.Accept;
            }

            if (!H323Actions.Write(ref context, address, context.OtherTuple.Destination, request.DestinationPort))
            {
                return HelperVerdict.Drop;
            }

            state.SetSignalPorts(direction, port, request.DestinationPort);
            return HelperVerdict.Accept;
        }

        return HelperVerdict.Accept;
    }

    /// <summary>A rasAddress or replyAddress that is the sender's own endpoint, on a translated flow: the router's instead (set_ras_addr).</summary>
    private static HelperVerdict RasAddress(ref HelperContext context, scoped ReadOnlySpan<H323Found> found)
    {
        if (!context.IsNatted)
        {
            return HelperVerdict.Accept;
        }

        foreach (var address in found)
        {
            if (address.Tag is not (H323AddressTag.RasAddress or H323AddressTag.ReplyAddress)
                || !H323Actions.TryRead(ref context, address, out var ip, out ushort port)
                || ip != context.Tuple.Source || port != context.Tuple.SourcePort)
            {
                continue;
            }

            ref readonly var other = ref context.OtherTuple;
            return H323Actions.Write(ref context, address, other.Destination, other.DestinationPort) ? HelperVerdict.Accept : HelperVerdict.Drop;
        }

        return HelperVerdict.Accept;
    }

    /// <summary>
    /// A call signal address naming the registered endpoint (its own port as announced, or the router's in its place),
    /// on a translated flow: swapped for the other side's view of it (set_sig_addr).
    /// </summary>
    private static HelperVerdict SignalAddress(ref HelperContext context, scoped ReadOnlySpan<H323Found> found, H323AddressTag tag)
    {
        if (!context.IsNatted || !context.TryGetState<H323State>(out var state))
        {
            return HelperVerdict.Accept;
        }

        int direction = H323Actions.DirectionIndex(ref context);
        ushort announced = state.SignalPort(direction);
        ushort translated = state.SignalPort(1 - direction);
        foreach (var address in found)
        {
            if (address.Tag != tag || !H323Actions.TryRead(ref context, address, out var ip, out ushort port) || port != announced || announced == 0)
            {
                continue;
            }

            ref readonly var other = ref context.OtherTuple;
            if (ip == context.Tuple.Source)
            {
                return Write(ref context, address, other.Destination, translated); // endpoint to gatekeeper
            }

            if (ip == context.Tuple.Destination)
            {
                return Write(ref context, address, other.Source, translated); // gatekeeper to endpoint
            }
        }

        return HelperVerdict.Accept;
    }

    /// <summary>An AdmissionRequest on a translated flow: an answering endpoint's destCallSignalAddress, or a calling one's srcCallSignalAddress.</summary>
    private static HelperVerdict Admission(ref HelperContext context, scoped ReadOnlySpan<H323Found> found)
    {
        if (!context.IsNatted)
        {
            return HelperVerdict.Accept;
        }

        context.TryGetState<H323State>(out var state);
        int direction = H323Actions.DirectionIndex(ref context);
        foreach (var address in found)
        {
            if (!H323Actions.TryRead(ref context, address, out var ip, out ushort port) || ip != context.Tuple.Source)
            {
                continue;
            }

            if (address.Tag == H323AddressTag.DestCallSignalAddress && state is not null && port == state.SignalPort(direction) && port != 0)
            {
                return Write(ref context, address, context.OtherTuple.Destination, state.SignalPort(1 - direction));
            }

            if (address.Tag == H323AddressTag.SourceCallSignalAddress)
            {
                return Write(ref context, address, context.OtherTuple.Destination, port);
            }
        }

        return HelperVerdict.Accept;
    }

    /// <summary>
    /// An AdmissionConfirm naming the endpoint it answers (the router's address, as the gatekeeper knows it): the
    /// endpoint's own endpoint back. One sending the caller elsewhere expects nothing: the call's Setup goes to a bound
    /// call signalling port.
    /// </summary>
    private static HelperVerdict AdmissionConfirm(ref HelperContext context, scoped ReadOnlySpan<H323Found> found)
    {
        foreach (var address in found)
        {
            if (address.Tag == H323AddressTag.DestCallSignalAddress
                && H323Actions.TryRead(ref context, address, out var ip, out _) && ip == context.Tuple.Destination)
            {
                return SignalAddress(ref context, found, H323AddressTag.DestCallSignalAddress);
            }
        }

        return HelperVerdict.Accept;
    }

    private static HelperVerdict Write(ref HelperContext context, in H323Found found, InetAddress address, ushort port) =>
        H323Actions.Write(ref context, found, address, port) ? HelperVerdict.Accept : HelperVerdict.Drop;
}
