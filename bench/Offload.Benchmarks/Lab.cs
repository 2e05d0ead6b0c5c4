using System.Buffers.Binary;
using Offload.Alg.Ftp;
using Offload.Engine;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Offload.Engine.Routing;

namespace Offload.Benchmarks;

/// <summary>
/// The lab router of tests/data/ftp (LAN 192.0.2.0/24, WAN 198.51.100.0/24, MASQUERADE out of wan0,
/// the FTP helper on port 21) as an engine, and the router's work around the engine for one packet.
/// </summary>
internal static class Lab
{
    public const uint LanRouter = 0xC000_0201; // 192.0.2.1
    public const uint Client = 0xC000_0202; // 192.0.2.2
    public const uint WanRouter = 0xC633_6401; // 198.51.100.1
    public const uint Server = 0xC633_6402; // 198.51.100.2

    /// <summary>Interface indexes, in the order <see cref="CreateEngine"/> adds them.</summary>
    public const int Lan = 1;
    public const int Wan = 2;

    /// <summary>Room for a packet to grow when a helper rewrites it.</summary>
    public const int BufferSize = 2048;

    /// <summary>
    /// Packets per burst: offloadd's receive batch (<c>NfQueueOptions.MaxBatch</c>), for which its worker reads the
    /// system clock once. The classes that measure packets send them in bursts of this size, one clock read each.
    /// </summary>
    public const int Burst = 64;

    /// <summary>Fixed hash key and port-search seed: the same runs give the same tables.</summary>
    private const ulong HashKey = 0x9E37_79B9_7F4A_7C15;
    private const ulong Seed = 0x0FF1_0AD5_EED;

    public static ConntrackEngine CreateEngine(
        bool validateChecksums = true,
        int maxConnections = 262_144,
        bool ftpHelper = false,
        IClock? clock = null,
        ConntrackHelper? ftpAs = null,
        IHelperInvoker? invoker = null,
        HelperBinding[]? helpers = null)
    {
        var interfaces = new StaticNetworkInterfaces();
        int lan = interfaces.Add("lan0", (InetAddress.FromIPv4(LanRouter), 4, 24));
        int wan = interfaces.Add("wan0", (InetAddress.FromIPv4(WanRouter), 4, 24));
        if (lan != Lan || wan != Wan)
        {
            throw new InvalidOperationException("Unexpected interface indexes.");
        }

        var options = new EngineOptions
        {
            MaxConnections = maxConnections,
            ValidateChecksums = validateChecksums,
            HashKey = HashKey,
            RandomSeed = Seed,
            Interfaces = interfaces,
            NatRules = [new NatRule { Action = NatAction.Masquerade, OutInterface = wan, Origin = "lab.yaml" }],
            Helpers = helpers ?? (ftpHelper ? [new HelperBinding(ftpAs ?? new FtpHelper(), IpProtocol.Tcp, FtpHelper.DefaultPort)] : []),
            HelperInvoker = invoker,
        };

        // The live daemon's engine reads a clock its worker moves on once per burst, so the benchmarks' does too.
        return new ConntrackEngine(options, clock ?? new BurstClock());
    }

    /// <summary>What offloadd's worker does before a burst: reads the system clock once for the engine (<see cref="BurstClock"/>).</summary>
    public static void Tick(ConntrackEngine engine)
    {
        if (engine.Clock is BurstClock clock)
        {
            clock.Tick();
        }
    }

    /// <summary>
    /// One burst of <see cref="Burst"/> copies of <paramref name="packet"/>, after one clock read, each copied into
    /// <paramref name="buffer"/> and forwarded; returns how many were accepted.
    /// </summary>
    public static int ForwardBurst(ConntrackEngine engine, byte[] packet, byte[] buffer, int inInterface)
    {
        Tick(engine);
        int accepted = 0;
        for (int i = 0; i < Burst; i++)
        {
            packet.CopyTo(buffer, 0);
            int length = packet.Length;
            if (Forward(engine, buffer, ref length, inInterface) == Verdict.Accept)
            {
                accepted++;
            }
        }

        return accepted;
    }

    /// <summary>
    /// What the router does with a packet entering on <paramref name="inInterface"/>: PREROUTING, a route
    /// lookup by the (possibly translated) destination, POSTROUTING. <paramref name="length"/> is updated
    /// when the engine changes the packet's length. The TTL decrement is left out: it is the router's, not the engine's.
    /// </summary>
    public static Verdict Forward(ConntrackEngine engine, Span<byte> buffer, ref int length, int inInterface, bool checksumVerified = false)
    {
        var ctx = new PacketContext(buffer, length, inInterface) { ChecksumVerified = checksumVerified };
        if (engine.PreRouting(ref ctx) != Verdict.Accept)
        {
            return Verdict.Drop;
        }

        // Two connected subnets: the LAN's, and everything else behind wan0.
        uint destination = BinaryPrimitives.ReadUInt32BigEndian(ctx.Packet.Slice(16));
        ctx.OutInterface = (destination & 0xFFFF_FF00) == (LanRouter & 0xFFFF_FF00) ? Lan : Wan;
        var verdict = engine.PostRouting(ref ctx);
        length = ctx.Length;
        return verdict;
    }

    /// <summary>
    /// Forwards each packet in turn, copied into <paramref name="buffer"/>, in bursts of <see cref="Burst"/> with one
    /// clock read each; returns how many were accepted.
    /// </summary>
    public static int ForwardEach(ConntrackEngine engine, byte[][] packets, byte[] buffer, int inInterface)
    {
        int accepted = 0;
        for (int i = 0; i < packets.Length; i++)
        {
            if (i % Burst == 0)
            {
                Tick(engine);
            }

            var packet = packets[i];
            packet.CopyTo(buffer, 0);
            int length = packet.Length;
            if (Forward(engine, buffer, ref length, inInterface) == Verdict.Accept)
            {
                accepted++;
            }
        }

        return accepted;
    }

    /// <summary>Forwards a copy of <paramref name="packet"/> and fails loudly unless it is accepted (for setting up state).</summary>
    public static byte[] ForwardOrThrow(ConntrackEngine engine, byte[] packet, int inInterface)
    {
        var buffer = new byte[BufferSize];
        packet.CopyTo(buffer, 0);
        int length = packet.Length;
        if (Forward(engine, buffer, ref length, inInterface) != Verdict.Accept)
        {
            throw new InvalidOperationException($"The engine dropped a set-up packet; counters: {DescribeCounters(engine)}");
        }

        return buffer.AsSpan(0, length).ToArray();
    }

    /// <summary>
    /// What a trivial consumer of the packet does: verify the IPv4 header checksum and the TCP checksum
    /// over the pseudo-header and the whole segment (RFC 1071 sums).
    /// </summary>
    public static bool ChecksumsAreValid(ReadOnlySpan<byte> packet)
    {
        int headerLength = (packet[0] & 0x0F) * 4;
        int totalLength = BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(2));
        if (Checksum.Fold(Checksum.Add(0, packet.Slice(0, headerLength))) != 0xFFFF)
        {
            return false;
        }

        var segment = packet.Slice(headerLength, totalLength - headerLength);
        ulong sum = Checksum.PseudoHeader(packet.Slice(12, 4), packet.Slice(16, 4), IpProtocol.Tcp, segment.Length);
        return Checksum.Fold(Checksum.Add(sum, segment)) == 0xFFFF;
    }

    public static string DescribeCounters(ConntrackEngine engine)
    {
        var parts = new List<string>();
        var counters = engine.Counters;
        for (int i = 0; i < counters.Length; i++)
        {
            if (counters[i] != 0)
            {
                parts.Add($"{(EngineCounter)i}={counters[i]}");
            }
        }

        return string.Join(", ", parts);
    }
}

/// <summary>
/// The clock of offloadd's engine: the worker reads the system's monotonic clock once per burst of packets and the
/// engine reads that value for each of them (QueueWorker.Tick), so a packet costs no clock read of its own.
/// </summary>
internal sealed class BurstClock : IClock
{
    private long _now = SystemClock.Instance.NowNanoseconds;

    public long NowNanoseconds => _now;

    /// <summary>Moves the clock on to the system's time (never back).</summary>
    public void Tick() => _now = Math.Max(_now, SystemClock.Instance.NowNanoseconds);
}

/// <summary>Builds IPv4/TCP packets with correct checksums.</summary>
internal static class TcpPackets
{
    /// <summary>The options of a Linux SYN: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.</summary>
    public static ReadOnlySpan<byte> LinuxSynOptions =>
        [2, 4, 0x05, 0xB4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];

    public static byte[] Build(
        uint source,
        ushort sourcePort,
        uint destination,
        ushort destinationPort,
        uint seq,
        uint ack,
        byte flags,
        ushort window,
        ReadOnlySpan<byte> options = default,
        ReadOnlySpan<byte> payload = default)
    {
        var packet = new byte[20 + 20 + options.Length + payload.Length];
        Write(packet, source, sourcePort, destination, destinationPort, seq, ack, flags, window, options, payload);
        return packet;
    }

    /// <summary>Writes the packet at the start of <paramref name="buffer"/>; returns its length.</summary>
    public static int Write(
        Span<byte> buffer,
        uint source,
        ushort sourcePort,
        uint destination,
        ushort destinationPort,
        uint seq,
        uint ack,
        byte flags,
        ushort window,
        ReadOnlySpan<byte> options,
        ReadOnlySpan<byte> payload)
    {
        if (options.Length % 4 != 0)
        {
            throw new ArgumentException("TCP options must fill whole 32-bit words.", nameof(options));
        }

        int tcpLength = 20 + options.Length;
        int total = 20 + tcpLength + payload.Length;
        var ip = buffer.Slice(0, 20);
        ip.Clear();
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip.Slice(2), (ushort)total);
        BinaryPrimitives.WriteUInt16BigEndian(ip.Slice(4), (ushort)(seq ^ sourcePort));
        BinaryPrimitives.WriteUInt16BigEndian(ip.Slice(6), 0x4000); // DF
        ip[8] = 64;
        ip[9] = IpProtocol.Tcp;
        BinaryPrimitives.WriteUInt32BigEndian(ip.Slice(12), source);
        BinaryPrimitives.WriteUInt32BigEndian(ip.Slice(16), destination);
        BinaryPrimitives.WriteUInt16BigEndian(ip.Slice(10), Checksum.Compute(ip));

        var tcp = buffer.Slice(20, tcpLength + payload.Length);
        tcp.Slice(0, 20).Clear();
        BinaryPrimitives.WriteUInt16BigEndian(tcp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp.Slice(2), destinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(tcp.Slice(4), seq);
        BinaryPrimitives.WriteUInt32BigEndian(tcp.Slice(8), ack);
        tcp[12] = (byte)((tcpLength / 4) << 4);
        tcp[13] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(tcp.Slice(14), window);
        options.CopyTo(tcp.Slice(20));
        payload.CopyTo(tcp.Slice(tcpLength));
        ulong sum = Checksum.PseudoHeader(ip.Slice(12, 4), ip.Slice(16, 4), IpProtocol.Tcp, tcp.Length);
        BinaryPrimitives.WriteUInt16BigEndian(tcp.Slice(16), Checksum.Finish(Checksum.Add(sum, tcp)));
        return total;
    }

    /// <summary>SYNs from the client to the server's port 443, each from its own source port (10000 up): each one a new connection.</summary>
    public static byte[][] NewConnectionSyns(int count)
    {
        var syns = new byte[count][];
        for (int i = 0; i < count; i++)
        {
            syns[i] = Build(Lab.Client, (ushort)(10_000 + i), Lab.Server, 443, (uint)(0x2000_0000 + (i * 7919)), 0, TcpFlags.Syn, 64240, LinuxSynOptions);
        }

        return syns;
    }

    public static uint SourceAddress(ReadOnlySpan<byte> packet) => BinaryPrimitives.ReadUInt32BigEndian(packet.Slice(12));

    public static uint DestinationAddress(ReadOnlySpan<byte> packet) => BinaryPrimitives.ReadUInt32BigEndian(packet.Slice(16));

    public static uint Seq(ReadOnlySpan<byte> packet) => BinaryPrimitives.ReadUInt32BigEndian(packet.Slice(20 + 4));

    public static ReadOnlySpan<byte> Payload(ReadOnlySpan<byte> packet) => packet.Slice(20 + ((packet[20 + 12] >> 4) * 4));
}
