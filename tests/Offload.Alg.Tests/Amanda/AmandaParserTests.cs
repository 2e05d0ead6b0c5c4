using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.Amanda;
using Xunit;

namespace Offload.Alg.Tests.Amanda;

public class AmandaParserTests
{
    private static byte[] Bytes(string text) => Encoding.ASCII.GetBytes(text);

    private static (AmandaScanStatus Status, AmandaPort[] Ports) Scan(string text)
    {
        var ports = new AmandaPort[AmandaParser.MaxPorts];
        var status = AmandaParser.Scan(Bytes(text), ports, out int count);
        return (status, ports[..count]);
    }

    private static ushort[] PortsOf(string text) => [.. Scan(text).Ports.Select(p => p.Port)];

    [Fact]
    public void Reads_every_stream_of_the_connect_line_with_its_place()
    {
        const string Reply = "Amanda 3.5 REP HANDLE 000-00A1B2C3 SEQ 1700000000\nCONNECT DATA 50000 MESG 50001 INDEX 50002 STATE 50003\nOPTIONS features=ffff;\n";
        var (status, ports) = Scan(Reply);

        Assert.Equal(AmandaScanStatus.Found, status);
        Assert.Equal([50000, 50001, 50002, 50003], ports.Select(p => (int)p.Port));
        foreach (var port in ports)
        {
            Assert.Equal(port.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), Reply.Substring(port.Offset, port.Length));
        }
    }

    [Theory]
    [InlineData("CONNECT DATA 1\n", new ushort[] { 1 })]
    [InlineData("CONNECT DATA 65535\n", new ushort[] { 65535 })]
    [InlineData("CONNECT MESG 7 DATA 8\n", new ushort[] { 7, 8 })] // in payload order, whatever the keyword order
    [InlineData("CONNECT INDEX 3 STATE 4\r\n", new ushort[] { 3, 4 })]
    [InlineData("x CONNECT DATA 10080\nCONNECT MESG 9\n", new ushort[] { 10080 })] // only the first CONNECT line
    [InlineData("CONNECT DATA 5 DATA 6\n", new ushort[] { 5 })] // the first occurrence of a keyword
    [InlineData("CONNECT DATA 123abc\n", new ushort[] { 123 })] // digits end at a non-digit, as in the kernel
    [InlineData("CONNECT XDATA 42\n", new ushort[] { 42 })] // keywords are substrings, as in the kernel
    public void Reads_ports_as_the_kernel_does(string text, ushort[] expected)
    {
        Assert.Equal(expected, PortsOf(text));
    }

    [Theory]
    [InlineData("")]
    [InlineData("CONNECT DATA 50000")] // no newline: the line is not complete
    [InlineData("CONNECT\nDATA 50000\n")] // the keyword is on another line
    [InlineData("DATA 50000 MESG 50001\n")] // no CONNECT
    [InlineData("connect DATA 50000\n")] // case matters
    [InlineData("CONNECT data 50000\n")]
    [InlineData("CONNECT NOTHING 50000\n")]
    public void Finds_nothing_without_a_complete_connect_line_naming_a_stream(string text)
    {
        var (status, ports) = Scan(text);
        Assert.Equal(AmandaScanStatus.NotFound, status);
        Assert.Empty(ports);
    }

    [Theory]
    [InlineData("CONNECT DATA 0\n", new ushort[0])]
    [InlineData("CONNECT DATA 00000\n", new ushort[0])]
    [InlineData("CONNECT DATA 65536\n", new ushort[0])] // the kernel would expect port 0... and stop: same
    [InlineData("CONNECT DATA 70000\n", new ushort[0])] // the kernel would expect port 4464
    [InlineData("CONNECT DATA 123456\n", new ushort[0])] // the kernel would expect port 12345
    [InlineData("CONNECT DATA 99999999999999999999\n", new ushort[0])]
    [InlineData("CONNECT DATA \n", new ushort[0])]
    [InlineData("CONNECT DATA  50000\n", new ushort[0])] // two spaces: no digit follows the keyword
    [InlineData("CONNECT DATA -1\n", new ushort[0])]
    [InlineData("CONNECT DATA 5 MESG x INDEX 7\n", new ushort[] { 5 })] // a bad one stops the scan, those before stay
    [InlineData("CONNECT INDEX 7 MESG 0 DATA 5\n", new ushort[] { 5 })] // keyword order (DATA, MESG, ...) decides
    public void Hostile_numbers_are_malformed_and_stop_the_scan(string text, ushort[] kept)
    {
        var (status, ports) = Scan(text);
        Assert.Equal(AmandaScanStatus.Malformed, status);
        Assert.Equal(kept, ports.Select(p => p.Port));
    }

    [Fact]
    public void A_port_at_the_very_end_of_the_line_is_read_within_it()
    {
        // "DATA 5" then the newline: the number is bounded by the line, never by the rest of the datagram.
        var (status, ports) = Scan("CONNECT DATA 5\n6789");
        Assert.Equal(AmandaScanStatus.Found, status);
        Assert.Equal(5, ports.Single().Port);
        Assert.Equal(1, ports.Single().Length);
    }

    [Fact]
    public void Formats_every_port_as_its_decimal_text()
    {
        Span<byte> text = stackalloc byte[AmandaParser.MaxPortDigits];
        foreach (ushort port in new ushort[] { 1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 65535 })
        {
            int written = AmandaParser.FormatPort(port, text);
            Assert.Equal(port.ToString(System.Globalization.CultureInfo.InvariantCulture), Encoding.ASCII.GetString(text[..written]));
        }

        Assert.Equal(-1, AmandaParser.FormatPort(10000, stackalloc byte[4]));
    }

    // ------------------------------------------------------------------ properties

    private static readonly Config Runs = Config.QuickThrowOnFailure.WithMaxTest(3000);

    private static readonly byte[] Interesting = Bytes("0123456789 \n\rCONNECTDAMSGIXE");

    private static readonly Gen<byte> AnyByte = Gen.Frequency(
        (1, Gen.Choose(0, 255).Select(b => (byte)b)),
        (3, Gen.Elements(Interesting)));

    private static readonly Gen<string> Piece = Gen.Elements(
        "CONNECT ", "DATA ", "MESG ", "INDEX ", "STATE ", "\n", " ", "0", "5", "65535", "65536", "99999", "123456", "x", "\r\n");

    /// <summary>Random bytes, and texts assembled from the words the parser looks for.</summary>
    internal static readonly Gen<byte[]> Payloads = Gen.Frequency(
        (1, Gen.ArrayOf(AnyByte)),
        (3, Gen.ListOf(Piece).Select(list => Bytes(string.Concat(list)))));

    private static bool ScanIsSane(byte[] data)
    {
        var ports = new AmandaPort[AmandaParser.MaxPorts];
        var status = AmandaParser.Scan(data, ports, out int count);
        if (count is < 0 or > AmandaParser.MaxPorts || (status == AmandaScanStatus.NotFound && count != 0) || (status == AmandaScanStatus.Found && count == 0))
        {
            return false;
        }

        int end = 0;
        for (int i = 0; i < count; i++)
        {
            var port = ports[i];

            // In bounds, in order, not overlapping, and the digits spell the port.
            if (port.Offset < end || port.Length is < 1 or > 5 || port.Offset + port.Length > data.Length || port.Port == 0)
            {
                return false;
            }

            string digits = Encoding.ASCII.GetString(data, port.Offset, port.Length);
            if (!digits.All(char.IsAsciiDigit) || int.Parse(digits, System.Globalization.CultureInfo.InvariantCulture) != port.Port)
            {
                return false;
            }

            end = port.Offset + port.Length;
        }

        return true;
    }

    [Fact]
    public void Random_payloads_never_throw_and_every_port_lies_inside_them()
    {
        Check.One(Runs, Prop.ForAll(Payloads.ToArbitrary(), ScanIsSane));
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), ScanIsSane));
    }

    [Fact]
    public void Every_prefix_of_a_payload_is_sane()
    {
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(300), Prop.ForAll(Payloads.ToArbitrary(), data =>
            Enumerable.Range(0, data.Length + 1).All(n => ScanIsSane(data[..n]))));
    }

    [Fact]
    public void Any_port_written_in_place_of_a_found_one_is_read_back()
    {
        Gen<(ushort[] Ports, ushort[] Replacements)> cases =
            from n in Gen.Choose(1, 4)
            from ports in Gen.ArrayOf(Gen.Choose(1, 65535).Select(p => (ushort)p), n)
            from replacements in Gen.ArrayOf(Gen.Choose(1, 65535).Select(p => (ushort)p), n)
            select (ports, replacements);

        string[] keywords = ["DATA", "MESG", "INDEX", "STATE"];
        Check.One(Runs, Prop.ForAll(cases.ToArbitrary(), c =>
        {
            string line = "CONNECT " + string.Join(' ', c.Ports.Select((p, i) => $"{keywords[i]} {p}")) + "\nOPTIONS x;\n";
            var data = Bytes(line);
            var found = new AmandaPort[AmandaParser.MaxPorts];
            AmandaParser.Scan(data, found, out int count);

            // Rewrite back to front, as the engine applies the helper's rewrites, each with its own length.
            var rewritten = new List<byte>(data);
            for (int i = count - 1; i >= 0; i--)
            {
                var text = new byte[5];
                int written = AmandaParser.FormatPort(c.Replacements[i], text);
                rewritten.RemoveRange(found[i].Offset, found[i].Length);
                rewritten.InsertRange(found[i].Offset, text[..written]);
            }

            var again = new AmandaPort[AmandaParser.MaxPorts];
            var status = AmandaParser.Scan(rewritten.ToArray(), again, out int countAgain);
            return count == c.Ports.Length
                && status == AmandaScanStatus.Found
                && countAgain == count
                && again[..countAgain].Select(p => p.Port).SequenceEqual(c.Replacements);
        }));
    }
}
