using Offload.Engine.Conntrack;
using Offload.Engine.Packets;
using Offload.Sdk;

namespace Offload.Replay.Compare;

/// <summary>One flow as it left by one interface: what the kernel sent and what we sent, and how they differ.</summary>
/// <param name="Interface">The interface both left by.</param>
/// <param name="Kernel">The kernel's flow, as "tcp src=... dst=... sport=... dport=..."; null when only ours sent it.</param>
/// <param name="Ours">Our flow; null when only the kernel sent it.</param>
/// <param name="KernelPackets">How many packets the kernel sent in it.</param>
/// <param name="OurPackets">How many we sent.</param>
/// <param name="FirstDifference">The index (in the flow) of the first packet that differs, or -1.</param>
/// <param name="Differences">What differs in that packet, one line per field; empty when the flow is equal.</param>
public sealed record FlowComparison(
    string Interface, string? Kernel, string? Ours, int KernelPackets, int OurPackets, int FirstDifference, IReadOnlyList<string> Differences)
{
    /// <summary>Same packets, same count, byte for byte (after the kernel's offloaded checksums are finished).</summary>
    public bool IsEqual => Kernel is not null && Ours is not null && KernelPackets == OurPackets && FirstDifference < 0;
}

/// <summary>
/// Compares what our replay sent with what the kernel sent on the same traffic, flow by flow: the check that a
/// helper author runs with <c>offloadctl replay --compare</c>, and the one our kernel-comparison tests assert.
/// </summary>
/// <remarks>
/// Packets are grouped into flows by interface and tuple, in the order they left. A flow of ours pairs with the
/// kernel's of the same tuple; flows left unpaired (ours translated differently, say) pair in order of appearance
/// with the kernel's unpaired flows of the same interface, family and protocol, so that a wrong address or port
/// shows as a field that differs rather than as two unrelated flows. Within a pair, the n-th packet of each is compared.
/// A TCP or UDP checksum the kernel left to the device (captures with offloads on) is finished before the comparison:
/// ours leave finished.
/// </remarks>
public sealed class ReplayComparison
{
    private ReplayComparison(List<FlowComparison> flows, int kernelPackets, int ourPackets, int differingPackets)
    {
        Flows = flows;
        KernelPackets = kernelPackets;
        OurPackets = ourPackets;
        DifferingPackets = differingPackets;
    }

    /// <summary>Every flow, in the order it first left (the kernel's order, then flows only ours sent).</summary>
    public IReadOnlyList<FlowComparison> Flows { get; }

    public int KernelPackets { get; }

    public int OurPackets { get; }

    /// <summary>Packets compared pairwise that differ, plus those without a counterpart.</summary>
    public int DifferingPackets { get; }

    /// <summary>Every flow equal, and at least one: a capture in which the kernel sent nothing proves nothing.</summary>
    public bool IsEqual => KernelPackets > 0 && Flows.All(f => f.IsEqual);

    /// <summary>Compares the packets that left the kernel's router with ours.</summary>
    public static ReplayComparison Compare(IReadOnlyList<SentPacket> kernel, IReadOnlyList<SentPacket> ours)
    {
        var kernelFlows = Group(kernel);
        var ourFlows = Group(ours);
        var partner = new Dictionary<Flow, Flow>();
        var byKey = kernelFlows.ToDictionary(k => (k.Interface, k.Key));
        var unpaired = new List<Flow>();
        foreach (var flow in ourFlows)
        {
            if (byKey.Remove((flow.Interface, flow.Key), out var same))
            {
                partner[same] = flow;
            }
            else
            {
                unpaired.Add(flow);
            }
        }

        // The kernel's flows nobody claimed, per kind, in order of appearance.
        var left = kernelFlows.Where(k => !partner.ContainsKey(k)).GroupBy(k => k.Kind).ToDictionary(g => g.Key, g => new Queue<Flow>(g));
        var onlyOurs = new List<Flow>();
        foreach (var flow in unpaired)
        {
            if (left.TryGetValue(flow.Kind, out var queue) && queue.TryDequeue(out var other))
            {
                partner[other] = flow;
            }
            else
            {
                onlyOurs.Add(flow);
            }
        }

        var result = new List<FlowComparison>();
        int differing = 0;
        var lines = new List<string>();
        foreach (var k in kernelFlows)
        {
            if (!partner.TryGetValue(k, out var o))
            {
                result.Add(new FlowComparison(k.Interface, k.Key, null, k.Packets.Count, 0, 0, ["only the kernel sent this flow"]));
                differing += k.Packets.Count;
                continue;
            }

            int first = -1;
            IReadOnlyList<string> differences = [];
            int common = Math.Min(k.Packets.Count, o.Packets.Count);
            for (int i = 0; i < common; i++)
            {
                lines.Clear();
                PacketDifferences.Describe(PacketDifferences.NormalizeKernel(k.Packets[i]), o.Packets[i], lines);
                if (lines.Count == 0)
                {
                    continue;
                }

                differing++;
                if (first < 0)
                {
                    first = i;
                    differences = [.. lines];
                }
            }

            differing += Math.Abs(k.Packets.Count - o.Packets.Count);
            if (first < 0 && k.Packets.Count != o.Packets.Count)
            {
                first = common;
                differences = [$"the kernel sent {k.Packets.Count} packets, ours {o.Packets.Count}"];
            }

            result.Add(new FlowComparison(k.Interface, k.Key, o.Key, k.Packets.Count, o.Packets.Count, first, differences));
        }

        foreach (var o in onlyOurs)
        {
            result.Add(new FlowComparison(o.Interface, null, o.Key, 0, o.Packets.Count, 0, ["only ours sent this flow"]));
            differing += o.Packets.Count;
        }

        return new ReplayComparison(result, kernel.Count, ours.Count, differing);
    }

    /// <summary>Writes the first difference of each differing flow (at most <paramref name="maxFlows"/>), then <see cref="Summary"/>.</summary>
    public void Write(TextWriter writer, int maxFlows = 20)
    {
        var differing = Flows.Where(f => !f.IsEqual).ToList();
        foreach (var flow in differing.Take(maxFlows))
        {
            string name = flow.Kernel is not null && flow.Ours is not null && flow.Kernel != flow.Ours
                ? $"{flow.Kernel} (ours: {flow.Ours})"
                : flow.Kernel ?? flow.Ours!;
            string where = flow.FirstDifference >= 0 && flow.Kernel is not null && flow.Ours is not null
                ? $", packet {flow.FirstDifference + 1} of {flow.KernelPackets}"
                : "";
            writer.WriteLine($"{flow.Interface}: {name}{where}:");
            foreach (var line in flow.Differences)
            {
                writer.WriteLine($"    {line}");
            }
        }

        if (differing.Count > maxFlows)
        {
            writer.WriteLine($"... and {differing.Count - maxFlows} more flows that differ");
        }

        writer.WriteLine(Summary);
    }

    /// <summary>One line: flows and packets, equal and differing.</summary>
    public string Summary
    {
        get
        {
            int equal = Flows.Count(f => f.IsEqual);
            int onlyKernel = Flows.Count(f => f.Ours is null);
            int onlyOurs = Flows.Count(f => f.Kernel is null);
            string verdict = IsEqual ? "equal" : KernelPackets == 0 ? "NOTHING TO COMPARE (the kernel sent no packet)" : "DIFFERENT";
            return $"compare: {verdict}: {Flows.Count} flows, {equal} equal, {Flows.Count - equal} differ "
                + $"({onlyKernel} only the kernel's, {onlyOurs} only ours); packets: kernel {KernelPackets}, ours {OurPackets}, {DifferingPackets} differ";
        }
    }

    private static List<Flow> Group(IReadOnlyList<SentPacket> packets)
    {
        var flows = new List<Flow>();
        var byKey = new Dictionary<(string, string), Flow>();
        foreach (var packet in packets)
        {
            var (key, kind) = Describe(packet.Packet);
            if (!byKey.TryGetValue((packet.Interface, key), out var flow))
            {
                flow = new Flow(packet.Interface, key, $"{packet.Interface} {kind}");
                byKey[(packet.Interface, key)] = flow;
                flows.Add(flow);
            }

            flow.Packets.Add(packet.Packet);
        }

        return flows;
    }

    /// <summary>The flow's name (protocol and tuple, as conntrack -L writes it) and its kind (family and protocol).</summary>
    private static (string Key, string Kind) Describe(byte[] packet)
    {
        var info = PacketParser.Parse(packet);
        if (!info.IsValid || !ConnTuples.TryRead(packet, info, out var tuple))
        {
            return ($"unparsable {(info.IsValid ? "fragment" : info.Error.ToString())}", "unparsable");
        }

        if (tuple.IsIcmp && Icmp.IsError(tuple.Protocol, tuple.IcmpType))
        {
            tuple.SourcePort = 0; // An error's "identifier" is its unused field or MTU, not a flow's.
        }

        string protocol = tuple.Protocol switch
        {
            IpProtocol.Tcp => "tcp",
            IpProtocol.Udp => "udp",
            IpProtocol.Icmp => "icmp",
            IpProtocol.IcmpV6 => "icmpv6",
            _ => $"proto {tuple.Protocol}",
        };
        return ($"{protocol} {tuple}", $"{info.Family}/{info.Protocol}");
    }

    private sealed class Flow(string iface, string key, string kind)
    {
        public string Interface { get; } = iface;

        public string Key { get; } = key;

        public string Kind { get; } = kind;

        public List<byte[]> Packets { get; } = [];
    }
}
