using System.Buffers.Binary;
using Offload.Replay.Capture;

namespace Offload.Replay.Compare;

/// <summary>What a router sent, read from a capture of its interfaces: the kernel's side of a comparison.</summary>
public static class LeavingFrames
{
    /// <summary>
    /// The IP packets that leave by the router's <paramref name="interfaces"/>, in time order: frames recorded as
    /// outbound, or, when the capture records no direction, sent from the interface's MAC. Link control (neighbour
    /// discovery, ARP, MLD, IGMP) is left out, as the replay never forwards it, and so is Ethernet padding.
    /// </summary>
    /// <exception cref="InvalidOperationException">The capture records no direction and an interface has no <c>mac:</c>.</exception>
    public static List<SentPacket> Read(CaptureReader capture, IReadOnlyList<ReplayInterface> interfaces)
    {
        var sent = new List<SentPacket>();
        var reader = new TimeOrderedReader(capture, ci => interfaces.Any(i => i.Name == ci.Name));
        while (reader.TryRead(out var frame))
        {
            var iface = interfaces.FirstOrDefault(i => i.Name == reader.Interfaces[frame.InterfaceId].Name);
            var data = frame.Data.Span;
            if (iface is null
                || !iface.Sent(frame)
                || !LinkLayer.TryGetNetworkLayer(frame.LinkType, data, out int offset, out ushort etherType)
                || etherType is not (LinkLayer.EtherTypeIPv4 or LinkLayer.EtherTypeIPv6))
            {
                continue;
            }

            var ip = data.Slice(offset);
            if (ip.Length < (etherType == LinkLayer.EtherTypeIPv4 ? 20 : 40) || ReplayRouter.IsLinkControl(ip))
            {
                continue;
            }

            int length = etherType == LinkLayer.EtherTypeIPv4
                ? BinaryPrimitives.ReadUInt16BigEndian(ip.Slice(2))
                : 40 + BinaryPrimitives.ReadUInt16BigEndian(ip.Slice(4));
            sent.Add(new SentPacket(iface.Name, frame.TimestampNanoseconds, ip.Slice(0, Math.Min(length, ip.Length)).ToArray()));
        }

        return sent;
    }
}
