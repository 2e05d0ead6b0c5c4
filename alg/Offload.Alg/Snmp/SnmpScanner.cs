using System.Buffers.Binary;

namespace Offload.Alg.Snmp;

/// <summary>What <see cref="SnmpScanner.Scan"/> made of a datagram.</summary>
internal enum SnmpScanStatus : byte
{
    /// <summary>A whole SNMPv1 or SNMPv2c message: every IpAddress in it was seen.</summary>
    Scanned,

    /// <summary>A message of another version (SNMPv3's is encrypted or signed): not read further.</summary>
    OtherVersion,

    /// <summary>Not a well-formed SNMPv1/v2c message: a length that overruns, a missing or misplaced element, an IpAddress not 4 bytes long.</summary>
    Malformed,
}

/// <summary>
/// Finds, in one SNMPv1 or SNMPv2c message (RFC 1157, RFC 3416), every IpAddress value equal to a given address: in
/// the variable bindings of any PDU, and the agent-addr of an SNMPv1 trap. The kernel's nf_nat_snmp_basic reads the
/// same places (but not the v1 trap, whose PDU its grammar lacks).
/// </summary>
/// <remarks>
/// One pass over the message, no recursion: each step consumes at least two bytes or ends the scan, so a datagram of
/// n bytes is scanned in O(n) whatever its lengths say. Values other than IpAddress are skipped whole, whatever their
/// tag; the structure around them (message, PDU, variable-binding list, each binding of a name and one value) must be
/// exact. Bytes after the message are not read.
/// </remarks>
internal static class SnmpScanner
{
    /// <summary>SNMPv1's version field (RFC 1157).</summary>
    public const int Version1 = 0;

    /// <summary>SNMPv2c's version field (RFC 1901).</summary>
    public const int Version2c = 1;

    /// <summary>
    /// Scans <paramref name="payload"/> for IpAddress values equal to <paramref name="address"/> (an IPv4 address in
    /// host order). Their offsets (of the four address bytes in the payload, in increasing order) go to
    /// <paramref name="matches"/> while it has room; <paramref name="matchCount"/> counts them all.
    /// </summary>
    public static SnmpScanStatus Scan(ReadOnlySpan<byte> payload, uint address, Span<int> matches, out int matchCount)
    {
        matchCount = 0;
        var reader = new BerReader(payload);
        if (!reader.TryRead(BerTags.Sequence, out var message))
        {
            return SnmpScanStatus.Malformed;
        }

        var fields = reader.Enter(message);
        if (!fields.TryReadInt32(out int version))
        {
            return SnmpScanStatus.Malformed;
        }

        if (version is not (Version1 or Version2c))
        {
            return SnmpScanStatus.OtherVersion;
        }

        if (!fields.TryRead(BerTags.OctetString, out _) || !fields.TryRead(out var pdu)
            || pdu.Tag is < BerTags.GetRequest or > BerTags.Report || !fields.AtEnd)
        {
            return SnmpScanStatus.Malformed;
        }

        var body = fields.Enter(pdu);
        if (pdu.Tag == BerTags.TrapV1)
        {
            // enterprise, agent-addr, generic-trap, specific-trap, time-stamp.
            if (!body.TryRead(BerTags.ObjectIdentifier, out _) || !body.TryRead(BerTags.IpAddress, out var agent)
                || !Check(payload, in agent, address, matches, ref matchCount)
                || !body.TryReadInt32(out _) || !body.TryReadInt32(out _) || !body.TryRead(BerTags.TimeTicks, out _))
            {
                return SnmpScanStatus.Malformed;
            }
        }
        else if (!body.TryReadInt32(out _) || !body.TryReadInt32(out _) || !body.TryReadInt32(out _))
        {
            // request-id, error-status (non-repeaters in a GetBulk), error-index (max-repetitions).
            return SnmpScanStatus.Malformed;
        }

        if (!body.TryRead(BerTags.Sequence, out var list) || !body.AtEnd)
        {
            return SnmpScanStatus.Malformed;
        }

        var bindings = body.Enter(list);
        while (!bindings.AtEnd)
        {
            if (!bindings.TryRead(BerTags.Sequence, out var binding))
            {
                return SnmpScanStatus.Malformed;
            }

            var pair = bindings.Enter(binding);
            if (!pair.TryRead(BerTags.ObjectIdentifier, out _) || !pair.TryRead(out var value) || !pair.AtEnd
                || (value.Tag == BerTags.IpAddress && !Check(payload, in value, address, matches, ref matchCount)))
            {
                return SnmpScanStatus.Malformed;
            }
        }

        return SnmpScanStatus.Scanned;
    }

    /// <summary>An IpAddress must hold 4 bytes (the kernel drops the message otherwise); one equal to the address is noted.</summary>
    private static bool Check(ReadOnlySpan<byte> payload, in BerElement value, uint address, Span<int> matches, ref int matchCount)
    {
        if (value.Length != 4)
        {
            return false;
        }

        if (BinaryPrimitives.ReadUInt32BigEndian(payload.Slice(value.Offset, 4)) == address)
        {
            if (matchCount < matches.Length)
            {
                matches[matchCount] = value.Offset;
            }

            matchCount++;
        }

        return true;
    }
}
