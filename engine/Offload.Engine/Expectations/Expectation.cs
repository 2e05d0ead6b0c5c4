using Offload.Engine.Conntrack;
using Offload.Engine.Helpers;
using Offload.Engine.Packets;

namespace Offload.Engine.Expectations;

/// <summary>
/// A connection announced by a helper before it arrives (the kernel's <c>nf_conntrack_expect</c>):
/// a tuple and a mask saying which parts of the tuple must match, the master that announced it,
/// a timeout, and how the expected connection is to be translated when the master is.
/// </summary>
public sealed class Expectation
{
    internal Expectation(Connection master, ConntrackHelper? helper)
    {
        Master = master;
        Helper = helper;
    }

    /// <summary>The original tuple the expected connection will have (its destination always matches exactly).</summary>
    public ConnTuple Tuple { get; internal set; }

    /// <summary>How many leading bits of the source address must match; 0 for any source.</summary>
    public int SourcePrefixLength { get; internal set; }

    /// <summary>Whether the source port must match (false: any source port).</summary>
    public bool MatchSourcePort { get; internal set; }

    /// <summary>The connection whose helper announced this one.</summary>
    public Connection Master { get; }

    /// <summary>The helper to attach to the expected connection, if any.</summary>
    public ConntrackHelper? Helper { get; internal set; }

    public ExpectationFlags Flags { get; internal set; }

    /// <summary>A helper may keep several classes of expectation with separate limits (e.g. RTP and RTCP).</summary>
    public int Class { get; internal set; }

    /// <summary>How long it was given to wait when registered (its class's, or its request's); zero for one restored from a snapshot.</summary>
    public TimeSpan Timeout { get; internal set; }

    /// <summary>When the expectation lapses, on the engine's clock (nanoseconds).</summary>
    public long ExpiresAt { get; internal set; }

    /// <summary>
    /// True when the expected connection is translated so that it reaches the master's peer as the
    /// master does (the kernel's nf_nat_follow_master).
    /// </summary>
    public bool FollowMasterNat { get; internal set; }

    /// <summary>The direction of the master the expected connection travels in, for NAT (the kernel's exp->dir).</summary>
    public ConnDirection NatDirection { get; internal set; }

    /// <summary>
    /// True when the expected connection will arrive at an address the helper re-announced (the master's translated
    /// address); false when it goes to the peer's own endpoint (e.g. an FTP server's passive port).
    /// </summary>
    public bool AtTranslatedAddress { get; internal set; }

    /// <summary>The destination port the helper announced before NAT moved it (the kernel's saved_proto).</summary>
    public ushort SavedPort { get; internal set; }

    /// <summary>How the expected connection is translated (see <see cref="ExpectationNat"/>).</summary>
    public ExpectationNat Nat { get; internal set; }

    /// <summary>With <see cref="ExpectationNat.Redirect"/>: where the expected connection is sent instead.</summary>
    public InetAddress NatAddress { get; internal set; }

    /// <summary>With <see cref="ExpectationNat.Redirect"/>: the port it is sent to instead.</summary>
    public ushort NatPort { get; internal set; }

    internal Expectation? NextOfMaster;
    internal Expectation? NextInBucket;
    internal bool Linked;

    /// <summary>True when <paramref name="tuple"/> is what this expectation waits for.</summary>
    public bool Matches(in ConnTuple tuple)
    {
        var t = Tuple;
        if (tuple.Family != t.Family || tuple.Protocol != t.Protocol || tuple.Destination != t.Destination
            || tuple.DestinationPort != t.DestinationPort)
        {
            return false;
        }

        if (MatchSourcePort && tuple.SourcePort != t.SourcePort)
        {
            return false;
        }

        return SourcePrefixLength <= 0 || tuple.Source.IsInPrefix(t.Family, t.Source, SourcePrefixLength);
    }

    /// <summary>True when some tuple could match both expectations (the kernel's expect_clash).</summary>
    internal bool ClashesWith(Expectation other)
    {
        var a = Tuple;
        var b = other.Tuple;
        if (a.Family != b.Family || a.Protocol != b.Protocol || a.Destination != b.Destination || a.DestinationPort != b.DestinationPort)
        {
            return false;
        }

        if (MatchSourcePort && other.MatchSourcePort && a.SourcePort != b.SourcePort)
        {
            return false;
        }

        int prefix = Math.Min(Math.Max(SourcePrefixLength, 0), Math.Max(other.SourcePrefixLength, 0));
        return prefix == 0 || a.Source.IsInPrefix(a.Family, b.Source, prefix);
    }

    /// <summary>True when both expect the same thing from the same master.</summary>
    internal bool SameAs(Expectation other) =>
        Master == other.Master
        && Class == other.Class
        && Tuple.Equals(other.Tuple)
        && SourcePrefixLength == other.SourcePrefixLength
        && MatchSourcePort == other.MatchSourcePort;

    /// <summary>Formats like <c>conntrack -E expect</c> (display only).</summary>
    public override string ToString()
    {
        var t = Tuple;
        string proto = t.Protocol == IpProtocol.Tcp ? "tcp" : t.Protocol == IpProtocol.Udp ? "udp" : t.Protocol.ToString(System.Globalization.CultureInfo.InvariantCulture);
        string src = SourcePrefixLength <= 0 ? "0.0.0.0" : t.Source.ToString(t.Family);
        string sport = MatchSourcePort ? t.SourcePort.ToString(System.Globalization.CultureInfo.InvariantCulture) : "0";
        return $"{proto} {t.Protocol} src={src} dst={t.Destination.ToString(t.Family)} sport={sport} dport={t.DestinationPort} master={Master.Original}";
    }
}
