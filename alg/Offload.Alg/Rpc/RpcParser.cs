namespace Offload.Alg.Rpc;

/// <summary>Which lookup a call to the portmapper asked for: only these announce a port a client will connect to.</summary>
internal enum RpcLookup : byte
{
    /// <summary>Not a lookup (DUMP, SET, NULL...), or not the portmapper.</summary>
    None,

    /// <summary>Version 2's PMAPPROC_GETPORT: the answer is a port (RFC 1833 section 3.2).</summary>
    GetPort,

    /// <summary>Versions 3 and 4's RPCBPROC_GETADDR, or version 4's GETVERSADDR: the answer is a universal address (RFC 1833 section 2.2).</summary>
    GetAddr,
}

/// <summary>What a message is to the helper.</summary>
internal enum RpcStatus : byte
{
    /// <summary>A lookup call, or the successful answer to one.</summary>
    Lookup,

    /// <summary>Well-formed, but nothing to expect from: another procedure or program, a refused call, "not registered".</summary>
    Ignored,

    /// <summary>Not a well-formed RPC message (counted as <see cref="HelperEvent.MalformedCommand"/>).</summary>
    Malformed,
}

/// <summary>A lookup call: its XID, what it asked, and the transport protocol of the service looked up (6 or 17).</summary>
internal readonly record struct RpcCall(uint Xid, RpcLookup Lookup, byte Protocol);

/// <summary>
/// The answer to a lookup. <see cref="ResultStart"/> and <see cref="ResultLength"/> cover the whole XDR result field
/// (GETPORT: the port word; GETADDR: the string's length word, its text and its padding), what a rewrite replaces;
/// <see cref="TextStart"/> and <see cref="TextLength"/> the universal address's text alone.
/// </summary>
internal readonly record struct RpcReply(uint Port, int ResultStart, int ResultLength, int TextStart, int TextLength);

/// <summary>
/// Reads ONC RPC messages (RFC 5531) to and from the portmapper (program 100000, RFC 1833): the calls that look a
/// service up (version 2 GETPORT, versions 3 and 4 GETADDR, version 4 GETVERSADDR) and their answers. A message
/// is one datagram, or one record of a TCP stream with its record marks removed. Only what a lookup needs is read;
/// every length is bounded and checked before it is used.
/// </summary>
internal static class RpcParser
{
    /// <summary>The portmapper's program number.</summary>
    public const uint PortmapProgram = 100000;

    /// <summary>msg_type CALL and REPLY.</summary>
    public const uint Call = 0;

    /// <inheritdoc cref="Call"/>
    public const uint Reply = 1;

    /// <summary>The RPC protocol version every peer speaks (RFC 5531: rpcvers 2).</summary>
    public const uint RpcVersion = 2;

    /// <summary>PMAPPROC_GETPORT (version 2) and RPCBPROC_GETADDR (versions 3 and 4) share procedure number 3.</summary>
    public const uint GetPortOrAddr = 3;

    /// <summary>RPCBPROC_GETVERSADDR (version 4): GETADDR for exactly the version asked.</summary>
    public const uint GetVersAddr = 9;

    /// <summary>RFC 5531's MAX_AUTH_BYTES: the most a credential or verifier body may hold.</summary>
    public const int MaxAuthBytes = 400;

    /// <summary>The longest netid, address or owner string read in a GETADDR call (netids are short words: tcp, udp6...).</summary>
    public const int MaxCallString = 255;

    /// <summary>
    /// The longest universal address in an answer: an IPv6 address with an IPv4 tail (45 characters) and ".255.255";
    /// anything longer is no address.
    /// </summary>
    public const int MaxUniversalAddress = 64;

    /// <summary>Reads the XID and the message type that start every RPC message; false when the message is too short or neither a call nor a reply.</summary>
    public static bool TryReadHeader(ReadOnlySpan<byte> message, out uint xid, out uint type)
    {
        var reader = new XdrReader(message);
        type = 0;
        return reader.TryReadUInt32(out xid) && reader.TryReadUInt32(out type) && type is Call or Reply;
    }

    /// <summary>Reads a call (the header already known to be a call).</summary>
    public static RpcStatus ReadCall(ReadOnlySpan<byte> message, out RpcCall call)
    {
        call = default;
        var reader = new XdrReader(message);
        if (!reader.TryReadUInt32(out uint xid) || !reader.TryReadUInt32(out _)
            || !reader.TryReadUInt32(out uint rpcVersion) || !reader.TryReadUInt32(out uint program)
            || !reader.TryReadUInt32(out uint version) || !reader.TryReadUInt32(out uint procedure))
        {
            return RpcStatus.Malformed;
        }

        if (rpcVersion != RpcVersion)
        {
            return RpcStatus.Malformed; // the server answers RPC_MISMATCH; no peer of ours sends it
        }

        if (!SkipAuth(ref reader) || !SkipAuth(ref reader))
        {
            return RpcStatus.Malformed;
        }

        if (program != PortmapProgram)
        {
            return RpcStatus.Ignored;
        }

        if (version == 2 && procedure == GetPortOrAddr)
        {
            // struct mapping { prog, vers, prot, port }: the port is 0 in a call.
            if (!reader.TryReadUInt32(out _) || !reader.TryReadUInt32(out _)
                || !reader.TryReadUInt32(out uint protocol) || !reader.TryReadUInt32(out _) || !reader.AtEnd)
            {
                return RpcStatus.Malformed;
            }

            if (protocol is not (6 or 17))
            {
                return RpcStatus.Ignored; // a service on another transport: nothing the router can expect
            }

            call = new RpcCall(xid, RpcLookup.GetPort, (byte)protocol);
            return RpcStatus.Lookup;
        }

        if ((version is 3 or 4 && procedure == GetPortOrAddr) || (version == 4 && procedure == GetVersAddr))
        {
            // struct rpcb { prog, vers, netid, addr, owner }: the netid names the transport looked up.
            if (!reader.TryReadUInt32(out _) || !reader.TryReadUInt32(out _)
                || !reader.TryReadOpaque(MaxCallString, out int netidStart, out int netidLength)
                || !reader.TryReadOpaque(MaxCallString, out _, out _)
                || !reader.TryReadOpaque(MaxCallString, out _, out _)
                || !reader.AtEnd)
            {
                return RpcStatus.Malformed;
            }

            byte protocol = ProtocolOfNetid(reader.Slice(netidStart, netidLength));
            if (protocol == 0)
            {
                return RpcStatus.Ignored; // "local", "rdma"...: not a transport the router carries
            }

            call = new RpcCall(xid, RpcLookup.GetAddr, protocol);
            return RpcStatus.Lookup;
        }

        return RpcStatus.Ignored;
    }

    /// <summary>Reads the answer to a lookup of the given kind (the header already known to be a reply).</summary>
    public static RpcStatus ReadReply(ReadOnlySpan<byte> message, RpcLookup lookup, out RpcReply reply)
    {
        reply = default;
        var reader = new XdrReader(message);
        if (!reader.TryReadUInt32(out _) || !reader.TryReadUInt32(out _) || !reader.TryReadUInt32(out uint replyStatus))
        {
            return RpcStatus.Malformed;
        }

        if (replyStatus == 1)
        {
            return RpcStatus.Ignored; // MSG_DENIED: the call was refused (version mismatch, bad credentials)
        }

        if (replyStatus != 0 || !SkipAuth(ref reader) || !reader.TryReadUInt32(out uint acceptStatus))
        {
            return RpcStatus.Malformed;
        }

        if (acceptStatus != 0)
        {
            // PROG_UNAVAIL, PROG_MISMATCH, PROC_UNAVAIL, GARBAGE_ARGS, SYSTEM_ERR: no answer; beyond those, no RPC.
            return acceptStatus <= 5 ? RpcStatus.Ignored : RpcStatus.Malformed;
        }

        int resultStart = reader.Position;
        if (lookup == RpcLookup.GetPort)
        {
            if (!reader.TryReadUInt32(out uint port) || !reader.AtEnd || port > ushort.MaxValue)
            {
                return RpcStatus.Malformed;
            }

            if (port == 0)
            {
                return RpcStatus.Ignored; // not registered
            }

            reply = new RpcReply(port, resultStart, 4, 0, 0);
            return RpcStatus.Lookup;
        }

        if (!reader.TryReadOpaque(MaxUniversalAddress, out int textStart, out int textLength) || !reader.AtEnd)
        {
            return RpcStatus.Malformed;
        }

        if (textLength == 0)
        {
            return RpcStatus.Ignored; // the empty address: not registered
        }

        reply = new RpcReply(0, resultStart, reader.Position - resultStart, textStart, textLength);
        return RpcStatus.Lookup;
    }

    /// <summary>The transport protocol a netid names (RFC 5665: tcp, tcp6, udp, udp6), or 0.</summary>
    public static byte ProtocolOfNetid(ReadOnlySpan<byte> netid) =>
        netid.SequenceEqual("tcp"u8) || netid.SequenceEqual("tcp6"u8) ? (byte)6
        : netid.SequenceEqual("udp"u8) || netid.SequenceEqual("udp6"u8) ? (byte)17
        : (byte)0;

    /// <summary>Skips an opaque_auth (flavor, body of at most <see cref="MaxAuthBytes"/>).</summary>
    private static bool SkipAuth(ref XdrReader reader) =>
        reader.TryReadUInt32(out _) && reader.TryReadOpaque(MaxAuthBytes, out _, out _);
}
