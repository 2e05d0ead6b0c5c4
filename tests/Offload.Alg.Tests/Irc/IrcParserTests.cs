using System.Text;
using Offload.Alg.Irc;
using Xunit;

namespace Offload.Alg.Tests.Irc;

public class IrcParserTests
{
    // 192.168.1.10 as DCC writes it.
    private const string ClientNumber = "3232235786";

    private static byte[] Bytes(string text) => Encoding.Latin1.GetBytes(text);

    private static IrcScanStatus Scan(string text, out DccOffer offer) => IrcParser.Scan(Bytes(text), out offer);

    private static string Replaced(string text, in DccOffer offer) => text.Substring(offer.ReplaceOffset, offer.ReplaceLength);

    [Theory]
    [InlineData("PRIVMSG bob :\u0001DCC SEND file.txt 3232235786 5000 1234\u0001\r\n", DccKind.Send, 5000)]
    [InlineData("PRIVMSG bob :\u0001DCC CHAT chat 3232235786 5001\u0001\r\n", DccKind.Chat, 5001)]
    [InlineData("PRIVMSG bob :\u0001DCC MOVE file 3232235786 5002 99\u0001\n", DccKind.Move, 5002)]
    [InlineData("PRIVMSG bob :\u0001DCC TSEND file 3232235786 5003 99\u0001\r\n", DccKind.TSend, 5003)]
    [InlineData("PRIVMSG bob :\u0001DCC SCHAT chat 3232235786 65535\u0001\r\n", DccKind.SChat, 65535)]
    [InlineData("  privmsg #chan :\u0001DCC SEND a 3232235786   1 1\u0001\r\n", DccKind.Send, 1)]
    [InlineData("PRIVMSG bob :\u0001DCC SEND \"my file.txt\" 3232235786 5000 12\u0001\r\n", DccKind.Send, 5000)]
    public void Offers_of_every_kind_the_kernel_knows_are_found(string line, DccKind kind, ushort port)
    {
        Assert.Equal(IrcScanStatus.Found, Scan(line, out var offer));
        Assert.Equal(kind, offer.Kind);
        Assert.Equal(3232235786u, offer.Address);
        Assert.Equal(port, offer.Port);
        Assert.Equal(line.Length, offer.LineLength);
        Assert.StartsWith(ClientNumber, Replaced(line, offer));
        Assert.EndsWith(port.ToString(System.Globalization.CultureInfo.InvariantCulture), Replaced(line, offer));
    }

    [Fact]
    public void The_replaced_text_is_the_address_and_port_with_the_blanks_between()
    {
        const string line = "PRIVMSG bob :\u0001DCC SEND f 3232235786  5000 77\u0001\r\n";
        Assert.Equal(IrcScanStatus.Found, Scan(line, out var offer));
        Assert.Equal("3232235786  5000", Replaced(line, offer));
    }

    [Theory]
    [InlineData("PRIVMSG bob :\u0001DCC RESUME file 5000 1024\u0001\r\n")] // no address: nothing to expect
    [InlineData("PRIVMSG bob :\u0001DCC ACCEPT file 5000 1024\u0001\r\n")]
    [InlineData("PRIVMSG bob :\u0001DCC XMIT file 3232235786 5000\u0001\r\n")]
    [InlineData("PRIVMSG bob :hello \u0001DCC SEND f 3232235786 5000 1\u0001\r\n")] // not where the CTCP message starts
    [InlineData("PRIVMSG bob :see :\u0001DCC SEND f 3232235786 5000 1\u0001\r\n")] // the message started at the first " :"
    [InlineData("NOTICE bob :\u0001DCC SEND f 3232235786 5000 1\u0001\r\n")]
    [InlineData(":alice PRIVMSG bob :\u0001DCC SEND f 3232235786 5000 1\u0001\r\n")] // clients send no prefix
    [InlineData("PRIVMSGbob :\u0001DCC SEND f 3232235786 5000 1\u0001\r\n")]
    [InlineData("PRIVMSG bob \u0001DCC SEND f 3232235786 5000 1\u0001\r\n")]
    [InlineData("PRIVMSG bob :\u0001dcc SEND f 3232235786 5000 1\u0001\r\n")] // CTCP is case-sensitive, as the kernel reads it
    [InlineData("JOIN #chan\r\n")]
    [InlineData("\r\n")]
    public void Lines_that_are_not_offers_at_the_start_of_a_ctcp_message_are_not_found(string line)
    {
        Assert.Equal(IrcScanStatus.NotFound, Scan(line, out _));
    }

    [Theory]
    [InlineData("PRIVMSG bob :\u0001DCC SEND f 4294967296 5000 1\u0001\r\n")] // 33 bits
    [InlineData("PRIVMSG bob :\u0001DCC SEND f 99999999999999999999 5000 1\u0001\r\n")]
    [InlineData("PRIVMSG bob :\u0001DCC SEND f 03232235786 5000 1\u0001\r\n")] // 11 digits
    [InlineData("PRIVMSG bob :\u0001DCC SEND f 3232235786 65536 1\u0001\r\n")]
    [InlineData("PRIVMSG bob :\u0001DCC SEND f 3232235786 005000 1\u0001\r\n")]
    [InlineData("PRIVMSG bob :\u0001DCC SEND f 3232235786\u0001\r\n")] // no port
    [InlineData("PRIVMSG bob :\u0001DCC SEND f 3232235786 \u0001\r\n")]
    [InlineData("PRIVMSG bob :\u0001DCC SEND f\u0001\r\n")] // no address
    [InlineData("PRIVMSG bob :\u0001DCC SEND \u0001\r\n")] // nothing at all
    [InlineData("PRIVMSG bob :\u0001DCC SEND f 3232235786x 5000 1\u0001\r\n")]
    [InlineData("PRIVMSG bob :\u0001DCC SEND f 3232235786 5000x 1\u0001\r\n")]
    [InlineData("PRIVMSG bob :\u0001DCC SEND f 3232235786 5000 1\r\n")] // the CTCP message is never closed
    [InlineData("PRIVMSG bob :\u0001DCC SEND \"f 3232235786 5000 1\u0001\r\n")] // the quote is never closed
    [InlineData("PRIVMSG bob :\u0001DCC CHAT chat -1 5000\u0001\r\n")]
    public void Offers_with_a_bad_address_or_port_are_malformed(string line)
    {
        Assert.Equal(IrcScanStatus.Malformed, Scan(line, out var offer));
        Assert.NotEqual(DccKind.None, offer.Kind);
        Assert.Equal(line.Length, offer.LineLength);
        Assert.Equal(0, offer.ReplaceLength);
    }

    [Theory]
    [InlineData("PRIVMSG bob :\u0001DCC SEND f 3232235786 5000 1\u0001")] // everything but the newline
    [InlineData("PRIVMSG bob :\u0001DCC SEND f 3232")]
    [InlineData("PRIVMSG bob :\u0001DC")]
    [InlineData("PRIVMSG bob")]
    [InlineData("PRIV")]
    public void Offers_cut_before_the_newline_are_partial_and_not_parsed(string text)
    {
        Assert.Equal(IrcScanStatus.Partial, Scan(text, out var offer));
        Assert.Equal(0, offer.ReplaceLength);
    }

    [Fact]
    public void Only_the_first_line_is_looked_at()
    {
        const string text = "PRIVMSG bob :hi\r\nPRIVMSG bob :\u0001DCC SEND f 3232235786 5000 1\u0001\r\n";
        Assert.Equal(IrcScanStatus.NotFound, Scan(text, out _));
        int next = IrcParser.NextLineStart(Bytes(text), 0);
        Assert.Equal(IrcScanStatus.Found, IrcParser.Scan(Bytes(text).AsSpan(next), out var offer));
        Assert.Equal(5000, offer.Port);
    }

    [Fact]
    public void Overlong_lines_are_not_read_and_an_overlong_offer_is_malformed()
    {
        string padding = new('x', IrcParser.MaxLineLength);
        Assert.Equal(IrcScanStatus.Malformed, Scan($"PRIVMSG bob :\u0001DCC SEND {padding} 3232235786 5000 1\u0001\r\n", out _));
        Assert.Equal(IrcScanStatus.Malformed, Scan($"PRIVMSG bob :\u0001DCC SEND {padding}", out _)); // no end in sight either
        Assert.Equal(IrcScanStatus.NotFound, Scan($"PRIVMSG bob :{padding}\r\n", out _));
        Assert.Equal(IrcScanStatus.NotFound, Scan(padding + padding, out _));
    }

    [Fact]
    public void Next_line_start_walks_lines_and_stops_at_an_unfinished_one()
    {
        var data = Bytes("a\r\nbb\ncc");
        Assert.Equal(3, IrcParser.NextLineStart(data, 0));
        Assert.Equal(6, IrcParser.NextLineStart(data, 3));
        Assert.Equal(-1, IrcParser.NextLineStart(data, 6));
        Assert.Equal(-1, IrcParser.NextLineStart(data, 8));
        Assert.Equal(-1, IrcParser.NextLineStart(data, -1));
    }

    [Theory]
    [InlineData(0u, (ushort)1, "0 1")]
    [InlineData(3405803777u, (ushort)61000, "3405803777 61000")]
    [InlineData(uint.MaxValue, ushort.MaxValue, "4294967295 65535")]
    public void Replacements_are_written_as_decimal_address_and_port(uint address, ushort port, string expected)
    {
        var text = new byte[IrcParser.MaxReplacementLength];
        int written = IrcParser.FormatReplacement(address, port, text);
        Assert.Equal(expected, Encoding.ASCII.GetString(text, 0, written));
        Assert.Equal(-1, IrcParser.FormatReplacement(address, port, new byte[expected.Length - 1]));
    }
}
