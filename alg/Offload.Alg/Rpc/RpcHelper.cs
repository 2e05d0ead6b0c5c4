using System.Buffers;
using System.Buffers.Binary;

namespace Offload.Alg.Rpc;

/// <summary>
/// The ONC RPC portmapper helper (conntrack-tools' userspace helper <c>rpc</c>, which conntrackd runs for NFS; the
/// kernel has none), on TCP and UDP port 111, IPv4 and IPv6. A client asks the portmapper where a service listens:
/// version 2 GETPORT answers with a port, versions 3 and 4 GETADDR (and version 4 GETVERSADDR) with a universal
/// address. When the answer to a call the helper saw (the XIDs match) names a port, the helper expects the client's
/// connection to it, with the transport the call asked for, following the master's NAT: behind a port forward the
/// connection reaches the real server.
/// </summary>
/// <remarks>
/// <para>TCP is read as RFC 5531's record marking: several records in a segment and records of several fragments are
/// read; a record cut by a segment boundary is counted (<see cref="HelperEvent.PartialCommand"/>) and skipped, and
/// the stream keeps its place by the fragments' lengths.</para>
/// <para>When the master is translated, the answer is rewritten to what the client must use: the port the engine
/// placed the expectation at, and in a universal address the server's address as the client sees it (a
/// port-forwarded server answers with its private address, which the client cannot reach). conntrack-tools rewrites
/// neither the address nor, correctly, the port.</para>
/// </remarks>
public sealed class RpcHelper : ConntrackHelper
{
    /// <summary>
    /// Outstanding expectations per portmapper connection, and how long each waits: conntrack-tools waits 300 s too,
    /// but keeps one; a client that looks up mountd, nfs and nlockmgr on one connection before connecting needs more.
    /// </summary>
    public static readonly ExpectationPolicy DefaultPolicy = new(8, TimeSpan.FromMinutes(5));

    public const ushort DefaultPort = 111;

    /// <summary>Fragments of one record read; a record of more is walked, not read.</summary>
    internal const int MaxFragments = 8;

    /// <summary>
    /// The largest record read: a lookup with the largest credential and verifier (400 bytes each) and three strings.
    /// Larger records (a DUMP's answer) are walked, not read.
    /// </summary>
    internal const int MaxRecordLength = 2048;

    /// <summary>Records read in one segment; the rest are walked (counted once), so a segment costs a bounded scan.</summary>
    internal const int MaxRecordsPerSegment = 16;

    public RpcHelper()
        : base("rpc", [new ExpectationClass("program", DefaultPolicy.MaxExpected, DefaultPolicy.Timeout)])
    {
        Protocols = [IpProtocol.Tcp, IpProtocol.Udp];
        Ports = [DefaultPort];
    }

    /// <summary>Version 1: the remembered lookups (XID, kind, protocol) and each TCP direction's place in the record marking.</summary>
    public override int StateVersion => 1;

    /// <summary>Writes a connection's lookups and stream places, so that an answer after a restart of the daemon is still read.</summary>
    public override bool SaveState(object state, IBufferWriter<byte> writer)
    {
        if (state is not RpcState rpc)
        {
            return false;
        }

        rpc.Write(writer);
        return true;
    }

    /// <summary>Reads what <see cref="SaveState"/> wrote (version 1); null, for a fresh start, for anything else.</summary>
    public override object? RestoreState(ReadOnlySpan<byte> data, int version) => version == 1 ? RpcState.Read(data) : null;

    public override HelperVerdict Help(ref HelperContext context)
    {
        var payload = context.Payload;
        if (context.Protocol == IpProtocol.Udp)
        {
            // A datagram is one message (RFC 5531 section 11 applies record marking to streams only); an empty one is none.
            Span<RpcFragment> whole = [new RpcFragment(-1, 0, payload.Length, 0, true)];
            return HelpMessage(ref context, payload, whole);
        }

        return context.Protocol == IpProtocol.Tcp && !payload.IsEmpty ? HelpStream(ref context, payload) : HelperVerdict.Accept;
    }

    private HelperVerdict HelpStream(ref HelperContext context, ReadOnlySpan<byte> payload)
    {
        var state = context.GetState<RpcState>();
        var stream = context.Direction == ConnDirection.Original ? state.Original : state.Reply;
        uint seq = context.TcpSequence;
        // A segment read before (retransmitted) is read again from where the stream stood then, so that an answer
        // is expected and rewritten alike; it does not move the stream, which is already past it.
        uint header = 0;
        bool skip = false;
        bool again = stream.Known && stream.TryRecall(seq, out header, out skip);
        if (!again)
        {
            int ahead = (int)(stream.NextHeader - seq);
            if (stream.Known && ahead >= payload.Length)
            {
                return HelperVerdict.Accept; // inside a fragment being skipped, or old data again
            }

            if (!stream.Known || ahead < 0)
            {
                if (stream.Known)
                {
                    // Bytes before this segment were never seen (a gap): start again at this segment, as a sender
                    // that writes each record at once starts it.
                    context.Count(HelperEvent.PartialCommand);
                }

                stream.Known = true;
                stream.NextHeader = seq;
                stream.SkipRecord = false;
            }

            header = stream.NextHeader;
            skip = stream.SkipRecord;
            stream.Remember(seq, header, skip);
        }

        var verdict = Walk(ref context, payload, (int)(header - seq), ref skip, out int end, out bool lost);
        if (!again)
        {
            unchecked
            {
                stream.NextHeader = seq + (uint)end;
            }

            stream.SkipRecord = skip;
            stream.Known = !lost;
        }

        return verdict;
    }

    /// <summary>
    /// Reads the records of one segment from <paramref name="offset"/>, a fragment header. <paramref name="skip"/> says
    /// whether the fragments up to a record's end are skipped, before and after; <paramref name="end"/> is where the
    /// next fragment header lies (past the segment when the last fragment goes on); <paramref name="lost"/> says that a
    /// record mark was cut in two, so that the stream's place is unknown. Each step advances by a record mark at least:
    /// the walk is bounded by the segment's length, whatever the marks say.
    /// </summary>
    private HelperVerdict Walk(ref HelperContext context, ReadOnlySpan<byte> payload, int offset, ref bool skip, out int end, out bool lost)
    {
        Span<RpcFragment> fragments = stackalloc RpcFragment[MaxFragments];
        int count = 0;
        int recordLength = 0;
        bool oversized = false;
        int records = 0;
        lost = false;
        while (offset < payload.Length)
        {
            if (payload.Length - offset < 4)
            {
                // A record mark cut in two: the next one's place is lost until a segment starts a record again.
                context.Count(HelperEvent.PartialCommand);
                lost = true;
                break;
            }

            uint mark = BinaryPrimitives.ReadUInt32BigEndian(payload.Slice(offset, 4));
            bool last = (mark & 0x8000_0000u) != 0;
            int length = (int)(mark & 0x7fff_ffffu);
            int bodyOffset = offset + 4;
            if (length > payload.Length - bodyOffset)
            {
                // The fragment goes on in a later segment: its record is not read (as the kernel's helpers, no
                // buffering), and the stream keeps its place by the fragment's length.
                if (!skip && !oversized && length <= MaxRecordLength - recordLength)
                {
                    context.Count(HelperEvent.PartialCommand);
                }

                skip = !last;
                end = unchecked(bodyOffset + length); // may wrap: only its low 32 bits matter, as a sequence offset
                return HelperVerdict.Accept;
            }

            offset = bodyOffset + length;
            if (skip)
            {
                skip = !last;
                continue;
            }

            if (oversized || count == MaxFragments || length > MaxRecordLength - recordLength)
            {
                oversized = true; // no lookup is this large: walked, not read
            }
            else
            {
                fragments[count++] = new RpcFragment(bodyOffset - 4, bodyOffset, length, recordLength, last);
                recordLength += length;
            }

            if (!last)
            {
                continue;
            }

            if (!oversized)
            {
                if (records++ < MaxRecordsPerSegment)
                {
                    if (HelpRecord(ref context, payload, fragments[..count], recordLength) == HelperVerdict.Drop)
                    {
                        end = offset;
                        return HelperVerdict.Drop;
                    }
                }
                else if (records == MaxRecordsPerSegment + 1)
                {
                    context.Count(HelperEvent.PartialCommand); // the rest of the segment is walked unread
                }
            }

            count = 0;
            recordLength = 0;
            oversized = false;
        }

        if (!lost && (count > 0 || oversized))
        {
            // The record's last fragment is in a later segment: the rest of it is skipped.
            if (!oversized)
            {
                context.Count(HelperEvent.PartialCommand);
            }

            skip = true;
        }

        end = offset;
        return HelperVerdict.Accept;
    }

    private HelperVerdict HelpRecord(ref HelperContext context, ReadOnlySpan<byte> payload, scoped ReadOnlySpan<RpcFragment> fragments, int recordLength)
    {
        if (fragments.Length == 1)
        {
            return HelpMessage(ref context, payload.Slice(fragments[0].BodyOffset, fragments[0].Length), fragments);
        }

        // Several fragments: joined in this thread's scratch (a helper's calls on one thread never overlap).
        var record = RecordScratch.ForThisThread.AsSpan(0, recordLength);
        foreach (var fragment in fragments)
        {
            payload.Slice(fragment.BodyOffset, fragment.Length).CopyTo(record[fragment.RecordOffset..]);
        }

        return HelpMessage(ref context, record, fragments);
    }

    private HelperVerdict HelpMessage(ref HelperContext context, scoped ReadOnlySpan<byte> message, scoped ReadOnlySpan<RpcFragment> fragments)
    {
        if (!RpcParser.TryReadHeader(message, out uint xid, out uint type))
        {
            context.Count(HelperEvent.MalformedCommand);
            return HelperVerdict.Accept;
        }

        RpcStatus status;
        if (type == RpcParser.Call)
        {
            // Calls go from the client to the portmapper (a call the other way is no lookup of this connection's).
            if (context.Direction != ConnDirection.Original)
            {
                return HelperVerdict.Accept;
            }

            status = RpcParser.ReadCall(message, out var call);
            if (status == RpcStatus.Malformed)
            {
                context.Count(HelperEvent.MalformedCommand);
            }
            else if (status == RpcStatus.Lookup)
            {
                context.GetState<RpcState>().Remember(in call);
            }

            return HelperVerdict.Accept;
        }

        // An answer is read only from the server, and only when it answers a lookup this connection made.
        if (context.Direction != ConnDirection.Reply || !context.TryGetState<RpcState>(out var state) || !state.TryFind(xid, out var lookup))
        {
            return HelperVerdict.Accept;
        }

        status = RpcParser.ReadReply(message, lookup.Lookup, out var reply);
        if (status == RpcStatus.Malformed)
        {
            context.Count(HelperEvent.MalformedCommand);
        }

        return status == RpcStatus.Lookup ? Announce(ref context, message, fragments, in lookup, in reply) : HelperVerdict.Accept;
    }

    private HelperVerdict Announce(ref HelperContext context, scoped ReadOnlySpan<byte> message, scoped ReadOnlySpan<RpcFragment> fragments, in RpcCall lookup, in RpcReply reply)
    {
        ushort port = (ushort)reply.Port;
        if (lookup.Lookup == RpcLookup.GetAddr)
        {
            if (!UniversalAddress.TryParse(message.Slice(reply.TextStart, reply.TextLength), out var address, out byte family, out port) || port == 0)
            {
                context.Count(HelperEvent.MalformedCommand);
                return HelperVerdict.Accept;
            }

            // The server may announce only itself (as it knows itself): another address would open a pinhole to a
            // third party, and an address of the other family a connection this master cannot follow.
            if (family != context.Family || address != context.Tuple.Source)
            {
                context.Count(HelperEvent.ForeignAddressRefused);
                return HelperVerdict.Accept;
            }
        }

        // The client (as it knows itself) connects, from any port, to the server as it sees it: through a port
        // forward that is the router, and the engine places the port there and sends the connection on.
        var request = context.FromPeer(lookup.Protocol, port);
        // rpcbind announces itself too (rpcinfo -p looks up the portmapper before its DUMP): a connection to a port
        // this helper serves is helped like one that came without a lookup.
        request.Helper = ServesPort(lookup.Protocol, port) ? this : null;
        if (context.Expect(ref request) != ExpectResult.Added)
        {
            context.Count(HelperEvent.ExpectationFailed);
            // Translated, the answer would name a port nothing holds for the client; untranslated, another
            // connection's expectation of the same client and port may serve (a clash) and the answer is true anyway.
            return context.IsNatted ? HelperVerdict.Drop : HelperVerdict.Accept;
        }

        if (!context.IsNatted)
        {
            return HelperVerdict.Accept;
        }

        bool rewritten = lookup.Lookup == RpcLookup.GetPort
            ? RewritePort(ref context, fragments, in reply, port, request.DestinationPort)
            : RewriteAddress(ref context, message, fragments, in reply, request.DestinationPort);
        if (!rewritten)
        {
            // Half an answer is worse than none: the client asks again (the kernel's helpers drop what they cannot mangle).
            context.Count(HelperEvent.RewriteFailed);
            return HelperVerdict.Drop;
        }

        return HelperVerdict.Accept;
    }

    private static bool RewritePort(ref HelperContext context, scoped ReadOnlySpan<RpcFragment> fragments, in RpcReply reply, ushort announced, ushort placed)
    {
        if (announced == placed)
        {
            return true;
        }

        if (!TryMap(fragments, reply.ResultStart, reply.ResultLength, out int at, out _))
        {
            return false;
        }

        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(word, placed);
        return context.Rewrite(at, 4, word);
    }

    private static bool RewriteAddress(ref HelperContext context, scoped ReadOnlySpan<byte> message, scoped ReadOnlySpan<RpcFragment> fragments, in RpcReply reply, ushort placed)
    {
        // The server as the client sees it, at the port the engine placed: the XDR string is written whole (length,
        // text, padding), and over TCP its fragment's record mark follows a change of length.
        Span<byte> field = stackalloc byte[4 + UniversalAddress.MaxLength + 3];
        int textLength = UniversalAddress.Format(context.OtherTuple.Destination, context.Family, placed, field[4..]);
        if (field.Slice(4, textLength).SequenceEqual(message.Slice(reply.TextStart, reply.TextLength)))
        {
            return true;
        }

        int padded = (textLength + 3) & ~3;
        field.Slice(4 + textLength, padded - textLength).Clear();
        BinaryPrimitives.WriteUInt32BigEndian(field, (uint)textLength);
        int newLength = 4 + padded;
        if (!TryMap(fragments, reply.ResultStart, reply.ResultLength, out int at, out var fragment))
        {
            return false;
        }

        int grown = newLength - reply.ResultLength;
        if (grown != 0 && fragment.HeaderOffset >= 0)
        {
            Span<byte> mark = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(mark, (uint)(fragment.Length + grown) | (fragment.Last ? 0x8000_0000u : 0));
            if (!context.Rewrite(fragment.HeaderOffset, 4, mark))
            {
                return false;
            }
        }

        return context.Rewrite(at, reply.ResultLength, field[..newLength]);
    }

    private bool ServesPort(byte protocol, ushort port)
    {
        var ports = BoundPorts;
        for (int i = 0; i < ports.Count; i++)
        {
            if (ports[i].Protocol == protocol && ports[i].Port == port)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Where a range of the record lies in the payload; false when it straddles two fragments (then it cannot be rewritten in place).</summary>
    private static bool TryMap(ReadOnlySpan<RpcFragment> fragments, int recordOffset, int length, out int payloadOffset, out RpcFragment fragment)
    {
        foreach (var candidate in fragments)
        {
            if (recordOffset >= candidate.RecordOffset && recordOffset < candidate.RecordOffset + candidate.Length)
            {
                fragment = candidate;
                payloadOffset = candidate.BodyOffset + (recordOffset - candidate.RecordOffset);
                return recordOffset + length <= candidate.RecordOffset + candidate.Length;
            }
        }

        fragment = default;
        payloadOffset = 0;
        return false;
    }

    /// <summary>Room for one record of several fragments, one per thread: joining fragments costs no allocation.</summary>
    private static class RecordScratch
    {
        [ThreadStatic]
        private static byte[]? t_record;

        public static byte[] ForThisThread => t_record ??= new byte[MaxRecordLength];
    }
}
