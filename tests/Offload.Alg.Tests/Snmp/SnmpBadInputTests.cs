using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.Snmp;
using Offload.Alg.Tests.Support;
using Offload.Engine;
using Offload.Sdk.Testing;
using Xunit;
using static Offload.Alg.Tests.Snmp.SnmpMessages;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Alg.Tests.Snmp;

/// <summary>
/// The BER scanner and the SNMP helpers on generated, random and damaged input: a well-formed message is translated
/// exactly where it names the sender, and nothing else changes; whatever arrives, the scanner never throws, never
/// reports an offset outside the datagram, ends after one pass, and the helper either passes a valid packet of the
/// same length or drops it and counts why.
/// </summary>
public class SnmpBadInputTests
{
    private static readonly FsCheck.Config Runs = FsCheck.Config.QuickThrowOnFailure.WithMaxTest(1500);
    private const string Other = "10.9.9.9";
    private static readonly uint ClientValue = BinaryPrimitives.ReadUInt32BigEndian(Ip(Client).GetAddressBytes());

    // A binding's value: the sender's address, another, or a value of another type.
    private static readonly Gen<Func<string, byte[]>> Value = Gen.Elements<Func<string, byte[]>>(
        own => IpAddress(own),
        _ => IpAddress(Other),
        _ => Int(-129),
        _ => Null,
        _ => OctetString("192.168.1.10"),
        _ => TimeTicks(0xc0a8010a),
        _ => Tlv(0x46, [0xc0, 0xa8, 0x01, 0x0a, 0x00]), // a Counter64 holding the address's bytes: not an IpAddress
        _ => Tlv(0x80, []));                            // noSuchObject

    private static readonly Gen<(int Version, byte Pdu, Func<string, byte[]>[] Values)> Messages =
        from version in Gen.Elements(0, 1)
        from pdu in Gen.Elements<byte>(0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8)
        from values in Gen.ArrayOf(Value).Select(v => v.Take(40).ToArray())
        select (version, pdu, values);

    private static byte[] Build((int Version, byte Pdu, Func<string, byte[]>[] Values) m, string own)
    {
        byte[][] bindings = [.. m.Values.Select((v, i) => Binding(Oid(1, 3, 6, 1, 2, 1, 4, 20, 1, 1, i), v(own)))];
        return m.Pdu == TrapV1 ? TrapV1Message(own, bindings) : Message(m.Version, m.Pdu, bindings);
    }

    private static readonly byte[] Interesting = [0x02, 0x04, 0x05, 0x06, 0x30, 0x40, 0x43, 0x80, 0x81, 0x82, 0x84, 0xa2, 0xa4, 0xff, 0x00, 0x01, 0x7f];

    private static readonly Gen<byte> AnyByte = Gen.Frequency(
        (1, Gen.Choose(0, 255).Select(b => (byte)b)),
        (3, Gen.Elements(Interesting)));

    private static readonly Gen<byte[]> Mutated = ByteMutations.Of(Messages.Select(m => Build(m, Client)), AnyByte, maxPosition: 600, maxEdits: 6);

    [Fact]
    public void A_generated_message_leaves_exactly_as_it_would_have_been_written_with_the_public_address()
    {
        Check.One(Runs, Prop.ForAll(Messages.ToArbitrary(), m =>
        {
            var rig = Masquerading(new SnmpHelper(trap: true));
            var hop = rig.Out(UdpPacket(Client, 40000, Server, 162, Build(m, Client)));
            Assert.True(hop.Accepted, rig.DropSummary());
            AssertValid(hop.Packet);
            Assert.Equal(Build(m, WanAddress), Payload(hop.Packet));
        }));
    }

    // The scanner on any input: no throw, offsets inside the datagram, increasing, each at a copy of the address.
    private static bool ScansSafely(byte[] payload)
    {
        Span<int> matches = stackalloc int[64];
        var status = SnmpScanner.Scan(payload, ClientValue, matches, out int count);
        int previous = -1;
        for (int i = 0; i < Math.Min(count, matches.Length); i++)
        {
            int at = matches[i];
            if (at <= previous || at < 2 || at + 4 > payload.Length
                || BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(at)) != ClientValue || payload[at - 2] != 0x40)
            {
                return false;
            }

            previous = at;
        }

        // One IpAddress takes six bytes at least; a message of another version is not looked into.
        return count <= payload.Length / 6 && (status != SnmpScanStatus.OtherVersion || count == 0);
    }

    // Through the engine: the helper never fails; a packet that passes is valid and as long as it came; a drop is counted.
    private static bool Survives(byte[] payload)
    {
        var rig = Masquerading(new SnmpHelper(trap: false));
        var hop = rig.Out(UdpPacket(Client, 40000, Server, 161, payload));
        if (rig[EngineCounter.HelperFailures] != 0)
        {
            return false;
        }

        if (hop.Accepted)
        {
            AssertValid(hop.Packet);
            return Payload(hop.Packet).Length == payload.Length;
        }

        return rig[EngineCounter.HelperMalformedCommand] + rig[EngineCounter.HelperRewriteFailed] == 1;
    }

    [Fact]
    public void Mutated_messages_are_scanned_within_bounds()
    {
        Check.One(Runs, Prop.ForAll(Mutated.ToArbitrary(), ScansSafely));
    }

    [Fact]
    public void Random_bytes_are_scanned_within_bounds()
    {
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), ScansSafely));
    }

    [Fact]
    public void Mutated_messages_never_fail_the_helper_and_every_drop_is_counted()
    {
        Check.One(Runs, Prop.ForAll(Mutated.ToArbitrary(), Survives));
    }

    [Fact]
    public void Random_bytes_never_fail_the_helper_and_every_drop_is_counted()
    {
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), Survives));
    }

    // The reader alone, walked into every constructed element: each element lies inside its parent's window, each
    // step advances, and the walk visits fewer elements than the buffer has byte pairs.
    private static bool ReadsWithinBounds(byte[] data)
    {
        int visited = 0;
        return Walk(new BerReader(data), 0, data.Length, ref visited) && visited <= data.Length / 2;
    }

    private static bool Walk(BerReader reader, int start, int end, ref int visited)
    {
        int previousEnd = start;
        while (reader.TryRead(out var element))
        {
            visited++;
            if (element.Offset < previousEnd + 2 || element.End > end)
            {
                return false;
            }

            previousEnd = element.End;
            if ((element.Tag & 0x20) != 0 && !Walk(reader.Enter(element), element.Offset, element.End, ref visited))
            {
                return false;
            }
        }

        return true;
    }

    [Fact]
    public void The_ber_reader_stays_inside_every_window_on_mutated_messages()
    {
        Check.One(Runs, Prop.ForAll(Mutated.ToArbitrary(), ReadsWithinBounds));
    }

    [Fact]
    public void The_ber_reader_stays_inside_every_window_on_random_bytes()
    {
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), ReadsWithinBounds));
    }

    [Theory]
    [InlineData(new byte[] { 0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01 })] // a length of 2 GiB
    [InlineData(new byte[] { 0x30, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01 })] // a length of five bytes
    [InlineData(new byte[] { 0x3f, 0x81, 0x02, 0x02, 0x01, 0x01 })]                   // a high tag number
    [InlineData(new byte[] { 0x30, 0x81 })]                                           // a length cut off
    [InlineData(new byte[] { 0x30 })]
    [InlineData(new byte[] { })]
    public void Hostile_headers_are_refused_before_anything_is_read(byte[] payload)
    {
        Assert.Equal(SnmpScanStatus.Malformed, SnmpScanner.Scan(payload, ClientValue, stackalloc int[4], out int count));
        Assert.Equal(0, count);
    }

    [Fact]
    public void A_datagram_of_thousands_of_bindings_is_scanned_in_one_pass_and_every_match_counted()
    {
        // 6000 bindings of the address in one 64 KiB datagram: more than any buffer of offsets holds, all counted.
        byte[] message = Message(1, Response, [.. Enumerable.Range(0, 6000).Select(_ => Binding(Tlv(0x06, []), IpAddress(Client)))]);
        Assert.True(message.Length < 65507 - 8);
        Assert.Equal(SnmpScanStatus.Scanned, SnmpScanner.Scan(message, ClientValue, stackalloc int[16], out int count));
        Assert.Equal(6000, count);
    }
}
