using static Offload.Alg.H323.PerField;

namespace Offload.Alg.H323;

/// <summary>
/// The ASN.1 types of H.225.0 (call signalling and RAS) and H.245 (media control) that lie on the way to the
/// addresses a NAT must see, as aligned PER encodes them: sizes, bounds, optional components and extension points
/// after the ITU-T modules (the same subset as the kernel's nf_conntrack_h323_types, in tables of our own). Fields
/// after the last one needed are <see cref="PerFlags.Stop"/>; extension additions are open types and skipped
/// whole unless something is recorded under them.
/// </summary>
internal static class H323Tables
{
    private const PerFlags E = PerFlags.Extensible;
    private const PerFlags O = PerFlags.Optional;
    private const PerFlags EO = PerFlags.Extensible | PerFlags.Optional;
    private const PerFlags N = PerFlags.None;

    // ---- H.225.0 common types ----

    private static readonly PerField H221NonStandard = Seq("H221NonStandard", 0, 3, E,
        Int("t35CountryCode", PerSize.Byte), Int("t35Extension", PerSize.Byte), Int("manufacturerCode", PerSize.Word));

    private static readonly PerField NonStandardParameter = Seq("NonStandardParameter", 0, 2, N,
        Choice("nonStandardIdentifier", 1, 2, E, Oid("object"), H221NonStandard),
        Octets("data", PerSize.Length, 0));

    /// <summary>H.225.0 TransportAddress: ipAddress and ip6Address are recorded.</summary>
    private static readonly PerField TransportAddress = Choice("TransportAddress", 3, 7, E,
        Seq("ipAddress", 0, 2, N, Address("ip", 4), Int("port", PerSize.Word)),
        Seq("ipSourceRoute", 0, 4, E,
            Octets("ip", 4), Int("port", PerSize.Word),
            SeqOf("route", PerSize.Length, N, Octets("item", 4)),
            Choice("routing", 1, 2, E, Null("strict"), Null("loose"))),
        Seq("ipxAddress", 0, 3, N, Octets("node", 6), Octets("netnum", 4), Octets("port", 2)),
        Seq("ip6Address", 0, 2, E, Address("ip", 16), Int("port", PerSize.Word)),
        Octets("netBios", 16),
        OctetsBits("nsap", 5, 1),
        Seq("nonStandardAddress", 0, 2, N, NonStandardParameter.Children));

    private static readonly PerField AliasAddress = Choice("AliasAddress", 1, 2, E,
        NumericString("dialedDigits", 7, 1),
        Bmp("h323-ID", 0, 1));

    private static readonly PerField AliasList = SeqOf("aliases", PerSize.Length, O, AliasAddress);

    private static readonly PerField NonStandardOnly = Seq("info", 1, 1, E, NonStandardParameter.With(O));

    private static readonly PerField SupportedProtocols = Choice("SupportedProtocols", 4, 9, E,
        NonStandardParameter, NonStandardOnly, NonStandardOnly, NonStandardOnly, NonStandardOnly, NonStandardOnly,
        NonStandardOnly, NonStandardOnly, NonStandardOnly);

    private static readonly PerField EndpointType = Seq("EndpointType", 6, 8, E,
        NonStandardParameter.With(O),
        Seq("vendor", 2, 3, EO, H221NonStandard, Octets("productId", PerSize.Byte, 1, O), Octets("versionId", PerSize.Byte, 1, O)),
        Seq("gatekeeper", 1, 1, EO, NonStandardParameter.With(O)),
        Seq("gateway", 2, 2, EO, SeqOf("protocol", PerSize.Length, O, SupportedProtocols), NonStandardParameter.With(O)),
        Seq("mcu", 1, 1, EO, NonStandardParameter.With(O)),
        Seq("terminal", 1, 1, EO, NonStandardParameter.With(O)),
        Bool("mc"),
        Bool("undefinedNode"));

    private static readonly PerField VendorIdentifier = Seq("VendorIdentifier", 2, 3, E,
        H221NonStandard, Octets("productId", PerSize.Byte, 1, O), Octets("versionId", PerSize.Byte, 1, O));

    private static readonly PerField CallType = Choice("CallType", 2, 4, E, Null("pointToPoint"), Null("oneToN"), Null("nToOne"), Null("nToN"));

    private static readonly PerField CallIdentifier = Seq("CallIdentifier", 0, 1, E, Octets("guid", 16));

    private static readonly PerField Skipped = Opaque("skipped", N);

    private static PerField Transport(H323AddressTag tag, PerFlags flags = N) => TransportAddress.With(flags).Tagged(tag);

    // ---- H.245 ----

    private static readonly PerField H245NonStandardParameter = Seq("NonStandardParameter", 0, 2, N,
        Choice("nonStandardIdentifier", 1, 2, N,
            Oid("object"),
            Seq("h221NonStandard", 0, 3, N, Int("t35CountryCode", PerSize.Byte), Int("t35Extension", PerSize.Byte), Int("manufacturerCode", PerSize.Word))),
        Octets("data", PerSize.Length, 0));

    private static readonly PerField UnicastAddress = Choice("UnicastAddress", 3, 5, E,
        Seq("iPAddress", 0, 2, E, Address("network", 4), Int("tsapIdentifier", PerSize.Word)),
        Seq("iPXAddress", 0, 3, E, Octets("node", 6), Octets("netnum", 4), Octets("tsapIdentifier", 2)),
        Seq("iP6Address", 0, 2, E, Address("network", 16), Int("tsapIdentifier", PerSize.Word)),
        Octets("netBios", 16),
        Seq("iPSourceRouteAddress", 0, 4, E,
            Choice("routing", 1, 2, N, Null("strict"), Null("loose")),
            Octets("network", 4), Int("tsapIdentifier", PerSize.Word),
            SeqOf("route", PerSize.Length, N, Octets("item", 4))));

    private static readonly PerField MulticastAddress = Choice("MulticastAddress", 1, 2, E,
        Seq("iPAddress", 0, 2, E, Octets("network", 4), Int("tsapIdentifier", PerSize.Word)),
        Seq("iP6Address", 0, 2, E, Octets("network", 16), Int("tsapIdentifier", PerSize.Word)));

    /// <summary>H.245 TransportAddress: only unicast addresses are recorded (multicastAddress has no capture).</summary>
    private static readonly PerField H245TransportAddress = Choice("H245TransportAddress", 1, 2, E, UnicastAddress, MulticastAddress);

    private static readonly PerField VideoCapability = Choice("VideoCapability", 3, 5, E,
        H245NonStandardParameter,
        Seq("h261VideoCapability", 2, 5, E,
            Int("qcifMPI", 2, O), Int("cifMPI", 2, O), Bool("temporalSpatialTradeOffCapability"),
            Int("maxBitRate", PerSize.Word), Bool("stillImageTransmission")),
        Seq("h262VideoCapability", 6, 17, E,
            Bool("SPatML"), Bool("MPatLL"), Bool("MPatML"), Bool("MPatH-14"), Bool("MPatHL"), Bool("SNRatLL"),
            Bool("SNRatML"), Bool("SpatialatH-14"), Bool("HPatML"), Bool("HPatH-14"), Bool("HPatHL"),
            Int("videoBitRate", PerSize.Constrained, O), Int("vbvBufferSize", PerSize.Constrained, O),
            Int("samplesPerLine", PerSize.Word, O), Int("linesPerFrame", PerSize.Word, O),
            Int("framesPerSecond", 4, O), Int("luminanceSampleRate", PerSize.Constrained, O)),
        Seq("h263VideoCapability", 7, 13, E,
            Int("sqcifMPI", 5, O), Int("qcifMPI", 5, O), Int("cifMPI", 5, O), Int("cif4MPI", 5, O), Int("cif16MPI", 5, O),
            Int("maxBitRate", PerSize.Constrained), Bool("unrestrictedVector"), Bool("arithmeticCoding"),
            Bool("advancedPrediction"), Bool("pbFrames"), Bool("temporalSpatialTradeOffCapability"),
            Int("hrd-B", PerSize.Constrained, O), Int("bppMaxKb", PerSize.Word, O)),
        Seq("is11172VideoCapability", 6, 7, E,
            Bool("constrainedBitstream"), Int("videoBitRate", PerSize.Constrained, O), Int("vbvBufferSize", PerSize.Constrained, O),
            Int("samplesPerLine", PerSize.Word, O), Int("linesPerFrame", PerSize.Word, O), Int("pictureRate", 4, O),
            Int("luminanceSampleRate", PerSize.Constrained, O)));

    private static readonly PerField AudioFrames = Int("frames", PerSize.Byte);

    private static readonly PerField AudioCapability = Choice("AudioCapability", 4, 14, E,
        H245NonStandardParameter,
        AudioFrames, AudioFrames, AudioFrames, AudioFrames, AudioFrames, AudioFrames, AudioFrames, // g711 x4, g722 x3
        Seq("g7231", 0, 2, N, Int("maxAl-sduAudioFrames", PerSize.Byte), Bool("silenceSuppression")),
        AudioFrames, AudioFrames, AudioFrames, // g728, g729, g729AnnexA
        Seq("is11172AudioCapability", 0, 9, E, [.. Enumerable.Repeat(Bool("flag"), 8), Int("bitRate", PerSize.Word)]),
        Seq("is13818AudioCapability", 0, 21, E, [.. Enumerable.Repeat(Bool("flag"), 20), Int("bitRate", PerSize.Word)]));

    private static PerField DataProtocolCapability(bool t120) => Choice("DataProtocolCapability", 3, 7, E,
        H245NonStandardParameter, Null("v14buffered"), Null("v42lapm"), Null("hdlcFrameTunnelling"),
        Null("h310SeparateVCStack"), Null("h310SingleVCStack"), Null("transparent"),
        Null("segmentationAndReassembly"), Null("hdlcFrameTunnelingwSAR"), Null("v120"),
        t120 ? Null("separateLANStack").MarkT120() : Null("separateLANStack"));

    private static readonly PerField AnyDataProtocol = DataProtocolCapability(t120: false);

    private static readonly PerField DataApplicationCapability = Seq("DataApplicationCapability", 0, 2, E,
        Choice("application", 4, 10, E,
            H245NonStandardParameter,
            DataProtocolCapability(t120: true), // t120
            AnyDataProtocol, AnyDataProtocol, // dsm-cc, userData
            Seq("t84", 0, 2, N, AnyDataProtocol,
                Choice("t84Profile", 1, 2, N, Null("t84Unrestricted"), Seq("t84Restricted", 0, 19, E, [.. Enumerable.Repeat(Bool("flag"), 19)]))),
            AnyDataProtocol, AnyDataProtocol, // t434, h224
            Seq("nlpid", 0, 2, N, AnyDataProtocol, Octets("nlpidData", PerSize.Length, 0)),
            Null("dsvdControl"),
            AnyDataProtocol), // h222DataPartitioning
        Int("maxBitRate", PerSize.Constrained));

    private static readonly PerField DataType = Choice("DataType", 3, 6, E,
        H245NonStandardParameter,
        Null("nullData"),
        VideoCapability,
        AudioCapability,
        DataApplicationCapability,
        Choice("encryptionData", 1, 2, E, H245NonStandardParameter, Null("h233Encryption")));

    private static readonly PerField H222LogicalChannelParameters = Seq("h222LogicalChannelParameters", 3, 5, E,
        Int("resourceID", PerSize.Word), Int("subChannelID", PerSize.Word), Int("pcr-pid", PerSize.Word, O),
        Octets("programDescriptors", PerSize.Length, 0, O), Octets("streamDescriptors", PerSize.Length, 0, O));

    private static readonly PerField Nulls3 = Choice("choice", 2, 3, E, Null("a"), Null("b"), Null("c"));

    private static readonly PerField H223LogicalChannelParameters = Seq("h223LogicalChannelParameters", 0, 2, E,
        Choice("adaptationLayerType", 3, 6, E,
            H245NonStandardParameter, Null("al1Framed"), Null("al1NotFramed"), Null("al2WithoutSequenceNumbers"),
            Null("al2WithSequenceNumbers"),
            Seq("al3", 0, 2, N, Int("controlFieldOctets", 2), Int("sendBufferSize", PerSize.Constrained))),
        Bool("segmentableFlag"));

    private static readonly PerField V76LogicalChannelParameters = Seq("v76LogicalChannelParameters", 0, 5, E,
        Seq("hdlcParameters", 0, 3, E, Nulls3, Int("n401", PerSize.Word), Bool("loopbackTestProcedure")),
        Nulls3, // suspendResume
        Bool("uIH"),
        Choice("mode", 1, 2, E, Seq("eRM", 0, 2, E, Int("windowSize", 7), Nulls3), Null("uNERM")),
        Seq("v75Parameters", 0, 1, E, Bool("audioHeaderPresent")));

    private static readonly PerField H2250LogicalChannelParameters = Seq("h2250LogicalChannelParameters", 10, 11, E,
        SeqOf("nonStandard", PerSize.Length, O, H245NonStandardParameter),
        Int("sessionID", PerSize.Byte),
        Int("associatedSessionID", 8, O),
        H245TransportAddress.With(O).Tagged(H323AddressTag.MediaChannel),
        Bool("mediaGuaranteedDelivery", O),
        H245TransportAddress.With(O).Tagged(H323AddressTag.MediaControlChannel),
        Bool("mediaControlGuaranteedDelivery", O),
        Bool("silenceSuppression", O),
        Seq("destination", 0, 2, EO, Int("mcuNumber", 8), Int("terminalNumber", 8)),
        Int("dynamicRTPPayloadType", 5, O),
        Choice("mediaPacketization", 0, 1, EO, Null("h261aVideoPacketization")));

    private static readonly PerField NetworkAccessParameters = Seq("NetworkAccessParameters", 2, 4, E,
        Choice("distribution", 1, 2, EO, Null("unicast"), Null("multicast")),
        Choice("networkAddress", 2, 3, E,
            Seq("q2931Address", 1, 2, E,
                Choice("address", 1, 2, E, NumericString("internationalNumber", 4, 1), OctetsBits("nsapAddress", 5, 1)),
                OctetsBits("subaddress", 5, 1, O)),
            NumericString("e164Address", 7, 1),
            H245TransportAddress.Tagged(H323AddressTag.T120Address)),
        Bool("associateConference"),
        OctetsBits("externalReference", 8, 1, O));

    /// <summary>OpenLogicalChannel (H.245): its forward and reverse H.225.0 channels' media addresses, and a T.120 stack.</summary>
    private static readonly PerField OpenLogicalChannel = Seq("OpenLogicalChannel", 1, 3, E | PerFlags.LogicalChannel,
        Int("forwardLogicalChannelNumber", PerSize.Word),
        Seq("forwardLogicalChannelParameters", 1, 3, E,
            Int("portNumber", PerSize.Word, O),
            DataType,
            Choice("multiplexParameters", 2, 3, E,
                H222LogicalChannelParameters, H223LogicalChannelParameters, V76LogicalChannelParameters,
                H2250LogicalChannelParameters)),
        Seq("reverseLogicalChannelParameters", 1, 2, EO,
            DataType,
            Choice("multiplexParameters", 1, 2, EO, H223LogicalChannelParameters, V76LogicalChannelParameters, H2250LogicalChannelParameters)),
        NetworkAccessParameters); // separateStack (an extension)

    private static readonly PerField OpenLogicalChannelAck = Seq("OpenLogicalChannelAck", 1, 2, E | PerFlags.LogicalChannel,
        Int("forwardLogicalChannelNumber", PerSize.Word),
        Seq("reverseLogicalChannelParameters", 2, 3, EO,
            Int("reverseLogicalChannelNumber", PerSize.Word),
            Int("portNumber", PerSize.Word, O),
            Choice("multiplexParameters", 0, 1, EO, H222LogicalChannelParameters, H2250LogicalChannelParameters)),
        NetworkAccessParameters, // separateStack (an extension)
        Choice("forwardMultiplexAckParameters", 0, 1, E,
            Seq("h2250LogicalChannelAckParameters", 5, 5, E,
                SeqOf("nonStandard", PerSize.Length, O, H245NonStandardParameter),
                Int("sessionID", 8, O),
                H245TransportAddress.With(O).Tagged(H323AddressTag.MediaChannel),
                H245TransportAddress.With(O).Tagged(H323AddressTag.MediaControlChannel),
                Int("dynamicRTPPayloadType", 5, O)))).MarkT120(); // an Ack's T.120 address needs no data type

    private static PerField[] OnlyAt(int count, int index, PerField field)
    {
        var children = new PerField[count];
        Array.Fill(children, Opaque("message", PerFlags.Stop));
        children[index] = field;
        return children;
    }

    /// <summary>MultimediaSystemControlMessage (H.245): an OpenLogicalChannel request or its Ack; anything else ends the decode.</summary>
    public static readonly PerField MultimediaSystemControlMessage = Choice("MultimediaSystemControlMessage", 2, 4, E,
        Choice("request", 4, 11, E, OnlyAt(11, 3, OpenLogicalChannel)),
        Choice("response", 5, 19, E, OnlyAt(19, 5, OpenLogicalChannelAck)),
        Opaque("command", PerFlags.Stop),
        Opaque("indication", PerFlags.Stop));

    // ---- H.225.0 call signalling (the Q.931 User-user information element) ----

    private static readonly PerField FastStart = SeqOf("fastStart", PerSize.Length, O, OpenLogicalChannel.With(PerFlags.Open));

    private static readonly PerField Setup = Seq("Setup-UUIE", 7, 13, E,
        Oid("protocolIdentifier"),
        Transport(H323AddressTag.H245Address, O),
        AliasList,
        EndpointType,
        AliasList,
        Transport(H323AddressTag.DestCallSignalAddress, O),
        AliasList,
        SeqOf("destExtraCRV", PerSize.Length, O, Int("crv", PerSize.Word)),
        Bool("activeMC"),
        Octets("conferenceID", 16),
        Choice("conferenceGoal", 2, 3, E, Null("create"), Null("join"), Null("invite")),
        Seq("callServices", 0, 8, EO,
            Bool("q932Full"), Bool("q951Full"), Bool("q952Full"), Bool("q953Full"), Bool("q955Full"), Bool("q956Full"),
            Bool("q957Full"), Seq("q954Info", 0, 2, E, Bool("conferenceCalling"), Bool("threePartyService"))),
        CallType,
        // extensions
        Transport(H323AddressTag.SourceCallSignalAddress),
        Skipped, Skipped, Skipped, Skipped, Skipped, // remoteExtensionAddress, callIdentifier, h245SecurityCapability, tokens, cryptoTokens
        FastStart);

    private static readonly PerField CallProceeding = Seq("CallProceeding-UUIE", 1, 3, E,
        Oid("protocolIdentifier"), EndpointType, Transport(H323AddressTag.H245Address, O),
        Skipped, Skipped, Skipped, Skipped, // callIdentifier, h245SecurityMode, tokens, cryptoTokens
        FastStart);

    private static readonly PerField Connect = Seq("Connect-UUIE", 1, 4, E,
        Oid("protocolIdentifier"), Transport(H323AddressTag.H245Address, O), EndpointType, Octets("conferenceID", 16),
        Skipped, Skipped, Skipped, Skipped, // callIdentifier, h245SecurityMode, tokens, cryptoTokens
        FastStart);

    private static readonly PerField Alerting = Seq("Alerting-UUIE", 1, 3, E,
        Oid("protocolIdentifier"), EndpointType, Transport(H323AddressTag.H245Address, O),
        Skipped, Skipped, Skipped, Skipped, // callIdentifier, h245SecurityMode, tokens, cryptoTokens
        FastStart);

    private static readonly PerField Information = Seq("Information-UUIE", 0, 1, E, Oid("protocolIdentifier"));

    private static readonly PerField ReleaseComplete = Seq("ReleaseComplete-UUIE", 1, 2, E,
        Oid("protocolIdentifier"),
        Choice("reason", 4, 12, EO, [.. Enumerable.Repeat(Null("reason"), 12)]));

    private static readonly PerField Facility = Seq("Facility-UUIE", 3, 5, E,
        Oid("protocolIdentifier"),
        TransportAddress.With(O), // alternativeAddress: call forwarding is not followed
        AliasList,
        Octets("conferenceID", 16, O),
        // A forwarded call's Facility is not followed, and (as the kernel) its h245Address and fastStart are not read.
        Choice("reason", 2, 4, E, Null("routeCallToGatekeeper"), Null("callForwarded", PerFlags.Stop), Null("routeCallToMC"), Null("undefinedReason")),
        Skipped, Skipped, Skipped, Skipped, Skipped, Skipped, // callIdentifier .. conferences
        Transport(H323AddressTag.H245Address),
        FastStart);

    private static readonly PerField SecurityServiceMode = Choice("SecurityServiceMode", 2, 3, E, NonStandardParameter, Null("none"), Null("default"));

    private static readonly PerField SecurityCapabilities = Seq("SecurityCapabilities", 1, 4, E,
        NonStandardParameter.With(O), SecurityServiceMode, SecurityServiceMode, SecurityServiceMode);

    private static readonly PerField Progress = Seq("Progress-UUIE", 5, 8, E,
        Oid("protocolIdentifier"),
        EndpointType,
        Transport(H323AddressTag.H245Address, O),
        CallIdentifier,
        Choice("h245SecurityMode", 2, 4, EO, NonStandardParameter, Null("noSecurity"), SecurityCapabilities, SecurityCapabilities),
        SeqOf("tokens", PerSize.Length, O, Opaque("ClearToken", PerFlags.Stop)), // H.235 tokens are not described: decoding stops there
        SeqOf("cryptoTokens", PerSize.Length, O, Opaque("CryptoH323Token", PerFlags.Stop)),
        FastStart);

    private static readonly PerField H323UuPdu = Seq("H323-UU-PDU", 1, 2, E,
        Choice("h323-message-body", 3, 7, E,
            Setup, CallProceeding, Connect, Alerting, Information, ReleaseComplete, Facility,
            Progress), // extensions after progress (empty, status, ...) are skipped
        NonStandardParameter.With(O),
        Skipped, // h4501SupplementaryService
        Bool("h245Tunneling"),
        SeqOf("h245Control", PerSize.Length, N, MultimediaSystemControlMessage.With(PerFlags.Open)));

    /// <summary>H323-UserInformation, the contents of the Q.931 User-user information element.</summary>
    public static readonly PerField H323UserInformation = Seq("H323-UserInformation", 1, 2, E,
        H323UuPdu,
        Opaque("user-data", PerFlags.Stop | O));

    // ---- H.225.0 RAS ----

    private static readonly PerField SeqNum = Int("requestSeqNum", PerSize.Word);

    private static readonly PerField Identifier = Bmp("identifier", 7, 1);

    private static readonly PerField Rest = Opaque("rest", PerFlags.Stop);

    private static PerField AddressList(H323AddressTag tag) => SeqOf("addresses", PerSize.Length, N, TransportAddress).Tagged(tag);

    private static readonly PerField GatekeeperRequest = Seq("GatekeeperRequest", 4, 8, E,
        SeqNum, Oid("protocolIdentifier"), NonStandardParameter.With(O), Transport(H323AddressTag.RasAddress), Rest);

    private static readonly PerField GatekeeperConfirm = Seq("GatekeeperConfirm", 2, 5, E,
        SeqNum, Oid("protocolIdentifier"), NonStandardParameter.With(O), Identifier.With(O), Transport(H323AddressTag.RasAddress));

    private static readonly PerField RegistrationRequest = Seq("RegistrationRequest", 3, 10, E,
        SeqNum, Oid("protocolIdentifier"), NonStandardParameter.With(O), Bool("discoveryComplete"),
        AddressList(H323AddressTag.CallSignalAddress), AddressList(H323AddressTag.RasAddress),
        EndpointType, AliasList, Identifier.With(O), VendorIdentifier,
        Skipped, TimeToLive()); // extensions: alternateEndpoints, timeToLive

    private static readonly PerField RegistrationConfirm = Seq("RegistrationConfirm", 3, 7, E,
        SeqNum, Oid("protocolIdentifier"), NonStandardParameter.With(O), AddressList(H323AddressTag.CallSignalAddress),
        AliasList, Identifier.With(O), Identifier,
        Skipped, TimeToLive()); // extensions: alternateGatekeeper, timeToLive

    private static readonly PerField UnregistrationRequest = Seq("UnregistrationRequest", 3, 5, E,
        SeqNum, AddressList(H323AddressTag.CallSignalAddress), Rest);

    private static readonly PerField AdmissionRequest = Seq("AdmissionRequest", 7, 16, E,
        SeqNum, CallType, Choice("callModel", 1, 2, EO, Null("direct"), Null("gatekeeperRouted")), Identifier,
        AliasList, Transport(H323AddressTag.DestCallSignalAddress, O), AliasList, SeqOf("srcInfo", PerSize.Length, N, AliasAddress),
        Transport(H323AddressTag.SourceCallSignalAddress, O), Rest);

    private static readonly PerField AdmissionConfirm = Seq("AdmissionConfirm", 2, 6, E,
        SeqNum, Int("bandWidth", PerSize.Constrained), Choice("callModel", 1, 2, E, Null("direct"), Null("gatekeeperRouted")),
        Transport(H323AddressTag.DestCallSignalAddress), Rest);

    private static readonly PerField LocationRequest = Seq("LocationRequest", 2, 5, E,
        SeqNum, Identifier.With(O), SeqOf("destinationInfo", PerSize.Length, N, AliasAddress), NonStandardParameter.With(O),
        Transport(H323AddressTag.ReplyAddress));

    private static readonly PerField LocationConfirm = Seq("LocationConfirm", 1, 4, E,
        SeqNum, Transport(H323AddressTag.CallSignalAddress), Transport(H323AddressTag.RasAddress), Rest);

    private static readonly PerField InfoRequestResponse = Seq("InfoRequestResponse", 3, 8, E,
        NonStandardParameter.With(O), SeqNum, EndpointType, Identifier, Transport(H323AddressTag.RasAddress),
        AddressList(H323AddressTag.CallSignalAddress), Rest);

    /// <summary>The RAS messages (H.225.0 RasMessage) by their index.</summary>
    public static class Ras
    {
        public const int GatekeeperRequest = 0;
        public const int GatekeeperConfirm = 1;
        public const int RegistrationRequest = 3;
        public const int RegistrationConfirm = 4;
        public const int UnregistrationRequest = 6;
        public const int AdmissionRequest = 9;
        public const int AdmissionConfirm = 10;
        public const int LocationRequest = 18;
        public const int LocationConfirm = 19;
        public const int InfoRequestResponse = 22;
    }

    /// <summary>RasMessage: the messages that carry addresses are described, the others end the decode.</summary>
    public static readonly PerField RasMessage = Choice("RasMessage", 5, 25, E, RasAlternatives());

    private static PerField[] RasAlternatives()
    {
        var children = OnlyAt(25, Ras.GatekeeperRequest, GatekeeperRequest);
        children[Ras.GatekeeperConfirm] = GatekeeperConfirm;
        children[Ras.RegistrationRequest] = RegistrationRequest;
        children[Ras.RegistrationConfirm] = RegistrationConfirm;
        children[Ras.UnregistrationRequest] = UnregistrationRequest;
        children[Ras.AdmissionRequest] = AdmissionRequest;
        children[Ras.AdmissionConfirm] = AdmissionConfirm;
        children[Ras.LocationRequest] = LocationRequest;
        children[Ras.LocationConfirm] = LocationConfirm;
        children[Ras.InfoRequestResponse] = InfoRequestResponse;
        return children;
    }

    /// <summary>The H.225.0 message bodies (h323-message-body) by their index.</summary>
    public static class Body
    {
        public const int Setup = 0;
        public const int CallProceeding = 1;
        public const int Connect = 2;
        public const int Alerting = 3;
        public const int Facility = 6;
        public const int Progress = 7;
    }
}
