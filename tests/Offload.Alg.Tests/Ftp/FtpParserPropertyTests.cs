using System.Net;
using System.Net.Sockets;
using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.Ftp;
using Offload.Alg.Tests.Support;
using Xunit;
using static Offload.Alg.Tests.Ftp.FtpTestText;

namespace Offload.Alg.Tests.Ftp;

public class FtpParserPropertyTests
{
    private static readonly Config Runs = Config.QuickThrowOnFailure.WithMaxTest(3000);

    private static readonly string[] ValidLines =
    [
        "PORT 192,0,2,2,195,80\r\n",
        "EPRT |1|192.0.2.2|50000|\r\n",
        "EPRT |2|2001:db8:1::2|50000|\r\n",
        "EPRT |2|::ffff:192.0.2.2|50000|\r\n",
        "227 Entering Passive Mode (198,51,100,2,117,48).\r\n",
        "229 Entering Extended Passive Mode (|||30000|)\r\n",
    ];

    private static readonly byte[] Interesting = Bytes("0123456789,.|:()! \r\naAfF");

    // Bytes biased towards the ones the parser cares about, so random input reaches deep into it.
    private static readonly Gen<byte> AnyByte = Gen.Frequency(
        (1, Gen.Choose(0, 255).Select(b => (byte)b)),
        (3, Gen.Elements(Interesting)));

    private static readonly Gen<byte[]> RandomData = Gen.Frequency(
        (1, Gen.ArrayOf(AnyByte)),
        (2, Gen.Elements("PORT ", "EPRT ", "227 ", "229 ", "port ", "eprt |2|", "229 (|||")
            .SelectMany(prefix => Gen.ArrayOf(AnyByte).Select(tail => Bytes(prefix).Concat(tail).ToArray()))));

    // A valid line with a few bytes replaced, inserted or removed, or cut short.
    private static readonly Gen<byte[]> MutatedLine = ByteMutations.Of(Gen.Elements(ValidLines).Select(Bytes), AnyByte, maxPosition: 1000, maxEdits: 4);

    // Whatever the input, nothing throws and every reported offset lies inside it.
    private static bool Sane(byte[] data)
    {
        foreach (bool isReply in new[] { false, true })
        {
            FtpScanStatus status = FtpParser.Scan(data, isReply, out FtpMatch match);
            switch (status)
            {
                case FtpScanStatus.Found:
                    if (match.ReplaceOffset < 0 || match.ReplaceLength <= 0
                        || match.ReplaceOffset + match.ReplaceLength > match.LineLength
                        || match.LineLength > data.Length
                        || Array.IndexOf(data, (byte)'\n', 0, match.LineLength - 1) >= 0)
                    {
                        return false;
                    }

                    break;
                case FtpScanStatus.Malformed:
                    if (match.ReplaceLength != 0 || match.LineLength > data.Length)
                    {
                        return false;
                    }

                    break;
                case FtpScanStatus.Partial:
                    // Partial means the line has not ended in the data.
                    if (Array.IndexOf(data, (byte)'\n') >= 0 || match.LineLength != 0)
                    {
                        return false;
                    }

                    break;
                case FtpScanStatus.NotFound:
                    break;
                default:
                    return false;
            }
        }

        return true;
    }

    // A found value, written back in its place, scans to the same value (the NAT rewrite path).
    private static bool RewritesRoundTrip(byte[] data)
    {
        Span<byte> text = stackalloc byte[FtpParser.MaxReplacementLength];
        foreach (bool isReply in new[] { false, true })
        {
            if (FtpParser.Scan(data, isReply, out FtpMatch match) != FtpScanStatus.Found)
            {
                continue;
            }

            int written = FtpParser.FormatReplacement(match.Kind, match.Value, text);
            byte[] rewritten = [.. data.AsSpan(0, match.ReplaceOffset), .. text[..written], .. data.AsSpan(match.ReplaceOffset + match.ReplaceLength)];
            if (FtpParser.Scan(rewritten, isReply, out FtpMatch again) != FtpScanStatus.Found
                || again.Value != match.Value
                || again.ReplaceLength != written)
            {
                return false;
            }
        }

        return true;
    }

    [Fact]
    public void Random_bytes_never_throw_or_escape_the_input()
    {
        Check.One(Runs, Prop.ForAll(RandomData.ToArbitrary(), Sane));
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), Sane));
    }

    [Fact]
    public void Mutated_lines_never_throw_or_escape_the_input()
    {
        Check.One(Runs, Prop.ForAll(MutatedLine.ToArbitrary(), Sane));
    }

    [Fact]
    public void Mutated_lines_that_are_found_survive_a_rewrite()
    {
        Check.One(Runs, Prop.ForAll(MutatedLine.ToArbitrary(), RewritesRoundTrip));
    }

    [Fact]
    public void Every_prefix_of_any_input_is_sane()
    {
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(500), Prop.ForAll(MutatedLine.ToArbitrary(), data =>
            Enumerable.Range(0, data.Length + 1).All(n => Sane(data[..n]))));
    }

    [Fact]
    public void IPv6_format_then_parse_is_the_identity()
    {
        Gen<byte[]> addresses = Gen.ArrayOf(Gen.Frequency((1, Gen.Choose(0, 255)), (2, Gen.Constant(0))).Select(b => (byte)b), 16);
        Check.One(Runs, Prop.ForAll(addresses.ToArbitrary(), address =>
        {
            Span<byte> text = stackalloc byte[FtpParser.MaxIPv6TextLength];
            Span<byte> parsed = stackalloc byte[16];
            foreach (IPv6TextForm form in new[] { IPv6TextForm.Compressed, IPv6TextForm.Full })
            {
                int written = FtpParser.FormatIPv6(address, text, form);
                if (written <= 0 || !FtpParser.TryParseIPv6(text[..written], parsed) || !parsed.SequenceEqual(address))
                {
                    return false;
                }
            }

            return true;
        }));
    }

    [Fact]
    public void IPv6_parse_accepts_only_what_IPAddress_accepts_and_agrees_on_the_bytes()
    {
        // Text assembled from pieces of addresses, so that valid and nearly valid forms both come up often.
        Gen<string> pieces = Gen.Elements("0", "1", "ff", "ABCD", "0db8", "12345", ":", ":", "::", ".", "1.2.3.4", "255", "g");
        Gen<string> texts = Gen.ListOf(pieces).Select(list => string.Concat(list));
        int accepted = 0;
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(20000), Prop.ForAll(texts.ToArbitrary(), text =>
        {
            var ours = new byte[16];
            bool oursOk = FtpParser.TryParseIPv6(Bytes(text), ours);
            bool theirsOk = IPAddress.TryParse(text, out IPAddress? theirs) && theirs.AddressFamily == AddressFamily.InterNetworkV6;
            if (oursOk)
            {
                accepted++;
                return theirsOk && theirs!.GetAddressBytes().AsSpan().SequenceEqual(ours);
            }

            return !theirsOk;
        }));

        Assert.True(accepted > 100, $"only {accepted} texts were valid addresses");
    }
}
