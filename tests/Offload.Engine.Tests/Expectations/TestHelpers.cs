using System.Globalization;
using System.Text;
using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;

namespace Offload.Engine.Tests.Expectations;

/// <summary>What a <see cref="ScriptedHelper"/> does with each packet.</summary>
internal delegate HelperVerdict HelpScript(ref HelperContext context);

/// <summary>A helper whose behaviour is a lambda: for tests that need one precise action.</summary>
internal sealed class ScriptedHelper : ConntrackHelper
{
    private readonly HelpScript _script;

    public ScriptedHelper(HelpScript script, ExpectationPolicy? policy = null, string name = "scripted")
        : base(name, policy ?? new ExpectationPolicy(4, TimeSpan.FromMinutes(5)))
    {
        _script = script;
    }

    public int Calls { get; private set; }

    /// <summary>The states of the connections destroyed so far (null for those without state).</summary>
    public List<object?> Destroyed { get; } = [];

    public override HelperVerdict Help(ref HelperContext context)
    {
        Calls++;
        return _script(ref context);
    }

    public override void OnDestroy(object? state) => Destroyed.Add(state);
}

/// <summary>
/// A tiny control protocol over any transport: a payload "EXPECT port [class]" announces that the peer will open a
/// connection to the sender on that port, as an FTP PORT command does. The expectation is registered the way a
/// real helper does it (source: the peer; destination: the address the peer sees, i.e. after the master's NAT),
/// and when the engine moves the port, the announced digits are rewritten to the port it chose.
/// </summary>
internal sealed class AnnouncingHelper : ConntrackHelper
{
    public AnnouncingHelper(ExpectationPolicy policy)
        : base("announce", policy)
    {
    }

    /// <summary>The protocol of the expected connections.</summary>
    public byte ExpectedProtocol { get; init; } = 6;

    public ExpectationFlags Flags { get; init; }

    public ConntrackHelper? ChildHelper { get; init; }

    /// <summary>Source bits that must match; -1 for the whole address.</summary>
    public int SourcePrefixLength { get; init; } = -1;

    /// <summary>When set, the expected connection must come from this source port.</summary>
    public ushort? SourcePort { get; init; }

    /// <summary>How the expected connections are to be translated.</summary>
    public ExpectationNat Nat { get; init; }

    /// <summary>With <see cref="ExpectationNat.Redirect"/>: where they go instead.</summary>
    public (InetAddress Address, ushort Port) RedirectTo { get; init; }

    /// <summary>What <see cref="OnExpectedConnection"/> answers.</summary>
    public HelperVerdict ExpectedVerdict { get; init; }

    /// <summary>The expected connections that arrived, as the helper was told of them.</summary>
    public List<ExpectedConnection> Arrived { get; } = [];

    public override HelperVerdict OnExpectedConnection(in ExpectedConnection connection)
    {
        Arrived.Add(connection);
        return ExpectedVerdict;
    }

    /// <summary>Every call to Expect, with the port the request held afterwards.</summary>
    public List<(ExpectResult Result, ushort Port)> Results { get; } = [];

    public override HelperVerdict Help(ref HelperContext context)
    {
        var payload = context.Payload;
        const string Command = "EXPECT ";
        if (payload.Length <= Command.Length || !payload.StartsWith("EXPECT "u8))
        {
            return HelperVerdict.Accept;
        }

        var words = Encoding.ASCII.GetString(payload.Slice(Command.Length)).Trim().Split(' ');
        ushort port = ushort.Parse(words[0], CultureInfo.InvariantCulture);
        int expectationClass = words.Length > 1 ? int.Parse(words[1], CultureInfo.InvariantCulture) : 0;
        var peer = context.OtherTuple;
        var request = new ExpectationRequest
        {
            Protocol = ExpectedProtocol,
            Source = peer.Source,
            SourcePrefixLength = SourcePrefixLength >= 0 ? SourcePrefixLength : peer.Family == 4 ? 32 : 128,
            SourcePort = SourcePort ?? 0,
            MatchSourcePort = SourcePort is not null,
            Destination = peer.Destination,
            DestinationPort = port,
            Class = expectationClass,
            Flags = Flags,
            Helper = ChildHelper,
            Nat = Nat,
            NatAddress = RedirectTo.Address,
            NatPort = RedirectTo.Port,
        };

        var result = context.Expect(ref request);
        Results.Add((result, request.DestinationPort));
        if (result != ExpectResult.Added)
        {
            context.Count(HelperEvent.ExpectationFailed);
        }
        else if (request.DestinationPort != port)
        {
            context.Rewrite(Command.Length, words[0].Length, Encoding.ASCII.GetBytes(request.DestinationPort.ToString(CultureInfo.InvariantCulture)));
        }

        return HelperVerdict.Accept;
    }
}
