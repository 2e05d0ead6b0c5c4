using System.Globalization;
using System.Net;
using YamlDotNet.RepresentationModel;

namespace Offload.Rules;

/// <summary>
/// The <c>replication:</c> section: where this router and its standby (or active) peer talk, over a dedicated link,
/// with which shared key, and how the daemon learns its VRRP role. See docs/failover.md.
/// </summary>
/// <param name="Listen">The local address and UDP port on the sync link.</param>
/// <param name="Peer">The peer's address and UDP port.</param>
/// <param name="KeyFile">The shared secret (root's alone, at least <see cref="MinKeyBytes"/> bytes).</param>
public sealed record ReplicationConfig(IPEndPoint Listen, IPEndPoint Peer, string KeyFile)
{
    /// <summary>The shortest key accepted: 256 bits, as much as HMAC-SHA256 can use.</summary>
    public const int MinKeyBytes = 32;

    /// <summary>keepalived's <c>notify_fifo</c>, read for this router's role; null: only <c>offloadctl replication role</c> sets it.</summary>
    public string? NotifyFifo { get; init; }

    /// <summary>The VRRP sync group (or instance) whose state is the role; null: any GROUP line, else any INSTANCE line.</summary>
    public string? Vrrp { get; init; }

    /// <summary>How often the changes are collected and sent (milliseconds).</summary>
    public int IntervalMilliseconds { get; init; } = 50;

    public int Line { get; init; }
}

/// <content>The <c>replication:</c> section.</content>
public static partial class ConfigLoader
{
    private sealed partial class Reader
    {
        public ReplicationConfig Replication(YamlNode node)
        {
            IPEndPoint? listen = null, peer = null;
            string? key = null, fifo = null, vrrp = null;
            int interval = 50;
            foreach (var (k, value) in Entries(node, "listen", "peer", "key-file", "notify-fifo", "vrrp", "interval-ms"))
            {
                switch (k)
                {
                    case "listen": listen = Endpoint(value); break;
                    case "peer": peer = Endpoint(value); break;
                    case "key-file": key = AbsoluteFile(value); break;
                    case "notify-fifo": fifo = AbsoluteFile(value); break;
                    case "vrrp": vrrp = Scalar(value); break;
                    default: interval = Integer(value, 10, 1000); break;
                }
            }

            if (listen is null || peer is null || key is null)
            {
                throw Error(node, "replication needs listen:, peer: and key-file:");
            }

            if (listen.AddressFamily != peer.AddressFamily)
            {
                throw Error(node, "replication: listen: and peer: must be of one address family");
            }

            if (listen.Equals(peer))
            {
                throw Error(node, "replication: peer: is this router's own listen: address");
            }

            return new ReplicationConfig(listen, peer, key) { NotifyFifo = fifo, Vrrp = vrrp, IntervalMilliseconds = interval, Line = (int)node.Start.Line };
        }

        /// <summary><c>ADDRESS:PORT</c>, or <c>[IPV6]:PORT</c>.</summary>
        private IPEndPoint Endpoint(YamlNode node)
        {
            string text = Scalar(node);
            int colon = text.LastIndexOf(':');
            if (colon <= 0 || (text.Count(c => c == ':') > 1 && !text.StartsWith('[')) ||
                !ushort.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out ushort port) || port == 0)
            {
                throw Error(node, $"'{text}' is not ADDRESS:PORT (an IPv6 address in brackets: [2001:db8::1]:3780)");
            }

            var address = Address(node, text[..colon]);
            if (IPAddress.Any.Equals(address) || IPAddress.IPv6Any.Equals(address))
            {
                throw Error(node, $"'{text}': name the sync link's own address, not the wildcard");
            }

            return new IPEndPoint(address, port);
        }

        private string AbsoluteFile(YamlNode node)
        {
            string text = Scalar(node);
            if (!text.StartsWith('/'))
            {
                throw Error(node, $"'{text}' is not an absolute path");
            }

            return text;
        }
    }
}
