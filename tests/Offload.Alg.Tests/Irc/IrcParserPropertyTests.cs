using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Offload.Alg.Irc;
using Offload.Alg.Tests.Support;
using Xunit;

namespace Offload.Alg.Tests.Irc;

public class IrcParserPropertyTests
{
    private static readonly Config Runs = Config.QuickThrowOnFailure.WithMaxTest(3000);

    private static readonly string[] ValidLines =
    [
        "PRIVMSG bob :\u0001DCC SEND file.txt 3232235786 5000 1234\u0001\r\n",
        "PRIVMSG bob :\u0001DCC CHAT chat 3232235786 5001\u0001\r\n",
        "privmsg #c :\u0001DCC TSEND \"a b\" 16909060  65535 1\u0001\n",
        "PRIVMSG bob :\u0001DCC SCHAT chat 1 1\u0001\r\n",
    ];

    private static readonly byte[] Interesting = Bytes("0123456789 :\"\r\n\u0001DCSENPRIVMG");

    private static readonly Gen<byte> AnyByte = Gen.Frequency(
        (1, Gen.Choose(0, 255).Select(b => (byte)b)),
        (3, Gen.Elements(Interesting)));

    private static readonly Gen<byte[]> RandomData = Gen.Frequency(
        (1, Gen.ArrayOf(AnyByte)),
        (2, Gen.Elements("PRIVMSG ", "PRIVMSG x :\u0001DCC ", "PRIVMSG x :\u0001DCC SEND ", "PRIVMSG x :\u0001DCC CHAT chat ")
            .SelectMany(prefix => Gen.ArrayOf(AnyByte).Select(tail => Bytes(prefix).Concat(tail).ToArray()))));

    private static readonly Gen<byte[]> MutatedLine = ByteMutations.Of(Gen.Elements(ValidLines).Select(Bytes), AnyByte, maxPosition: 1000, maxEdits: 4);

    private static byte[] Bytes(string text) => Encoding.Latin1.GetBytes(text);


    // Whatever the input, nothing throws, and a found offer's replaced text lies inside its line, is digits and
    // blanks only, and reads back as the offer's address and port.
    private static bool Sane(byte[] data)
    {
        var status = IrcParser.Scan(data, out var offer);
        switch (status)
        {
            case IrcScanStatus.Found:
                if (offer.ReplaceOffset <= 0 || offer.ReplaceLength < 3
                    || offer.ReplaceOffset + offer.ReplaceLength >= offer.LineLength
                    || offer.LineLength > data.Length
                    || data[offer.LineLength - 1] != (byte)'\n'
                    || Array.IndexOf(data, (byte)'\n', 0, offer.LineLength - 1) >= 0)
                {
                    return false;
                }

                var parts = Encoding.ASCII.GetString(data, offer.ReplaceOffset, offer.ReplaceLength)
                    .Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return parts.Length == 2
                    && uint.TryParse(parts[0], out uint address) && address == offer.Address
                    && ushort.TryParse(parts[1], out ushort port) && port == offer.Port;
            case IrcScanStatus.Malformed:
                return offer.ReplaceLength == 0 && offer.LineLength <= data.Length && offer.Kind != DccKind.None;
            case IrcScanStatus.Partial:
                return offer.ReplaceLength == 0 && Array.IndexOf(data, (byte)'\n') < 0;
            case IrcScanStatus.NotFound:
                return offer.ReplaceLength == 0;
            default:
                return false;
        }
    }

    // A found offer, rewritten with any endpoint, scans again to that endpoint.
    private static bool RewriteRoundTrips(byte[] data, uint address, ushort port)
    {
        if (IrcParser.Scan(data, out var offer) != IrcScanStatus.Found)
        {
            return true;
        }

        port = port == 0 ? (ushort)1 : port;
        Span<byte> text = stackalloc byte[IrcParser.MaxReplacementLength];
        int written = IrcParser.FormatReplacement(address, port, text);
        byte[] rewritten = [.. data.AsSpan(0, offer.ReplaceOffset), .. text[..written], .. data.AsSpan(offer.ReplaceOffset + offer.ReplaceLength)];
        return IrcParser.Scan(rewritten, out var again) == IrcScanStatus.Found
            && again.Address == address && again.Port == port && again.Kind == offer.Kind
            && again.ReplaceLength == written;
    }

    [Fact]
    public void Random_bytes_never_throw_or_escape_the_input()
    {
        Check.One(Runs, Prop.ForAll(RandomData.ToArbitrary(), Sane));
        Check.One(Runs, Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), Sane));
    }

    [Fact]
    public void Mutated_offers_never_throw_or_escape_the_input()
    {
        Check.One(Runs, Prop.ForAll(MutatedLine.ToArbitrary(), Sane));
    }

    [Fact]
    public void Every_prefix_of_an_offer_is_sane_and_never_found()
    {
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(300), Prop.ForAll(MutatedLine.ToArbitrary(), data =>
            Enumerable.Range(0, data.Length + 1).All(n => Sane(data[..n])
                && (Array.IndexOf(data, (byte)'\n', 0, n) >= 0 || IrcParser.Scan(data.AsSpan(0, n), out _) != IrcScanStatus.Found))));
    }

    [Fact]
    public void Found_offers_survive_a_rewrite_with_any_endpoint()
    {
        Check.One(Runs, Prop.ForAll(
            MutatedLine.ToArbitrary(),
            ArbMap.Default.ArbFor<uint>(),
            ArbMap.Default.ArbFor<ushort>(),
            RewriteRoundTrips));
    }
}
