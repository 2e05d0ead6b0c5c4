using System.Buffers;
using System.Buffers.Binary;

namespace Offload.Alg.Ftp;

/// <summary>
/// The FTP helper (the kernel's nf_conntrack_ftp with nf_nat_ftp): reads PORT and EPRT from the client
/// and 227 and 229 replies from the server, expects the data connection they announce, and, when the
/// control connection is translated, rewrites the announced address and port to the translated ones.
/// </summary>
/// <remarks>
/// Like the kernel, it only reads a segment that starts right after a newline it has seen in that
/// direction, so a command can never be forged in the middle of a line (a file name, a message).
/// Unlike the kernel, it reads every complete line of such a segment, not only the first, and a segment
/// carrying several announcements gets all of them rewritten with one sequence adjustment.
/// </remarks>
public sealed class FtpHelper : ConntrackHelper
{
    /// <summary>The kernel's FTP policy: one outstanding expectation per control connection, for five minutes.</summary>
    public static readonly ExpectationPolicy DefaultPolicy = new(1, TimeSpan.FromMinutes(5));

    public const ushort DefaultPort = 21;

    // Set by the constructor, and by Configure (options: { loose: true }) before the helper is bound.
    private bool _loose;

    /// <param name="loose">
    /// Accept announcements of an address other than the sender's own (the kernel's <c>loose</c> parameter).
    /// Off by default: otherwise a client could open a pinhole to any third party.
    /// </param>
    public FtpHelper(bool loose = false)
        : base("ftp", DefaultPolicy)
    {
        Ports = [DefaultPort];
        _loose = loose;
    }

    /// <summary>Takes <c>loose</c> (true or false) from the configuration's <c>options:</c>, as the older <c>loose:</c> switch.</summary>
    public override void Configure(IReadOnlyDictionary<string, string> options) => _loose = LooseOption.Read(this, options, _loose);

    public override HelperVerdict Help(ref HelperContext context)
    {
        if (context.Protocol != IpProtocol.Tcp
            || (context.CtInfo != CtInfo.Established && context.CtInfo != CtInfo.EstablishedReply))
        {
            return HelperVerdict.Accept;
        }

        var payload = context.Payload;
        if (payload.IsEmpty)
        {
            return HelperVerdict.Accept;
        }

        var state = context.GetState<FtpState>();
        int dir = (int)context.Direction;
        uint seq = context.TcpSequence;
        var verdict = HelperVerdict.Accept;

        if (state.FollowsNewline(dir, seq))
        {
            verdict = ScanLines(ref context, payload);
        }

        if (payload[^1] == (byte)'\n')
        {
            state.RememberNewline(dir, seq + (uint)payload.Length);
        }

        return verdict;
    }

    /// <summary>Version 1: per direction, the count of positions after a newline (a byte) and two positions (32 bits each).</summary>
    public override int StateVersion => 1;

    public override bool SaveState(object state, IBufferWriter<byte> writer)
    {
        if (state is not FtpState ftp)
        {
            return false;
        }

        ftp.Write(writer);
        return true;
    }

    public override object? RestoreState(ReadOnlySpan<byte> data, int version) =>
        version == 1 ? FtpState.Read(data) : null;

    private HelperVerdict ScanLines(ref HelperContext context, ReadOnlySpan<byte> payload)
    {
        bool isReply = context.Direction == ConnDirection.Reply;
        for (int lineStart = 0; lineStart >= 0 && lineStart < payload.Length; lineStart = FtpParser.NextLineStart(payload, lineStart))
        {
            var status = FtpParser.Scan(payload.Slice(lineStart), isReply, out var match);
            switch (status)
            {
                case FtpScanStatus.Found:
                    if (OnAnnouncement(ref context, lineStart, match) == HelperVerdict.Drop)
                    {
                        return HelperVerdict.Drop;
                    }

                    break;
                case FtpScanStatus.Malformed:
                    context.Count(HelperEvent.MalformedCommand);
                    break;
                case FtpScanStatus.Partial:
                    // The line goes on in the next segment, which does not follow a newline: it is never read.
                    context.Count(HelperEvent.PartialCommand);
                    break;
            }
        }

        return HelperVerdict.Accept;
    }

    private HelperVerdict OnAnnouncement(ref HelperContext context, int lineStart, in FtpMatch match)
    {
        ref readonly var own = ref context.Tuple;
        ref readonly var other = ref context.OtherTuple;
        var announced = match.Value;

        // The data connection comes from the peer (as it sees itself) and goes to where the peer sends to.
        var destination = other.Destination;
        if (announced.Family != 0 && announced.Family == own.Family)
        {
            var address = new InetAddress(announced.AddressHigh, announced.AddressLow);
            if (address != own.Source)
            {
                // An address other than the sender's own: a pinhole to a third party, unless loose mode allows it.
                if (!_loose)
                {
                    context.Count(HelperEvent.ForeignAddressRefused);
                    return HelperVerdict.Accept;
                }

                destination = address;
            }
        }

        var request = context.FromPeer(IpProtocol.Tcp, announced.Port);
        request.Destination = destination;

        if (context.Expect(ref request) != ExpectResult.Added)
        {
            // Without the expectation the data connection would fail anyway; the client retries.
            context.Count(HelperEvent.ExpectationFailed);
            return HelperVerdict.Drop;
        }

        if (!context.IsNatted)
        {
            return HelperVerdict.Accept;
        }

        // Announce the translated endpoint: where the peer reaches the expected connection.
        var translated = own.Family == 4
            ? FtpAddressPort.FromIPv4(other.Destination.IPv4Value, request.DestinationPort)
            : FtpAddressPort.FromIPv6(other.Destination.High, other.Destination.Low, request.DestinationPort);
        Span<byte> text = stackalloc byte[FtpParser.MaxReplacementLength];
        int written = FtpParser.FormatReplacement(match.Kind, translated, text, IPv6TextForm.Full);
        if (written < 0 || !context.Rewrite(lineStart + match.ReplaceOffset, match.ReplaceLength, text.Slice(0, written)))
        {
            context.Count(HelperEvent.RewriteFailed);
            return HelperVerdict.Drop;
        }

        return HelperVerdict.Accept;
    }

    /// <summary>Per control connection: where, in each direction, a segment would start right after a newline.</summary>
    private sealed class FtpState
    {
        // Two positions per direction, as the kernel keeps: enough to survive one retransmission.
        private readonly uint[] _afterNewline = new uint[4];
        private readonly int[] _count = new int[2];

        private const int SavedLength = 2 * (1 + 8);

        public void Write(IBufferWriter<byte> writer)
        {
            var span = writer.GetSpan(SavedLength);
            for (int dir = 0; dir < 2; dir++)
            {
                span[dir * 9] = (byte)_count[dir];
                BinaryPrimitives.WriteUInt32LittleEndian(span.Slice((dir * 9) + 1), _afterNewline[dir * 2]);
                BinaryPrimitives.WriteUInt32LittleEndian(span.Slice((dir * 9) + 5), _afterNewline[(dir * 2) + 1]);
            }

            writer.Advance(SavedLength);
        }

        public static FtpState? Read(ReadOnlySpan<byte> data)
        {
            if (data.Length != SavedLength || data[0] > 2 || data[9] > 2)
            {
                return null;
            }

            var state = new FtpState();
            for (int dir = 0; dir < 2; dir++)
            {
                state._count[dir] = data[dir * 9];
                state._afterNewline[dir * 2] = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice((dir * 9) + 1));
                state._afterNewline[(dir * 2) + 1] = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice((dir * 9) + 5));
            }

            return state;
        }

        public bool FollowsNewline(int dir, uint seq)
        {
            for (int i = 0; i < _count[dir]; i++)
            {
                if (_afterNewline[(dir * 2) + i] == seq)
                {
                    return true;
                }
            }

            return false;
        }

        public void RememberNewline(int dir, uint seq)
        {
            int n = _count[dir];
            for (int i = 0; i < n; i++)
            {
                if (_afterNewline[(dir * 2) + i] == seq)
                {
                    return;
                }
            }

            if (n < 2)
            {
                _afterNewline[(dir * 2) + n] = seq;
                _count[dir] = n + 1;
                return;
            }

            int oldest = (int)(_afterNewline[dir * 2] - _afterNewline[(dir * 2) + 1]) < 0 ? 0 : 1;
            if ((int)(seq - _afterNewline[(dir * 2) + oldest]) > 0)
            {
                _afterNewline[(dir * 2) + oldest] = seq;
            }
        }
    }
}
