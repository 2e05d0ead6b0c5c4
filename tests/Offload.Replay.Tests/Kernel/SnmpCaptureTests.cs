using System.Buffers.Binary;
using Offload.Engine;
using Offload.Engine.Packets;
using Offload.Replay.Compare;
using Offload.Rules;
using Xunit;

namespace Offload.Replay.Tests.Kernel;

/// <summary>
/// SNMP and NetBIOS-NS recorded through the kernel's own helpers (nf_nat_snmp_basic, nf_conntrack_netbios_ns:
/// tests/data/snmp) and replayed through our engine with ours: where the kernel translates (a v2c trap, a set request
/// naming the manager) every packet that leaves equals the kernel's byte for byte; where we differ by design, we
/// differ only there: the v1 trap the kernel drops leaves translated, the forwarded agent's own address in its walk
/// answer becomes the router's, and the answer to a forwarded broadcast name query reaches the querier.
/// </summary>
public sealed class SnmpCaptureTests
{
    private static readonly byte[] Client = [192, 0, 2, 2];
    private static readonly byte[] Router = [198, 51, 100, 1];

    // The two as IpAddress values: [APPLICATION 0], length 4.
    private static readonly byte[] ClientValue = [0x40, 0x04, .. Client];
    private static readonly byte[] RouterValue = [0x40, 0x04, .. Router];

    private static ReplaySession Session() =>
        ReplaySession.Create(ConfigLoader.LoadFile(Path.Combine(RepoPaths.Root, "tests", "data", "snmp", "router.yaml")));

    private static string PathOf(string name) => Path.Combine(RepoPaths.Root, "tests", "data", "snmp", "kernel", name + ".pcapng");

    /// <summary>What we send and what the kernel sent, for one capture.</summary>
    private static (List<SentPacket> Ours, List<SentPacket> Kernel, ReplaySession Session) Replay(string name)
    {
        var session = Session();
        var ours = new List<SentPacket>();
        using (var input = File.OpenRead(PathOf(name)))
        {
            session.Run(input, null, ours);
        }

        using var kernel = File.OpenRead(PathOf(name));
        return (ours, session.KernelSent(kernel), session);
    }

    private static byte[] UdpPayload(byte[] packet) => packet[((packet[0] & 0x0f) * 4 + 8)..];

    private static void AssertValid(byte[] packet)
    {
        var info = PacketParser.Parse(packet);
        Assert.True(info.IsValid && PacketParser.IPv4HeaderChecksumIsValid(packet) && PacketParser.TransportChecksumIsValid(packet, info));
    }

    [Theory]
    [InlineData("v2c-trap")]
    [InlineData("get-set")]
    public void Where_the_kernel_translates_every_packet_leaves_as_the_kernels(string name)
    {
        var session = Session();
        using var input = File.OpenRead(PathOf(name));
        using var kernel = File.OpenRead(PathOf(name));
        var comparison = session.Compare(input, kernel);
        var report = new StringWriter();
        comparison.Write(report);
        Assert.True(comparison.IsEqual, $"{name}:\n{report}");
        Assert.Equal(0, session.Engine[EngineCounter.PacketsDropped]);

        // And the kernel did translate: the sender's address left no IpAddress value on the WAN.
        var (_, sent, _) = Replay(name);
        Assert.Contains(sent, p => p.Interface == "wan0" && UdpPayload(p.Packet).AsSpan().IndexOf(RouterValue) >= 0);
        Assert.DoesNotContain(sent, p => p.Interface == "wan0" && UdpPayload(p.Packet).AsSpan().IndexOf(ClientValue) >= 0);
    }

    [Fact]
    public void The_v1_trap_the_kernel_drops_leaves_with_its_agent_addr_and_binding_translated()
    {
        var (ours, kernel, _) = Replay("v1-trap");
        Assert.DoesNotContain(kernel, p => p.Interface == "wan0");
        var trap = Assert.Single(ours, p => p.Interface == "wan0").Packet;
        AssertValid(trap);
        byte[] payload = UdpPayload(trap);
        Assert.Equal(-1, payload.AsSpan().IndexOf(Client.AsSpan()));
        Assert.Equal(2, Occurrences(payload, RouterValue)); // agent-addr and the binding
        Assert.Equal((ushort)162, BinaryPrimitives.ReadUInt16BigEndian(trap.AsSpan((trap[0] & 0x0f) * 4 + 2)));
    }

    [Fact]
    public void The_forwarded_agents_walk_answer_differs_from_the_kernels_only_by_its_own_address()
    {
        var (ours, kernel, _) = Replay("walk-forwarded");
        var ourWan = ours.Where(p => p.Interface == "wan0").Select(p => p.Packet).ToList();
        var kernelWan = kernel.Where(p => p.Interface == "wan0").Select(p => p.Packet).ToList();
        Assert.Equal(kernelWan.Count, ourWan.Count);
        int translated = 0;
        for (int i = 0; i < ourWan.Count; i++)
        {
            AssertValid(ourWan[i]);
            byte[] expected = UdpPayload(kernelWan[i]);
            translated += Replace(expected, ClientValue, RouterValue);
            Assert.Equal(expected, UdpPayload(ourWan[i]));
            Assert.Equal(kernelWan[i][..20].Where((_, at) => at is not (10 or 11)), ourWan[i][..20].Where((_, at) => at is not (10 or 11)));
        }

        Assert.Equal(1, translated); // ipAdEntAddr.192.0.2.2 = 192.0.2.2, as the kernel let it out
    }

    [Fact]
    public void The_answer_to_a_forwarded_broadcast_name_query_reaches_the_querier_where_the_kernel_refused_it()
    {
        var (ours, kernel, session) = Replay("nbns-broadcast");
        var query = Assert.Single(kernel, p => p.Interface == "wan0" && p.Packet[9] == 17).Packet;
        Assert.Equal(query, Assert.Single(ours, p => p.Interface == "wan0").Packet); // the query left as the kernel's
        Assert.DoesNotContain(kernel, p => p.Interface == "lan0");

        var answer = Assert.Single(ours, p => p.Interface == "lan0").Packet;
        AssertValid(answer);
        Assert.Equal(Client, answer[16..20]);
        Assert.Equal(BinaryPrimitives.ReadUInt16BigEndian(query.AsSpan(20)), BinaryPrimitives.ReadUInt16BigEndian(answer.AsSpan(22))); // the querier's port
        Assert.Equal(1, session.Engine[EngineCounter.ConnectionsExpected]);
    }

    private static int Occurrences(byte[] data, byte[] needle)
    {
        int count = 0;
        for (int at = 0; (at = data.AsSpan(at).IndexOf(needle) is int next and >= 0 ? at + next : -1) >= 0; at += needle.Length)
        {
            count++;
        }

        return count;
    }

    private static int Replace(byte[] data, byte[] needle, byte[] replacement)
    {
        int count = 0;
        for (int at = data.AsSpan().IndexOf(needle); at >= 0; at = data.AsSpan(at + 1).IndexOf(needle) is int next and >= 0 ? at + 1 + next : -1)
        {
            replacement.CopyTo(data, at);
            count++;
        }

        return count;
    }
}
