using System.Buffers.Binary;
using Offload.Engine.Packets;

namespace Offload.Replay.Compare;

/// <summary>
/// What differs between the packet the kernel sent and ours, named by field: addresses, TTL or hop limit, ports, TCP
/// sequence and acknowledgement numbers, checksums, payload, and any other byte.
/// </summary>
public static class PacketDifferences
{
    /// <summary>
    /// Adds to <paramref name="into"/> one line per field that differs; nothing when the packets are equal byte for byte.
    /// The kernel's packet should come through <see cref="NormalizeKernel"/> first.
    /// </summary>
    public static void Describe(byte[] kernel, byte[] ours, List<string> into)
    {
        if (kernel.AsSpan().SequenceEqual(ours))
        {
            return;
        }

        // Every field named below is copied from the kernel's packet into this copy of ours: what still differs
        // afterwards lies in no named field.
        byte[] rest = (byte[])ours.Clone();
        var k = PacketParser.Parse(kernel);
        var o = PacketParser.Parse(ours);
        if (!k.IsValid || !o.IsValid || k.Family != o.Family)
        {
            into.Add($"packet: kernel {Shape(k, kernel)}, ours {Shape(o, ours)}");
            return;
        }

        int addressLength = k.AddressLength;
        Field(kernel, ours, rest, "source", k.SourceAddressOffset, addressLength, into, Address(k.Family));
        Field(kernel, ours, rest, "destination", k.DestinationAddressOffset, addressLength, into, Address(k.Family));
        if (k.Family == 4)
        {
            Field(kernel, ours, rest, "total length", 2, 2, into, Number);
            Field(kernel, ours, rest, "ip id", 4, 2, into, Number);
            Field(kernel, ours, rest, "ttl", HeaderOffsets.IPv4Ttl, 1, into, Number);
            Field(kernel, ours, rest, "ip checksum", HeaderOffsets.IPv4Checksum, 2, into, Hex);
        }
        else
        {
            Field(kernel, ours, rest, "payload length", 4, 2, into, Number);
            Field(kernel, ours, rest, "hop limit", HeaderOffsets.IPv6HopLimit, 1, into, Number);
        }

        if (k.Protocol != o.Protocol || k.L4Offset != o.L4Offset || !k.HasTransportHeader || !o.HasTransportHeader)
        {
            into.Add($"transport: kernel protocol {k.Protocol} at {k.L4Offset}, ours protocol {o.Protocol} at {o.L4Offset}");
            return;
        }

        int l4 = k.L4Offset;
        switch (k.Protocol)
        {
            case IpProtocol.Tcp:
                Field(kernel, ours, rest, "source port", l4, 2, into, Number);
                Field(kernel, ours, rest, "destination port", l4 + 2, 2, into, Number);
                Field(kernel, ours, rest, "seq", l4 + 4, 4, into, Number);
                Field(kernel, ours, rest, "ack", l4 + 8, 4, into, Number);
                Field(kernel, ours, rest, "tcp flags", l4 + 13, 1, into, Hex);
                Field(kernel, ours, rest, "tcp checksum", l4 + HeaderOffsets.TcpChecksum, 2, into, Hex);
                break;
            case IpProtocol.Udp:
                Field(kernel, ours, rest, "source port", l4, 2, into, Number);
                Field(kernel, ours, rest, "destination port", l4 + 2, 2, into, Number);
                Field(kernel, ours, rest, "udp checksum", l4 + HeaderOffsets.UdpChecksum, 2, into, Hex);
                break;
            case IpProtocol.Icmp:
            case IpProtocol.IcmpV6:
                Field(kernel, ours, rest, "icmp type", l4, 1, into, Number);
                Field(kernel, ours, rest, "icmp code", l4 + 1, 1, into, Number);
                Field(kernel, ours, rest, "icmp checksum", l4 + 2, 2, into, Hex);
                break;
        }

        var kernelPayload = kernel.AsSpan(k.PayloadOffset, k.PayloadLength);
        var ourPayload = ours.AsSpan(o.PayloadOffset, o.PayloadLength);
        if (k.PayloadOffset == o.PayloadOffset)
        {
            int at = kernelPayload.CommonPrefixLength(ourPayload);
            if (at < Math.Max(kernelPayload.Length, ourPayload.Length))
            {
                into.Add($"payload: {kernelPayload.Length} and {ourPayload.Length} bytes, first difference at byte {at}: kernel {Excerpt(kernelPayload, at)}, ours {Excerpt(ourPayload, at)}");
            }

            int common = Math.Min(kernelPayload.Length, ourPayload.Length);
            kernelPayload.Slice(0, common).CopyTo(rest.AsSpan(o.PayloadOffset));
        }

        int header = Math.Min(k.PayloadOffset, o.PayloadOffset);
        int other = kernel.AsSpan(0, header).CommonPrefixLength(rest.AsSpan(0, header));
        if (other < header)
        {
            into.Add($"header byte {other}: kernel {kernel[other]:x2}, ours {rest[other]:x2}");
        }
        else if (k.PayloadOffset != o.PayloadOffset)
        {
            into.Add($"headers: kernel {k.PayloadOffset} bytes, ours {o.PayloadOffset}");
        }
    }

    /// <summary>
    /// The kernel's packet as its device sends it: a TCP or UDP checksum left to the device (CHECKSUM_PARTIAL, as a
    /// capture with checksum offload shows it) is finished, since ours leave finished. Returns the packet or a copy.
    /// </summary>
    public static byte[] NormalizeKernel(byte[] packet)
    {
        var info = PacketParser.Parse(packet);
        if (!info.IsValid || !OffloadedChecksum.IsPartial(packet, info))
        {
            return packet;
        }

        byte[] finished = (byte[])packet.Clone();
        OffloadedChecksum.Complete(finished, info);
        return finished;
    }

    private static void Field(byte[] kernel, byte[] ours, byte[] rest, string name, int offset, int length, List<string> into, Func<ReadOnlySpan<byte>, string> format)
    {
        if (offset + length > kernel.Length || offset + length > ours.Length)
        {
            return;
        }

        var a = kernel.AsSpan(offset, length);
        var b = ours.AsSpan(offset, length);
        if (!a.SequenceEqual(b))
        {
            into.Add($"{name}: kernel {format(a)}, ours {format(b)}");
            a.CopyTo(rest.AsSpan(offset));
        }
    }

    private static Func<ReadOnlySpan<byte>, string> Address(byte family) =>
        bytes => Offload.Sdk.InetAddress.Read(family, bytes).ToString(family);

    private static string Number(ReadOnlySpan<byte> bytes) => bytes.Length switch
    {
        1 => bytes[0].ToString(),
        2 => BinaryPrimitives.ReadUInt16BigEndian(bytes).ToString(),
        _ => BinaryPrimitives.ReadUInt32BigEndian(bytes).ToString(),
    };

    private static string Hex(ReadOnlySpan<byte> bytes) => "0x" + Convert.ToHexStringLower(bytes);

    private static string Excerpt(ReadOnlySpan<byte> payload, int at) =>
        at >= payload.Length ? "(ends)" : Convert.ToHexStringLower(payload.Slice(at, Math.Min(8, payload.Length - at)));

    private static string Shape(in PacketInfo info, byte[] packet) =>
        info.IsValid ? $"IPv{info.Family} protocol {info.Protocol}, {info.TotalLength} bytes" : $"unparsable ({info.Error}, {packet.Length} bytes)";
}
