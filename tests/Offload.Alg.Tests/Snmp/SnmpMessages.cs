using System.Net;

namespace Offload.Alg.Tests.Snmp;

/// <summary>SNMP messages in BER, as net-snmp writes them (definite lengths, shortest form unless asked).</summary>
internal static class SnmpMessages
{
    public const byte GetRequest = 0xa0;
    public const byte Response = 0xa2;
    public const byte SetRequest = 0xa3;
    public const byte TrapV1 = 0xa4;
    public const byte TrapV2 = 0xa7;

    /// <summary>sysUpTime.0, snmpTrapOID.0 and an interface address OID (ipAdEntAddr.1.2.3.4).</summary>
    public static readonly byte[] SysUpTime = Oid(1, 3, 6, 1, 2, 1, 1, 3, 0);
    public static readonly byte[] TrapOid = Oid(1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0);
    public static readonly byte[] AddressOid = Oid(1, 3, 6, 1, 2, 1, 4, 20, 1, 1, 1, 2, 3, 4);

    /// <summary>A TLV; <paramref name="longForm"/> writes the length in the long form even when short.</summary>
    public static byte[] Tlv(byte tag, byte[] contents, bool longForm = false)
    {
        byte[] length = contents.Length < 0x80 && !longForm ? [(byte)contents.Length]
            : contents.Length < 0x100 ? [0x81, (byte)contents.Length]
            : [0x82, (byte)(contents.Length >> 8), (byte)contents.Length];
        return [tag, .. length, .. contents];
    }

    public static byte[] Seq(params byte[][] parts) => Tlv(0x30, [.. parts.SelectMany(p => p)]);

    public static byte[] Int(int value)
    {
        var bytes = new List<byte>();
        long v = value;
        do
        {
            bytes.Insert(0, (byte)v);
            v >>= 8;
        }
        while (!((v == 0 && bytes[0] < 0x80) || (v == -1 && bytes[0] >= 0x80)));
        return Tlv(0x02, [.. bytes]);
    }

    public static byte[] Oid(params int[] arcs)
    {
        var bytes = new List<byte> { (byte)((arcs[0] * 40) + arcs[1]) };
        foreach (int arc in arcs.Skip(2))
        {
            var sub = new List<byte> { (byte)(arc & 0x7f) };
            for (int rest = arc >> 7; rest > 0; rest >>= 7)
            {
                sub.Insert(0, (byte)(0x80 | (rest & 0x7f)));
            }

            bytes.AddRange(sub);
        }

        return Tlv(0x06, [.. bytes]);
    }

    public static byte[] IpAddress(string address) => Tlv(0x40, IPAddress.Parse(address).GetAddressBytes());

    public static byte[] OctetString(string text) => Tlv(0x04, System.Text.Encoding.ASCII.GetBytes(text));

    public static byte[] TimeTicks(uint ticks) => Tlv(0x43, [(byte)(ticks >> 24), (byte)(ticks >> 16), (byte)(ticks >> 8), (byte)ticks]);

    public static readonly byte[] Null = [0x05, 0x00];

    public static byte[] Binding(byte[] oid, byte[] value) => Seq(oid, value);

    /// <summary>A message with a PDU of request-id, error-status, error-index and bindings (any PDU but the v1 trap).</summary>
    public static byte[] Message(int version, byte pdu, params byte[][] bindings) =>
        Seq(Int(version), OctetString("public"), Tlv(pdu, [.. Int(0x1234), .. Int(0), .. Int(0), .. Seq(bindings)]));

    /// <summary>An SNMPv1 trap: enterprise, agent-addr, generic, specific, time-stamp, bindings.</summary>
    public static byte[] TrapV1Message(string agent, params byte[][] bindings) =>
        Seq(Int(0), OctetString("public"), Tlv(TrapV1,
            [.. Oid(1, 3, 6, 1, 4, 1, 8072, 2, 3, 1), .. IpAddress(agent), .. Int(6), .. Int(17), .. TimeTicks(4242), .. Seq(bindings)]));

    /// <summary>An SNMPv2c trap naming <paramref name="address"/> in one binding.</summary>
    public static byte[] TrapV2Message(string address) =>
        Message(1, TrapV2, Binding(SysUpTime, TimeTicks(4242)), Binding(TrapOid, Oid(1, 3, 6, 1, 4, 1, 8072, 2, 3, 0, 1)), Binding(AddressOid, IpAddress(address)));

    /// <summary>How many times <paramref name="address"/> appears as 4 bytes in <paramref name="message"/>.</summary>
    public static int Occurrences(byte[] message, string address)
    {
        byte[] needle = IPAddress.Parse(address).GetAddressBytes();
        int count = 0;
        for (int at = message.AsSpan().IndexOf(needle); at >= 0; at = message.AsSpan(at + 1).IndexOf(needle) is int next && next >= 0 ? at + 1 + next : -1)
        {
            count++;
        }

        return count;
    }

    /// <summary>Where the n-th (0-based) occurrence of <paramref name="address"/> as 4 bytes lies in <paramref name="message"/>.</summary>
    public static int OffsetOf(byte[] message, string address, int n = 0)
    {
        byte[] needle = IPAddress.Parse(address).GetAddressBytes();
        int at = -1;
        for (int i = 0; i <= n; i++)
        {
            int next = message.AsSpan(at + 1).IndexOf(needle);
            if (next < 0)
            {
                return -1;
            }

            at += 1 + next;
        }

        return at;
    }
}
