using System.Buffers.Binary;

namespace Offload.Alg.Snmp;

/// <summary>
/// The SNMP helpers (the kernel's nf_conntrack_snmp with nf_nat_snmp_basic): <c>snmp</c> on UDP 161 (requests and
/// their responses) and <c>snmp_trap</c> on UDP 162 (traps and informs). When the sender of an SNMPv1 or SNMPv2c
/// message is translated, every IpAddress value in it that is the sender's own address becomes the address the peer
/// knows it by: in variable bindings (a trap naming its agent, a response naming the agent's interface, a set request
/// naming its manager), and the agent-addr of an SNMPv1 trap. Same length, in place; the engine fixes the UDP checksum.
/// Like the kernel's, <c>snmp</c> also lets in the answers to a request sent to a broadcast address (<see cref="BroadcastQuery"/>).
/// </summary>
/// <remarks>
/// <para>The kernel maps the master's original source to its translated source in both directions, so only source NAT
/// counts there, and a port-forwarded agent's responses keep its private address. Here the address mapped is the
/// sender's, whichever side is translated: the same as the kernel for a masqueraded manager or trap sender, and the
/// agent's own address for one behind a port forward.</para>
/// <para>A message that is not well-formed SNMPv1/v2c is dropped and counted, as the kernel drops it ("parser
/// failed"); a message of another version (SNMPv3) passes untouched, which the kernel drops too.</para>
/// </remarks>
public sealed class SnmpHelper : ConntrackHelper
{
    /// <summary>The agents' port (the <c>snmp</c> helper).</summary>
    public const ushort AgentPort = 161;

    /// <summary>The managers' trap port (the <c>snmp_trap</c> helper).</summary>
    public const ushort TrapPort = 162;

    /// <summary>The name of the helper for UDP 161, as the kernel's.</summary>
    public const string AgentName = "snmp";

    /// <summary>The name of the helper for UDP 162, as the kernel's (<c>-j CT --helper snmp_trap</c>).</summary>
    public const string TrapName = "snmp_trap";

    /// <summary>More matches than this in one message are rewritten as one span (see <see cref="Translate"/>).</summary>
    internal const int SeparateRewrites = 16;

    /// <summary>The longest span of a message one rewrite may replace (the engine's room for replacement bytes).</summary>
    internal const int MaxSpan = 2048;

    /// <summary>At most this many matches fit in <see cref="MaxSpan"/> (each IpAddress binding takes 10 bytes or more).</summary>
    private const int MaxMatches = 256;

    /// <summary>The kernel's nf_conntrack_snmp: one expectation for the answers to a broadcast request, for 30 seconds.</summary>
    public static readonly ExpectationPolicy AgentPolicy = new(1, TimeSpan.FromSeconds(30));

    /// <summary>The kernel's snmp_trap expects nothing (its policy's 180 s are never used).</summary>
    public static readonly ExpectationPolicy TrapPolicy = new(1, TimeSpan.FromSeconds(180));

    // The agents' helper, as the kernel's nf_conntrack_snmp, lets in the answers to a request sent to a broadcast address.
    private readonly bool _broadcast;

    /// <summary>The helper for agents (UDP 161) or for traps (UDP 162).</summary>
    /// <param name="trap">True for <c>snmp_trap</c> on UDP 162.</param>
    public SnmpHelper(bool trap)
        : base(trap ? TrapName : AgentName, trap ? TrapPolicy : AgentPolicy)
    {
        Protocol = IpProtocol.Udp;
        Ports = [trap ? TrapPort : AgentPort];
        Family = 4; // SNMP's IpAddress is IPv4 only, as is the kernel's helper
        _broadcast = !trap;
    }

    public override HelperVerdict Help(ref HelperContext context)
    {
        if (context.Protocol != IpProtocol.Udp || context.Family != 4)
        {
            return HelperVerdict.Accept;
        }

        if (_broadcast)
        {
            BroadcastQuery.Expect(ref context, AgentPolicy.Timeout);
        }

        // The sender as it knows itself, and as the peer knows it.
        uint from = context.Tuple.Source.IPv4Value;
        uint to = context.OtherTuple.Destination.IPv4Value;
        if (from == to)
        {
            return HelperVerdict.Accept;
        }

        var payload = context.Payload;
        Span<int> matches = stackalloc int[MaxMatches];
        switch (SnmpScanner.Scan(payload, from, matches, out int count))
        {
            case SnmpScanStatus.OtherVersion:
                return HelperVerdict.Accept;
            case SnmpScanStatus.Malformed:
                context.Count(HelperEvent.MalformedCommand);
                return HelperVerdict.Drop;
        }

        if (count == 0)
        {
            return HelperVerdict.Accept;
        }

        if (!Translate(ref context, payload, matches, count, to))
        {
            // Left as it was it would carry the private address out: the kernel drops a message it cannot mangle too.
            context.Count(HelperEvent.RewriteFailed);
            return HelperVerdict.Drop;
        }

        return HelperVerdict.Accept;
    }

    /// <summary>
    /// Asks for the rewrites: one per address while they fit the engine's per-packet count, else one covering the first
    /// to the last (a walk's response full of one address), built in a stack buffer; false when even that does not fit.
    /// </summary>
    private static bool Translate(ref HelperContext context, scoped ReadOnlySpan<byte> payload, scoped ReadOnlySpan<int> matches, int count, uint to)
    {
        Span<byte> address = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(address, to);
        if (count <= SeparateRewrites)
        {
            for (int i = 0; i < count; i++)
            {
                if (!context.Rewrite(matches[i], 4, address))
                {
                    return false;
                }
            }

            return true;
        }

        if (count > matches.Length)
        {
            return false;
        }

        int start = matches[0];
        int length = matches[count - 1] + 4 - start;
        if (length > MaxSpan)
        {
            return false;
        }

        Span<byte> span = stackalloc byte[MaxSpan];
        span = span[..length];
        payload.Slice(start, length).CopyTo(span);
        for (int i = 0; i < count; i++)
        {
            address.CopyTo(span[(matches[i] - start)..]);
        }

        return context.Rewrite(start, length, span);
    }
}
