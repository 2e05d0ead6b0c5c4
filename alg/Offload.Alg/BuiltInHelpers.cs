using Offload.Alg.Amanda;
using Offload.Alg.Ftp;
using Offload.Alg.H323;
using Offload.Alg.Irc;
using Offload.Alg.NetbiosNs;
using Offload.Alg.Rtsp;
using Offload.Alg.Rpc;
using Offload.Alg.Pptp;
using Offload.Alg.Sane;
using Offload.Alg.Sip;
using Offload.Alg.Snmp;
using Offload.Alg.Tftp;

namespace Offload.Alg;

/// <summary>The helpers that ship with Offload, by the names the configuration uses.</summary>
public static class BuiltInHelpers
{
    // One line per helper: its name and how to make it from its configuration's loose switch.
    private static readonly Dictionary<string, Func<bool, ConntrackHelper>> Factories = new(StringComparer.Ordinal)
    {
        ["amanda"] = _ => new AmandaHelper(),
        ["ftp"] = loose => new FtpHelper(loose),
        ["h323"] = _ => new H323Helper(),
        ["h323-ras"] = _ => new H323RasHelper(),
        ["irc"] = loose => new IrcHelper(loose),
        ["rtsp"] = _ => new RtspHelper(),
        ["rpc"] = _ => new RpcHelper(),
        ["pptp"] = _ => new PptpHelper(),
        ["sane"] = _ => new SaneHelper(),
        ["netbios-ns"] = _ => new NetbiosNsHelper(),
        ["sip"] = _ => new SipHelper(),
        ["snmp"] = _ => new SnmpHelper(trap: false),
        ["snmp_trap"] = _ => new SnmpHelper(trap: true),
        ["tftp"] = _ => new TftpHelper(),
    };

    /// <summary>The names of the built-in helpers.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. Factories.Keys.Order(StringComparer.Ordinal)];

    /// <summary>Creates a built-in helper, or returns null when the name is not one.</summary>
    /// <param name="name">The helper's name (as in the configuration).</param>
    /// <param name="loose">Accept announced addresses other than the sender's (for the helpers that check).</param>
    public static ConntrackHelper? Create(string name, bool loose) =>
        Factories.TryGetValue(name, out var factory) ? factory(loose) : null;
}
