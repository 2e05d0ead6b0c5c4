using YamlDotNet.RepresentationModel;

namespace Offload.Rules;

/// <summary>
/// The <c>handback:</c> section: which helpers' expected connections offloadd hands to the kernel's conntrack once they
/// are established and have passed a threshold, so that the rest of them is forwarded and translated at kernel speed
/// (docs/steering.md, "Hand-back"). Absent: every packet of every steered flow stays with offloadd.
/// </summary>
/// <param name="Helpers">The helpers (by configured name) whose expected connections are handed back.</param>
public sealed record HandbackConfig(IReadOnlyList<string> Helpers)
{
    /// <summary>False keeps the section but hands nothing back (every packet seen by offloadd).</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>Packets offloadd forwards itself, once the connection is established, before it hands it back.</summary>
    public int AfterPackets { get; init; }

    /// <summary>Bytes (IP packets whole) offloadd forwards itself, once established, before it hands it back.</summary>
    public int AfterBytes { get; init; }

    public int Line { get; init; }
}

/// <content>The <c>handback:</c> section.</content>
public static partial class ConfigLoader
{
    /// <summary>
    /// Hand-back moves flows out of offloadd's steering: in helpers mode its flow's ipset entry goes, with <c>flows: all</c>
    /// the hand-back set lets its packets past the rules that take every flow (docs/steering.md, "Hand-back"); either way
    /// it needs the steering rules. It runs in one engine shard (<see cref="ShardCount.SingleShardReason"/>). The helpers
    /// named must be configured ones.
    /// </summary>
    private static void ValidateHandback(OffloadConfig config, Reader reader)
    {
        if (config.Handback is not { Enabled: true } handback)
        {
            return;
        }

        if (config.Steering is null)
        {
            throw reader.Error(handback.Line, 1, "handback needs a steering: section (the rules that take a handed-back flow's packets out of offloadd's queues)");
        }

        foreach (string name in handback.Helpers)
        {
            if (!config.Helpers.Any(h => h.Name == name))
            {
                throw reader.Error(handback.Line, 1, $"handback names helper '{name}', which is not under helpers:");
            }
        }
    }

    private sealed partial class Reader
    {
        public HandbackConfig Handback(YamlNode node)
        {
            List<string>? helpers = null;
            bool enabled = true;
            int packets = 0, bytes = 0;
            foreach (var (key, value) in Entries(node, "enabled", "helpers", "after-packets", "after-bytes"))
            {
                switch (key)
                {
                    case "enabled":
                        enabled = Boolean(value);
                        break;
                    case "helpers":
                        helpers = [.. Sequence(value).Select(Scalar)];
                        if (helpers.Count == 0 || helpers.Distinct(StringComparer.Ordinal).Count() != helpers.Count)
                        {
                            throw Error(value, "handback helpers: one or more helper names, each once");
                        }

                        break;
                    case "after-packets":
                        packets = Integer(value, 0, int.MaxValue);
                        break;
                    default:
                        bytes = Integer(value, 0, int.MaxValue);
                        break;
                }
            }

            if (helpers is null)
            {
                throw Error(node, "handback needs helpers: (the helpers whose expected connections are handed to the kernel, e.g. [ftp])");
            }

            return new HandbackConfig(helpers) { Enabled = enabled, AfterPackets = packets, AfterBytes = bytes, Line = (int)node.Start.Line };
        }
    }
}
