using System.Buffers.Binary;
using Offload.Engine;
using Offload.Engine.Packets;
using Offload.Replay.Capture;

namespace Offload.Replay;

/// <summary>One interface of the replayed router.</summary>
/// <param name="Name">Its name in the capture and in the configuration.</param>
/// <param name="Index">Its index in the engine's interface table.</param>
/// <param name="Mac">Its MAC address, to tell sent from received frames when the capture records no direction; may be null.</param>
public sealed record ReplayInterface(string Name, int Index, byte[]? Mac)
{
    /// <summary>
    /// True for a frame the router sent by this interface, false for one it received: by the capture's direction
    /// flag, or without one (dumpcap records none on Linux Ethernet) by the router's MAC as the frame's source.
    /// </summary>
    /// <exception cref="InvalidOperationException">The capture records no direction and the interface has no MAC.</exception>
    public bool Sent(in CapturedPacket frame)
    {
        if (frame.Direction != PacketDirection.Unknown)
        {
            return frame.Direction == PacketDirection.Outbound;
        }

        if (frame.LinkType != LinkLayer.Ethernet || Mac is null)
        {
            throw new InvalidOperationException(
                $"The capture does not record which frames interface {Name} sent or received: give the interface's mac: in the configuration.");
        }

        var data = frame.Data.Span;
        return data.Length >= 12 && data.Slice(6, 6).SequenceEqual(Mac);
    }
}

/// <summary>A route: packets to this prefix leave by this interface.</summary>
public readonly record struct ReplayRoute(byte Family, InetAddress Network, int PrefixLength, int InterfaceIndex);

/// <summary>What a replay did, counted.</summary>
public sealed class ReplayStatistics
{
    public long FramesRead { get; internal set; }

    public long FramesLeaving { get; internal set; }

    public long FramesNotIp { get; internal set; }

    public long FramesOtherInterface { get; internal set; }

    public long LinkControl { get; internal set; }

    public long Forwarded { get; internal set; }

    public long DeliveredLocally { get; internal set; }

    /// <summary>Dropped by the engine (each counted there under its reason), or by the router below.</summary>
    public long Dropped { get; internal set; }

    /// <summary>No route for the (translated) destination.</summary>
    public long NoRoute { get; internal set; }

    /// <summary>The TTL or hop limit ran out here (a real router would answer with ICMP time exceeded).</summary>
    public long TtlExceeded { get; internal set; }

    /// <summary>Frames replayed after a frame that follows them in the file (a multi-interface capture's batches, put back in time order).</summary>
    public long Reordered { get; internal set; }

    /// <summary>The most frames read ahead and held at once to put them in time order.</summary>
    public int HeldAtMost { get; internal set; }

    /// <summary>Entering packets whose TCP or UDP checksum the sender left to its device (CHECKSUM_PARTIAL), taken as the queue takes them.</summary>
    public long ChecksumsPartial { get; internal set; }

    /// <summary>Entering super-packets (GRO, TSO, UDP GSO) larger than the MTU, handled whole as the queue's GSO flag hands them.</summary>
    public long SuperPackets { get; internal set; }

    /// <summary>Frames larger than any IP packet, dropped unread.</summary>
    public long TooLong { get; internal set; }
}

/// <summary>
/// Plays a capture of a router's interfaces through the engine as the router would have handled it:
/// each frame entering the router goes through PREROUTING, routing, TTL decrement and POSTROUTING, and
/// what leaves is written with the interface it leaves by. The capture's timestamps are the clock.
/// </summary>
public sealed class ReplayRouter
{
    /// <summary>Room for a packet to grow when a helper rewrites it (the largest IP packet).</summary>
    private const int BufferSize = 65536 + 256;

    /// <summary>
    /// The MTU of the replayed links (the configuration names none; Ethernet's). A packet above it in a capture was
    /// merged by GRO or not yet cut by TSO or UDP GSO: the live queue would see it with the GSO flag.
    /// </summary>
    private const int Mtu = 1500;

    private readonly ConntrackEngine _engine;
    private readonly ManualClock _clock;
    private readonly IReadOnlyList<ReplayInterface> _interfaces;
    private readonly ReplayRoute[] _routes;
    private readonly Func<byte, InetAddress, bool> _isLocal;
    private readonly byte[] _buffer = new byte[BufferSize];
    private long _lastGc;

    /// <param name="engine">The engine, built with <paramref name="clock"/> as its clock.</param>
    /// <param name="clock">Set from each frame's timestamp.</param>
    /// <param name="interfaces">The router's interfaces.</param>
    /// <param name="routes">Routes, including each interface's own subnets.</param>
    /// <param name="isLocal">True for the router's own addresses (packets to them are delivered locally, not forwarded).</param>
    public ReplayRouter(ConntrackEngine engine, ManualClock clock, IReadOnlyList<ReplayInterface> interfaces, IEnumerable<ReplayRoute> routes, Func<byte, InetAddress, bool> isLocal)
    {
        _engine = engine;
        _clock = clock;
        _interfaces = interfaces;

        // Longest prefix first, so the first match is the best.
        _routes = [.. routes.OrderByDescending(r => r.PrefixLength)];
        _isLocal = isLocal;
    }

    public ReplayStatistics Statistics { get; } = new();

    public ConntrackEngine Engine => _engine;

    /// <summary>A packet that leaves the router.</summary>
    public delegate void Output(ReplayInterface outInterface, long timestampNanoseconds, ReadOnlySpan<byte> ipPacket);

    /// <summary>
    /// Replays every entering frame of <paramref name="capture"/> in time order (a stable merge of its interfaces by
    /// timestamp, see <see cref="TimeOrderedReader"/>); calls <paramref name="output"/> for each packet that leaves.
    /// </summary>
    public void Run(CaptureReader capture, Output output)
    {
        var byCaptureId = new Dictionary<int, ReplayInterface?>();
        var reader = new TimeOrderedReader(capture, ci => _interfaces.Any(i => i.Name == ci.Name));
        while (reader.TryRead(out var frame))
        {
            Statistics.FramesRead++;
            if (!byCaptureId.TryGetValue(frame.InterfaceId, out var inInterface) || inInterface is null)
            {
                var captureInterface = reader.Interfaces[frame.InterfaceId];
                inInterface = _interfaces.FirstOrDefault(i => i.Name == captureInterface.Name);
                byCaptureId[frame.InterfaceId] = inInterface;
            }

            if (inInterface is null)
            {
                Statistics.FramesOtherInterface++;
                continue;
            }

            Process(frame, inInterface, output);
        }

        Statistics.Reordered = reader.Reordered;
        Statistics.HeldAtMost = reader.MostHeld;
    }

    private void Process(in CapturedPacket frame, ReplayInterface inInterface, Output output)
    {
        var data = frame.Data.Span;
        if (inInterface.Sent(frame))
        {
            Statistics.FramesLeaving++;
            return;
        }

        if (!LinkLayer.TryGetNetworkLayer(frame.LinkType, data, out int offset, out ushort etherType)
            || etherType is not (LinkLayer.EtherTypeIPv4 or LinkLayer.EtherTypeIPv6))
        {
            Statistics.FramesNotIp++;
            return;
        }

        var ip = data.Slice(offset);
        if (IsLinkControl(ip))
        {
            Statistics.LinkControl++;
            return;
        }

        _clock.NowNanoseconds = frame.TimestampNanoseconds;
        if (_clock.NowNanoseconds - _lastGc > 1_000_000_000L)
        {
            _engine.CollectGarbage(4096);
            _lastGc = _clock.NowNanoseconds;
        }

        if (ip.Length > _buffer.Length)
        {
            Statistics.Dropped++;
            Statistics.TooLong++;
            return;
        }

        ip.CopyTo(_buffer);
        var ctx = new PacketContext(_buffer, ip.Length, inInterface.Index);

        // What the live queue learns from NFQA_SKB_INFO, a capture shows in the packet: a checksum left to the device,
        // and a size only segmentation offload makes.
        var parsed = PacketParser.Parse(ip);
        ctx.ChecksumPartial = parsed.IsValid && OffloadedChecksum.IsPartial(ip, parsed);
        ctx.Gso = parsed.IsValid && parsed.TotalLength > Mtu;
        Statistics.ChecksumsPartial += ctx.ChecksumPartial ? 1 : 0;
        Statistics.SuperPackets += ctx.Gso ? 1 : 0;

        // The engine leaves a super-packet's partial TCP checksum for the kernel, which sums each segment it cuts.
        bool segmentChecksums = ctx.ChecksumPartial && ctx.Gso && parsed.Protocol == IpProtocol.Tcp;
        if (_engine.PreRouting(ref ctx) != Verdict.Accept)
        {
            Statistics.Dropped++;
            return;
        }

        var packet = ctx.Packet;
        var info = ctx.Headers;
        var destination = InetAddress.Read(info.Family, packet.Slice(info.DestinationAddressOffset));
        if (_isLocal(info.Family, destination))
        {
            Statistics.DeliveredLocally++;
            return;
        }

        var route = Route(info.Family, destination);
        if (route is null)
        {
            Statistics.Dropped++;
            Statistics.NoRoute++;
            return;
        }

        if (!DecrementTtl(packet, info.Family))
        {
            Statistics.Dropped++;
            Statistics.TtlExceeded++;
            return;
        }

        ctx.OutInterface = route.Index;
        if (_engine.PostRouting(ref ctx) != Verdict.Accept)
        {
            Statistics.Dropped++;
            return;
        }

        if (segmentChecksums)
        {
            // Here the replay is that kernel: the super-packet leaves whole, its checksum finished as the segments' would be.
            var leaving = ctx.Packet;
            OffloadedChecksum.Complete(leaving, PacketParser.Parse(leaving));
        }

        Statistics.Forwarded++;
        output(route, frame.TimestampNanoseconds, ctx.Packet);
    }

    /// <summary>Neighbour discovery, router advertisements, MLD and IGMP: link-local control the router answers itself, never forwards.</summary>
    internal static bool IsLinkControl(ReadOnlySpan<byte> ip)
    {
        var info = PacketParser.Parse(ip);
        if (!info.IsValid)
        {
            return false; // Let the engine count it.
        }

        const byte igmp = 2;
        if (info.Family == 4)
        {
            return info.Protocol == igmp || ip[16] >= 224;
        }

        if (ip[24] == 0xFF || (ip[24] == 0xFE && (ip[25] & 0xC0) == 0x80))
        {
            return true; // Multicast or link-local destination: not routed.
        }

        return info.Protocol == IpProtocol.IcmpV6 && !info.IsLaterFragment && ip[info.L4Offset] is >= 130 and <= 143;
    }

    private ReplayInterface? Route(byte family, InetAddress destination)
    {
        foreach (var route in _routes)
        {
            if (route.Family == family && destination.IsInPrefix(family, route.Network, route.PrefixLength))
            {
                return _interfaces.FirstOrDefault(i => i.Index == route.InterfaceIndex);
            }
        }

        return null;
    }

    /// <summary>
    /// Decrements the TTL or hop limit as a forwarding router does; false when it runs out. The IPv4 header
    /// checksum is updated the way the kernel's ip_decrease_ttl does, so the bytes match the kernel's.
    /// </summary>
    internal static bool DecrementTtl(Span<byte> packet, byte family)
    {
        if (family == 6)
        {
            if (packet[HeaderOffsets.IPv6HopLimit] <= 1)
            {
                return false;
            }

            packet[HeaderOffsets.IPv6HopLimit]--;
            return true;
        }

        if (packet[HeaderOffsets.IPv4Ttl] <= 1)
        {
            return false;
        }

        packet[HeaderOffsets.IPv4Ttl]--;

        // The TTL is the high byte of its 16-bit word: adding 0x0100 to the checksum, with end-around carry, undoes its decrement.
        uint check = BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(HeaderOffsets.IPv4Checksum)) + 0x0100u;
        if (check > 0xFFFF)
        {
            check = (check & 0xFFFF) + 1;
        }

        if (check == 0xFFFF)
        {
            check = 0;
        }

        BinaryPrimitives.WriteUInt16BigEndian(packet.Slice(HeaderOffsets.IPv4Checksum), (ushort)check);
        return true;
    }
}
