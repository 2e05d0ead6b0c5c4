using System.Buffers.Binary;
using Offload.Engine.Conntrack;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Sharding;
using Offload.Sdk.Testing;
using static Offload.Sdk.Testing.RouterRig;

namespace Offload.Engine.Tests.Sharding;

/// <summary>
/// Several engine shards as the daemon runs them, and the kernel's choice of queue as the steering rules make it: a
/// reply to a port of the NAT range (and an ICMP error quoting one) goes to the shard of the port's slice, every other packet to the shard a symmetric
/// hash of its two addresses picks (<c>--queue-balance</c>). A packet a shard hands over runs again in the owner.
/// </summary>
internal sealed class ShardRig
{
    public const ushort NatPortMin = 61000;
    public const ushort NatPortMax = 65535;

    public ShardRig(int shards, IEnumerable<NatRule> rules, IEnumerable<HelperBinding>? helpers = null)
    {
        Interfaces = new RouterRig().Interfaces;
        Directory = new ShardDirectory(shards);
        var options = new EngineOptions
        {
            MaxConnections = 4096,
            HashKey = 0x0123456789abcdefUL,
            RandomSeed = 0x5eed,
            NatRules = [.. rules],
            Helpers = [.. helpers ?? []],
            Interfaces = Interfaces,
            NatPortMin = NatPortMin,
            NatPortMax = NatPortMax,
            Shards = shards,
            Directory = Directory,
        };
        Engines = [.. Enumerable.Range(0, shards).Select(i => new ConntrackEngine(options with { Shard = i, RandomSeed = options.RandomSeed + (ulong)i }, Clock))];
    }

    public ManualClock Clock { get; } = new() { NowNanoseconds = 1_000_000_000_000 };

    public Engine.Routing.StaticNetworkInterfaces Interfaces { get; }

    public ShardDirectory Directory { get; }

    public ConntrackEngine[] Engines { get; }

    /// <summary>Packets a shard handed over to another.</summary>
    public int Handovers { get; private set; }

    /// <summary>The shard the kernel queues a packet to (see the class summary).</summary>
    public int QueueOf(byte[] packet)
    {
        var destination = TestPackets.Destination(packet);
        byte protocol = packet[9];
        if (Interfaces.IsLocal(4, InetAddress.From(destination)) && protocol is TestPackets.ProtoTcp or TestPackets.ProtoUdp)
        {
            int owner = PortSlice.OwnerOf(TestPackets.DestinationPort(packet), NatPortMin, NatPortMax, Engines.Length);
            if (owner >= 0)
            {
                return owner;
            }
        }

        if (Interfaces.IsLocal(4, InetAddress.From(destination)) && protocol == 1 && packet[20] is 3 or 11 or 12)
        {
            // An error quoting a packet that left from a port of the range (the steering's u32 match on the quote).
            int quote = 20 + 8;
            int quotedL4 = quote + ((packet[quote] & 0x0F) * 4);
            ushort quotedSource = BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(quotedL4));
            int owner = PortSlice.OwnerOf(quotedSource, NatPortMin, NatPortMax, Engines.Length);
            if (owner >= 0)
            {
                return owner;
            }
        }

        return AddressShard(TestPackets.Source(packet).ToString(), destination.ToString());
    }

    /// <summary>The shard a symmetric hash of two IPv4 addresses picks, as <c>--queue-balance</c> does.</summary>
    public int AddressShard(string a, string b)
    {
        uint x = BinaryPrimitives.ReadUInt32BigEndian(System.Net.IPAddress.Parse(a).GetAddressBytes());
        uint y = BinaryPrimitives.ReadUInt32BigEndian(System.Net.IPAddress.Parse(b).GetAddressBytes());
        uint h = (Math.Min(x, y) * 2654435761u) ^ (Math.Max(x, y) * 40503u);
        return (int)((h ^ (h >> 15)) % (uint)Engines.Length);
    }

    /// <summary>
    /// Runs a packet as the daemon does: through the shard whose queue receives it, and through the owner when that
    /// shard hands it over. Returns the verdict, the packet as it leaves, and the shard that processed it.
    /// </summary>
    public (Verdict Verdict, byte[] Packet, int Shard, Connection? Connection) Deliver(byte[] packet, int inInterface, int outInterface)
    {
        int shard = QueueOf(packet);
        var buffer = TestPackets.WithRoom(packet, 2048);
        var ctx = new PacketContext(buffer, packet.Length, inInterface) { OutInterface = outInterface };
        var verdict = Engines[shard].Process(ref ctx);
        if (verdict == Verdict.Handover)
        {
            Handovers++;
            int arrival = shard;
            shard = ctx.OwnerShard >= 0 ? ctx.OwnerShard
                : Enumerable.Range(0, Engines.Length).Where(s => s != arrival).FirstOrDefault(s => Engines[s].TracksFlowOf(packet), arrival);
            buffer = TestPackets.WithRoom(packet, 2048);
            ctx = new PacketContext(buffer, packet.Length, inInterface) { OutInterface = outInterface, HandedOver = true };
            verdict = Engines[shard].Process(ref ctx);
        }

        return (verdict, verdict == Verdict.Accept ? ctx.Packet.ToArray() : [], shard, ctx.Connection);
    }

    public (Verdict Verdict, byte[] Packet, int Shard, Connection? Connection) Out(byte[] packet) => Deliver(packet, Lan, Wan);

    public (Verdict Verdict, byte[] Packet, int Shard, Connection? Connection) In(byte[] packet) => Deliver(packet, Wan, Lan);

    /// <summary>How many shards hold a connection with this original tuple's source address and port.</summary>
    public int Holders(Connection connection) =>
        Engines.Count(e => e.Connections.Entries().Any(c => c.Original.Equals(connection.Original)));
}
