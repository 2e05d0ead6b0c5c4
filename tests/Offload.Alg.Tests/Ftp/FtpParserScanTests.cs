using Offload.Alg.Ftp;
using Xunit;
using static Offload.Alg.Tests.Ftp.FtpTestText;

namespace Offload.Alg.Tests.Ftp;

public class FtpParserScanTests
{
    // Lines as curl, lftp and vsftpd send them.
    public static TheoryData<string, bool, FtpCommandKind, string, string> RealLines => new()
    {
        { "PORT 192,0,2,2,195,80\r\n", false, FtpCommandKind.Port, "192,0,2,2,195,80", "192.0.2.2:50000" },
        { "EPRT |1|192.0.2.2|50000|\r\n", false, FtpCommandKind.Eprt, "|1|192.0.2.2|50000|", "192.0.2.2:50000" },
        { "EPRT |2|2001:db8:1::2|50000|\r\n", false, FtpCommandKind.Eprt, "|2|2001:db8:1::2|50000|", "[2001:db8:1::2]:50000" },
        { "227 Entering Passive Mode (198,51,100,2,117,48).\r\n", true, FtpCommandKind.Pasv, "198,51,100,2,117,48", "198.51.100.2:30000" },
        { "229 Entering Extended Passive Mode (|||30000|)\r\n", true, FtpCommandKind.Epsv, "|||30000|", ":30000" },
        // Lowercase and mixed case commands.
        { "port 192,0,2,2,195,80\r\n", false, FtpCommandKind.Port, "192,0,2,2,195,80", "192.0.2.2:50000" },
        { "Eprt |1|192.0.2.2|50000|\r\n", false, FtpCommandKind.Eprt, "|1|192.0.2.2|50000|", "192.0.2.2:50000" },
        { "ePrT |2|2001:DB8:1::2|50000|\r\n", false, FtpCommandKind.Eprt, "|2|2001:DB8:1::2|50000|", "[2001:db8:1::2]:50000" },
        // 227 without parentheses (RFC 1123 4.1.2.6: read from the first digit).
        { "227 Entering Passive Mode 198,51,100,2,117,48\r\n", true, FtpCommandKind.Pasv, "198,51,100,2,117,48", "198.51.100.2:30000" },
        { "227 =198,51,100,2,117,48\r\n", true, FtpCommandKind.Pasv, "198,51,100,2,117,48", "198.51.100.2:30000" },
        // Other delimiters, which RFC 2428 allows.
        { "EPRT !1!192.0.2.2!50000!\r\n", false, FtpCommandKind.Eprt, "!1!192.0.2.2!50000!", "192.0.2.2:50000" },
        { "229 Entering Extended Passive Mode (!!!30000!)\r\n", true, FtpCommandKind.Epsv, "!!!30000!", ":30000" },
        // Embedded IPv4 in EPRT IPv6 text.
        { "EPRT |2|::ffff:192.0.2.2|1024|\r\n", false, FtpCommandKind.Eprt, "|2|::ffff:192.0.2.2|1024|", "[::ffff:192.0.2.2]:1024" },
        // The range limits.
        { "PORT 255,255,255,255,255,255\r\n", false, FtpCommandKind.Port, "255,255,255,255,255,255", "255.255.255.255:65535" },
        { "PORT 0,0,0,0,0,0\r\n", false, FtpCommandKind.Port, "0,0,0,0,0,0", "0.0.0.0:0" },
        { "PORT 192,000,002,002,195,080\r\n", false, FtpCommandKind.Port, "192,000,002,002,195,080", "192.0.2.2:50000" },
        { "EPRT |1|192.0.2.2|65535|\r\n", false, FtpCommandKind.Eprt, "|1|192.0.2.2|65535|", "192.0.2.2:65535" },
        { "229 (|||1|)\r\n", true, FtpCommandKind.Epsv, "|||1|", ":1" },
        { "229 (|||0000065535|)\r\n", true, FtpCommandKind.Epsv, "|||0000065535|", ":65535" },
        // What follows the EPRT and 229 argument is not looked at, as in the kernel.
        { "EPRT |1|192.0.2.2|50000| trailing\r\n", false, FtpCommandKind.Eprt, "|1|192.0.2.2|50000|", "192.0.2.2:50000" },
        { "229 Entering Extended Passive Mode (|||30000|\r\n", true, FtpCommandKind.Epsv, "|||30000|", ":30000" },
    };

    [Theory]
    [MemberData(nameof(RealLines))]
    public void Finds_the_argument_and_the_span_a_rewrite_replaces(
        string line, bool isReply, FtpCommandKind kind, string replaced, string endpoint)
    {
        Assert.Equal(FtpScanStatus.Found, Scan(line, isReply, out FtpMatch match));
        Assert.Equal(kind, match.Kind);
        Assert.Equal(replaced, Replaced(line, match));
        Assert.Equal(endpoint, match.Value.ToString());
        Assert.Equal(line.Length, match.LineLength);
    }

    [Fact]
    public void Reports_the_parsed_values()
    {
        Assert.Equal(FtpScanStatus.Found, Scan("PORT 192,0,2,2,195,80\r\n", false, out FtpMatch port));
        Assert.Equal(V4("192.0.2.2", 50000), port.Value);
        Assert.Equal(4, port.Value.Family);
        Assert.Equal(0xC0000202u, port.Value.IPv4Value);
        Assert.Equal(5, port.ReplaceOffset);

        Assert.Equal(FtpScanStatus.Found, Scan("EPRT |2|2001:db8:1::2|50000|\r\n", false, out FtpMatch eprt));
        Assert.Equal(V6("2001:db8:1::2", 50000), eprt.Value);
        Assert.Equal(6, eprt.Value.Family);
        var bytes = new byte[16];
        eprt.Value.CopyAddressTo(bytes);
        Assert.Equal(System.Net.IPAddress.Parse("2001:db8:1::2").GetAddressBytes(), bytes);

        Assert.Equal(FtpScanStatus.Found, Scan("227 Entering Passive Mode (198,51,100,2,117,48).\r\n", true, out FtpMatch pasv));
        Assert.Equal(V4("198.51.100.2", 30000), pasv.Value);
        Assert.Equal(27, pasv.ReplaceOffset);

        Assert.Equal(FtpScanStatus.Found, Scan("229 Entering Extended Passive Mode (|||30000|)\r\n", true, out FtpMatch epsv));
        Assert.Equal(FtpAddressPort.FromPort(30000), epsv.Value);
        Assert.Equal(0, epsv.Value.Family);
        Assert.Equal(36, epsv.ReplaceOffset);
    }

    [Theory]
    [InlineData("PORT 192,0,2,2,195,80\n", 22)]         // a bare LF ends the line too
    [InlineData("PORT 192,0,2,2,195,80\r", 22)]         // CR at the end of the segment: the LF is in the next one
    [InlineData("PORT 192,0,2,2,195,80\r\nNOOP\r\n", 23)] // only the first line is looked at
    [InlineData("229 (|||30000|)\rx", 16)]             // a CR not followed by LF counts alone
    public void Line_length_covers_the_terminator_that_is_present(string data, int lineLength)
    {
        bool reply = data.StartsWith('2');
        Assert.Equal(FtpScanStatus.Found, Scan(data, reply, out FtpMatch match));
        Assert.Equal(lineLength, match.LineLength);
    }

    [Theory]
    [InlineData("PORT 192,0,2,2,195,80\r\n", true)]
    [InlineData("EPRT |1|192.0.2.2|50000|\r\n", true)]
    [InlineData("227 Entering Passive Mode (198,51,100,2,117,48).\r\n", false)]
    [InlineData("229 Entering Extended Passive Mode (|||30000|)\r\n", false)]
    public void The_wrong_direction_finds_nothing(string line, bool isReply)
    {
        Assert.Equal(FtpScanStatus.NotFound, Scan(line, isReply, out FtpMatch match));
        Assert.Equal(default, match.Value);
    }

    [Theory]
    [InlineData("", false)]
    [InlineData("", true)]
    [InlineData("USER anonymous\r\n", false)]
    [InlineData("PASV\r\n", false)]
    [InlineData("EPSV\r\n", false)]
    [InlineData("PWD\r\n", false)]
    [InlineData("pbsz 0\r\n", false)]
    [InlineData(" PORT 192,0,2,2,195,80\r\n", false)]
    [InlineData("220 (vsFTPd 3.0.3)\r\n", true)]
    [InlineData("227-Entering Passive Mode (198,51,100,2,117,48).\r\n", true)]
    [InlineData("228 Entering Long Passive Mode\r\n", true)]
    [InlineData("2290 (|||30000|)\r\n", true)]
    [InlineData("200 PORT command successful.\r\n", true)]
    public void Other_lines_are_not_found(string line, bool isReply)
    {
        Assert.Equal(FtpScanStatus.NotFound, Scan(line, isReply, out _));
    }

    [Theory]
    [InlineData("PORT 256,0,2,2,195,80\r\n")]
    [InlineData("PORT 192,0,2,2,195,800\r\n")]
    [InlineData("PORT 192,0,2,2,195,1000000000000\r\n")]
    [InlineData("PORT 192,0,2,2,195\r\n")]
    [InlineData("PORT 192,0,2,2,195,80,1\r\n")]
    [InlineData("PORT 192,0,2,2,195,80,\r\n")]
    [InlineData("PORT 192,,2,2,195,80\r\n")]
    [InlineData("PORT 192,0,2,2,195,\r\n")]
    [InlineData("PORT ,0,2,2,195,80\r\n")]
    [InlineData("PORT 192,0,2,2,195,80 \r\n")]
    [InlineData("PORT  192,0,2,2,195,80\r\n")]
    [InlineData("PORT 192.0.2.2.195.80\r\n")]
    [InlineData("PORT -1,0,2,2,195,80\r\n")]
    [InlineData("PORT\r\n")]
    [InlineData("EPRT |1|192.0.2.256|50000|\r\n")]
    [InlineData("EPRT |1|192.0.2|50000|\r\n")]
    [InlineData("EPRT |1|192.0.2.2.1|50000|\r\n")]
    [InlineData("EPRT |1|192.0.2.2|65536|\r\n")]
    [InlineData("EPRT |1|192.0.2.2|99999999999|\r\n")]
    [InlineData("EPRT |1|192.0.2.2|0|\r\n")]
    [InlineData("EPRT |1|192.0.2.2||\r\n")]
    [InlineData("EPRT |1|192.0.2.2|5x|\r\n")]
    [InlineData("EPRT |1|192.0.2.2|50000\r\n")]
    [InlineData("EPRT |3|192.0.2.2|50000|\r\n")]
    [InlineData("EPRT |1!192.0.2.2!50000!\r\n")]
    [InlineData("EPRT 515192.0.2.25500005\r\n")]
    [InlineData("EPRT  |1|192.0.2.2|50000|\r\n")]
    [InlineData("EPRT \u00ff1\u00ff192.0.2.2\u00ff50000\u00ff\r\n")]
    [InlineData("EPRT |2|2001:db8:::2|50000|\r\n")]
    [InlineData("EPRT |2|2001:db8::1::2|50000|\r\n")]
    [InlineData("EPRT |2|192.0.2.2|50000|\r\n")]
    [InlineData("EPRT |2|zz|50000|\r\n")]
    [InlineData("EPRT |2|2001:db8::2\r\n")]
    [InlineData("EPRT\r\n")]
    public void Bad_client_arguments_are_malformed(string line)
    {
        Assert.Equal(FtpScanStatus.Malformed, Scan(line, false, out FtpMatch match));
        Assert.Equal(line.Length, match.LineLength);
        Assert.Equal(0, match.ReplaceLength);
        Assert.Equal(default, match.Value);
    }

    [Theory]
    [InlineData("227 Entering Passive Mode (198,51,100,2,117,480).\r\n")]
    [InlineData("227 Entering Passive Mode (198,51,100,2,117).\r\n")]
    [InlineData("227 Entering Passive Mode (198,51,100,2,117,48,1).\r\n")]
    [InlineData("227 Entering Passive Mode (198,51,,2,117,48).\r\n")]
    [InlineData("227 Entering Passive Mode.\r\n")]
    [InlineData("229 Entering Extended Passive Mode (|||65536|)\r\n")]
    [InlineData("229 Entering Extended Passive Mode (|||0|)\r\n")]
    [InlineData("229 Entering Extended Passive Mode (||30000|)\r\n")]
    [InlineData("229 Entering Extended Passive Mode (|||30000)\r\n")]
    [InlineData("229 Entering Extended Passive Mode (111300001)\r\n")]
    [InlineData("229 Entering Extended Passive Mode ( ||30000 )\r\n")]
    [InlineData("229 Entering Extended Passive Mode\r\n")]
    public void Bad_server_arguments_are_malformed(string line)
    {
        Assert.Equal(FtpScanStatus.Malformed, Scan(line, true, out FtpMatch match));
        Assert.Equal(line.Length, match.LineLength);
    }

    [Theory]
    [MemberData(nameof(RealLines))]
    public void Every_cut_before_the_terminator_is_partial(
        string line, bool isReply, FtpCommandKind kind, string replaced, string endpoint)
    {
        _ = replaced;
        _ = endpoint;
        int textLength = line.IndexOfAny(['\r', '\n']);
        byte[] bytes = Bytes(line);
        for (int cut = 1; cut <= textLength; cut++)
        {
            FtpScanStatus status = FtpParser.Scan(bytes.AsSpan(0, cut), isReply, out FtpMatch match);
            Assert.True(status == FtpScanStatus.Partial, $"cut at {cut} ('{line[..cut]}') gave {status}");
            if (cut >= 3)
            {
                // "2" and "22" could still become either reply.
                Assert.Equal(kind, match.Kind);
            }

            Assert.Equal(default, match.Value);
            Assert.Equal(0, match.LineLength);
        }
    }

    [Theory]
    [InlineData("PORT 192,0,2,2,195,800")]    // bad before the end is bad, whole line or not
    [InlineData("PORT 192,0,2,2,195,80 ")]
    [InlineData("EPRT |3|")]
    [InlineData("EPRT |1|192.0.2.2|0|")]
    [InlineData("EPRT |2|2001:db8::g")]
    [InlineData("EPRT |1|192.0.2.2|65536")]
    public void A_cut_line_that_is_already_wrong_is_malformed(string data)
    {
        Assert.Equal(FtpScanStatus.Malformed, Scan(data, false, out FtpMatch match));
        Assert.Equal(0, match.LineLength);
    }

    [Theory]
    [InlineData("22")]
    [InlineData("229")]
    [InlineData("229 ")]
    [InlineData("227 Entering Passive Mode (198,51,100,2,117,4")]
    public void Reply_prefixes_are_partial(string data)
    {
        Assert.Equal(FtpScanStatus.Partial, Scan(data, true, out _));
    }

    [Fact]
    public void Lines_are_found_one_after_another_with_NextLineStart()
    {
        byte[] data = Bytes("NOOP\r\nPORT 192,0,2,2,195,80\r\nPORT 192,0,2,3,195,81\n");
        var found = new List<FtpAddressPort>();
        int start = 0;
        while (start >= 0 && start < data.Length)
        {
            if (FtpParser.Scan(data.AsSpan(start), false, out FtpMatch match) == FtpScanStatus.Found)
            {
                found.Add(match.Value);
                Assert.Equal(FtpParser.NextLineStart(data, start), start + match.LineLength);
            }

            start = FtpParser.NextLineStart(data, start);
        }

        Assert.Equal([V4("192.0.2.2", 50000), V4("192.0.2.3", 50001)], found);
    }

    [Fact]
    public void NextLineStart_returns_the_index_after_the_next_LF()
    {
        byte[] data = Bytes("ab\r\ncd\nef");
        Assert.Equal(4, FtpParser.NextLineStart(data, 0));
        Assert.Equal(4, FtpParser.NextLineStart(data, 3));
        Assert.Equal(7, FtpParser.NextLineStart(data, 4));
        Assert.Equal(-1, FtpParser.NextLineStart(data, 7));
        Assert.Equal(-1, FtpParser.NextLineStart(data, data.Length));
        Assert.Equal(-1, FtpParser.NextLineStart(ReadOnlySpan<byte>.Empty, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => FtpParser.NextLineStart(data, data.Length + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => FtpParser.NextLineStart(data, -1));
    }
}
