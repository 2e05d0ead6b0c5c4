using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using System.Text.RegularExpressions;
using Offload.Alg.Ftp;
using Offload.Alg.Sip;
using Offload.Daemon.Handback;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Offload.Engine.Routing;
using Offload.Interop;
using Offload.Interop.Ctnetlink;
using Offload.Interop.Ipset;
using Offload.Rules;
using Xunit;
using static Offload.Alg.Tests.Sip.SipText;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Daemon.Tests;

/// <summary>
/// Hand-back moves an established expected connection of a chosen helper to the kernel's conntrack in an order that
/// leaves no packet untranslated: the kernel's entry (offloadd's NAT as a one-address, one-port range) is created and
/// acknowledged first, then the flow's packets from outside are let past the NAT-replies queue rules (the hand-back
/// set), then its steering entry goes. A refused create leaves the flow steered to offloadd. The control connection
/// never moves. When the kernel's entry ends (its destroy event), offloadd's goes, and with it the hand-back entry.
/// With <c>flows: all</c> the hand-back set alone lets the flow past the rules, from outside and from the LAN, once the
/// kernel's entry is there.
/// </summary>
public sealed class HandbackManagerTests
{
    // The router's address on the WAN side of this test's rig.
    private const string Outside = WanAddress2;
    private const string PassivePort = "227 Entering Passive Mode (192,0,2,80,195,80).\r\n"; // port 50000

    [Fact]
    public void An_established_passive_data_connection_is_created_in_the_kernel_before_it_leaves_the_steering()
    {
        using var rig = new Rig(afterPackets: 0);
        ushort natPort = rig.OpenPassiveData();

        Assert.Equal(
            [
                CreatedInKernel(natPort),
                $"handback add {Outside},tcp:{natPort},{Server}",
                $"steering del {Server},tcp:50000,{Client}",
            ],
            rig.Log.Skip(rig.Log.FindIndex(l => l.StartsWith("ct new", StringComparison.Ordinal))).Where(l => !l.StartsWith("steering add", StringComparison.Ordinal)));
        Assert.DoesNotContain($"{Server},tcp:50000,{Client}", rig.Sets.Present);
        Assert.Equal(1, rig.Manager.HandedBack);
        Assert.Equal(1, rig.Manager.InKernel);

        // offloadd keeps its entry (the stragglers, and the port taken) and the control connection with the helper; the
        // entry's window history is stale from now on, so its checks are relaxed.
        Assert.Equal(2, rig.Engine.Connections.Count);
        var data = rig.Engine.Connections.Entries().Single(c => c.Original.DestinationPort == 50000);
        Assert.NotEqual(TcpTrackFlags.None, data.TcpTracking.Original.Flags & TcpTrackFlags.BeLiberal);
        Assert.NotEqual(TcpTrackFlags.None, data.TcpTracking.Reply.Flags & TcpTrackFlags.BeLiberal);
        Assert.DoesNotContain(rig.Log, l => l.Contains("dport=21", StringComparison.Ordinal));
    }

    [Fact]
    public void A_connection_is_counted_from_its_establishment_and_handed_back_past_the_threshold()
    {
        using var rig = new Rig(afterPackets: 3);
        rig.OpenControl();
        rig.Announce(PassivePort);
        ushort natPort = rig.OpenData(40001); // the handshake's last ACK: one established packet
        Assert.DoesNotContain(rig.Log, l => l.StartsWith("ct new", StringComparison.Ordinal));

        rig.Data(natPort, 1);
        Assert.DoesNotContain(rig.Log, l => l.StartsWith("ct new", StringComparison.Ordinal));
        rig.Data(natPort, 2);
        Assert.Single(rig.Log, l => l.StartsWith("ct new", StringComparison.Ordinal));
    }

    [Fact]
    public void A_refused_create_leaves_the_flow_steered_to_offloadd_and_is_not_retried()
    {
        using var rig = new Rig(afterPackets: 0);
        rig.Kernel.Result = CtnlCommitResult.Failed;
        rig.OpenControl();
        rig.Announce(PassivePort);
        ushort natPort = rig.OpenData(40001);
        rig.Data(natPort, 1);

        Assert.Single(rig.Log, l => l.StartsWith("ct new", StringComparison.Ordinal));
        Assert.Contains($"{Server},tcp:50000,{Client}", rig.Sets.Present);
        Assert.DoesNotContain(rig.Log, l => l.StartsWith("handback", StringComparison.Ordinal));
        Assert.Equal(1, rig.Manager.Failed);
        Assert.Equal(0, rig.Manager.InKernel);
    }

    [Fact]
    public void The_kernels_destroy_event_removes_offloadds_entry_and_its_handback_entry()
    {
        using var rig = new Rig(afterPackets: 0);
        rig.OpenControl();
        rig.Announce(PassivePort);
        ushort natPort = rig.OpenData(40001);
        Assert.Equal(2, rig.Engine.Connections.Count);

        // Another flow's end first: it is not ours.
        rig.Kernel.Destroyed.Add(Tuple(Client, Server, 40002, 50000));
        rig.Kernel.Destroyed.Add(Tuple(Client, Server, 40001, 50000));

        Assert.True(SpinWait.SpinUntil(() => rig.Manager.Withdrawn == 1, TimeSpan.FromSeconds(5)), "the destroy event was not acted on");
        lock (rig.EngineLock)
        {
            Assert.Equal(21, Assert.Single(rig.Engine.Connections.Entries()).Original.DestinationPort);
        }

        Assert.True(rig.WaitForLog($"handback del {Outside},tcp:{natPort},{Server}"), "the hand-back entry was not deleted");
        Assert.Equal(0, rig.Manager.InKernel);
    }

    [Fact]
    public void Expected_connections_of_a_helper_not_named_stay_with_offloadd()
    {
        using var rig = new Rig(afterPackets: 0, helpers: ["tftp"]);
        rig.OpenControl();
        rig.Announce(PassivePort);
        rig.OpenData(40001);

        Assert.DoesNotContain(rig.Log, l => l.StartsWith("ct new", StringComparison.Ordinal));
        Assert.Contains($"{Server},tcp:50000,{Client}", rig.Sets.Present);
    }

    [Fact]
    public void With_flows_all_the_kernels_entry_comes_before_both_ways_past_the_rules_and_both_go_with_it()
    {
        using var rig = new Rig(afterPackets: 0, allFlows: true);
        ushort natPort = rig.OpenPassiveData();

        // From outside: the router's address, offloadd's port, the server (dst,dst,src); from the LAN: the client, its
        // port, the server (src,src,dst). Both after the kernel acknowledged its entry; no steering set to change.
        Assert.Equal(
            [
                CreatedInKernel(natPort),
                $"handback add {Outside},tcp:{natPort},{Server}",
                $"handback add {Client},tcp:40001,{Server}",
            ],
            rig.Log);
        Assert.Equal(1, rig.Manager.InKernel);

        rig.Kernel.Destroyed.Add(Tuple(Client, Server, 40001, 50000));
        Assert.True(rig.WaitForLog($"handback del {Client},tcp:40001,{Server}"), "the destroy event was not acted on");
        lock (rig.Log)
        {
            Assert.Equal([$"handback del {Outside},tcp:{natPort},{Server}", $"handback del {Client},tcp:40001,{Server}"], rig.Log.Skip(3));
        }
    }

    [Fact]
    public void With_flows_all_an_active_data_connection_is_let_past_from_outside_at_the_router_and_its_replies_from_the_lan()
    {
        using var rig = new Rig(afterPackets: 0, allFlows: true);
        rig.OpenControl();
        ushort natPort = rig.Port(40001);
        rig.OpenActiveData(natPort, 40001);

        // The server's packets arrive at the router's address and offloadd's port (dst,dst,src); the client's replies
        // from the LAN are (client, its port, server) (src,src,dst).
        Assert.Equal(
            [
                $"ct new tcp src={Server} dst={Outside} sport=20 dport={natPort} -> tcp src={Client} dst={Server} sport=40001 dport=20",
                $"handback add {Outside},tcp:{natPort},{Server}",
                $"handback add {Client},tcp:40001,{Server}",
            ],
            rig.Log);
    }

    [Fact]
    public void With_flows_all_a_data_connection_from_the_control_connections_port_stays_with_offloadd()
    {
        // Linux may give both the same source port (they go to different server ports): the data connection's entry from
        // the LAN would take the control connection's packets to the kernel, which knows nothing of them.
        using var rig = new Rig(afterPackets: 0, allFlows: true);
        rig.OpenControl();
        rig.Announce(PassivePort);
        rig.Data(rig.OpenData(40000), 1);

        Assert.Empty(rig.Log);
        Assert.Equal(1, rig.Manager.KeptShared);
        Assert.Equal(0, rig.Manager.InKernel);
        Assert.Contains("kept for a LAN port shared with their master 1", rig.Manager.Statistics(), StringComparison.Ordinal);
    }

    [Fact]
    public void With_flows_all_a_refused_create_lets_nothing_past_the_rules()
    {
        using var rig = new Rig(afterPackets: 0, allFlows: true);
        rig.Kernel.Result = CtnlCommitResult.Failed;
        rig.Data(rig.OpenPassiveData(), 1);

        Assert.Single(rig.Log, l => l.StartsWith("ct new", StringComparison.Ordinal));
        Assert.DoesNotContain(rig.Log, l => l.StartsWith("handback", StringComparison.Ordinal));
        Assert.Equal(1, rig.Manager.Failed);
    }

    [Fact]
    public void Udp_media_is_handed_back_once_answered_translated_to_the_port_its_sdp_announced()
    {
        using var rig = new Rig(afterPackets: 0, helpers: ["sip"], sip: true);
        ushort mediaPort = rig.SipCall();
        Assert.Equal(mediaPort, SourcePort(rig.Forward(UdpPacket(Client, 6000, Server, 7000, Ascii("rtp")), Lan, Wan)));
        Assert.DoesNotContain(rig.Log, l => l.StartsWith("ct new", StringComparison.Ordinal)); // not answered yet

        rig.Forward(UdpPacket(Server, 7000, Outside, mediaPort, Ascii("rtp")), Wan, Lan);
        Assert.Equal(
            [
                $"ct new udp src={Client} dst={Server} sport=6000 dport=7000 -> udp src={Server} dst={Outside} sport=7000 dport={mediaPort}",
                $"handback add {Outside},udp:{mediaPort},{Server}",
                $"steering del {Server},udp:7000,{Client}",
            ],
            rig.Log.Skip(rig.Log.FindIndex(l => l.StartsWith("ct new", StringComparison.Ordinal))));
        Assert.Equal(1, rig.Manager.InKernel);
        Assert.Contains($"{Server},udp:7001,{Client}", rig.Sets.Present); // the RTCP the phone may still send waits
    }

    [Fact]
    public void Udp_media_the_peer_opened_leaves_the_steering_with_the_expectation_of_the_phones_media_it_met()
    {
        // SIP's symmetric media: the INVITE expects the peer's RTP at the router's port, the 200 OK the phone's from its
        // port to the peer's, each steered by its own entry. When the peer's opens the flow, the phone's is its reply,
        // and that expectation, which no packet can take while the flow lives, would keep the phone's packets steered
        // to offloadd after the hand-back.
        using var rig = new Rig(afterPackets: 0, helpers: ["sip"], sip: true);
        ushort mediaPort = rig.SipCall();
        byte[] toPhone = rig.Forward(UdpPacket(Server, 7000, Outside, mediaPort, Ascii("rtp")), Wan, Lan);
        Assert.Equal((Client, (ushort)6000), (Destination(toPhone).ToString(), DestinationPort(toPhone)));
        Assert.Equal(mediaPort, SourcePort(rig.Forward(UdpPacket(Client, 6000, Server, 7000, Ascii("rtp")), Lan, Wan)));

        Assert.Contains($"ct new udp src={Server} dst={Outside} sport=7000 dport={mediaPort} -> udp src={Client} dst={Server} sport=6000 dport=7000", rig.Log);
        Assert.Contains($"handback add {Outside},udp:{mediaPort},{Server}", rig.Log);
        Assert.DoesNotContain($"{Server},udp:7000,{Client}", rig.Sets.Present);
        Assert.Contains($"{Server},udp:7001,{Client}", rig.Sets.Present);
    }

    /// <summary>The kernel's entry of the client's passive data connection from port 40001, translated to <paramref name="natPort"/>.</summary>
    private static string CreatedInKernel(ushort natPort) =>
        $"ct new tcp src={Client} dst={Server} sport=40001 dport=50000 -> tcp src={Server} dst={Outside} sport=50000 dport={natPort}";

    private static CtnlTuple Tuple(string source, string destination, ushort sourcePort, ushort destinationPort) =>
        CtnlTuple.Of(CtnlTuple.Inet, 6, IPAddress.Parse(source).GetAddressBytes(), IPAddress.Parse(destination).GetAddressBytes(), sourcePort, destinationPort);

    private static string Text(in IpsetEntry entry) => entry.ToString();

    /// <summary>An engine with MASQUERADE and the FTP helper, steering and hand-back over fakes that write into one log.</summary>
    private sealed class Rig : IDisposable
    {
        private uint _serverSeq = 5001;
        private ushort _outsidePort;

        public Rig(int afterPackets, string[]? helpers = null, bool allFlows = false, bool sip = false)
        {
            Sets = new LoggingSets(Log);
            Kernel = new FakeKernel(Log);
            Steering = allFlows ? null : new IpsetSteering(Sets, "offload4", "offload6", NullLogger.Instance);
            var interfaces = new StaticNetworkInterfaces();
            interfaces.Add("lan0", (InetAddress.From(IPAddress.Parse("192.168.1.1")), 4, 24));
            interfaces.Add("wan0", (InetAddress.From(IPAddress.Parse(Outside)), 4, 24));
            Engine = new ConntrackEngine(
                new EngineOptions
                {
                    MaxConnections = 256,
                    HashKey = 3,
                    RandomSeed = 3,
                    Interfaces = interfaces,
                    NatRules = [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }],
                    Helpers = [sip ? new HelperBinding(new SipHelper(), IpProtocol.Udp, 5060) : new HelperBinding(new FtpHelper(), IpProtocol.Tcp, 21)],
                },
                Clock);
            Manager = new HandbackManager(Steering, Steering, new SteeringConfig(), Engine, EngineLock, NullLogger.Instance, () => Kernel);
            Engine.Observer = Manager;
            Manager.Configure(new HandbackConfig(helpers ?? ["ftp"]) { AfterPackets = afterPackets });
        }

        public List<string> Log { get; } = [];

        public LoggingSets Sets { get; }

        public FakeKernel Kernel { get; }

        /// <summary>Helpers mode's steering; null with flows: all.</summary>
        public IpsetSteering? Steering { get; }

        public ConntrackEngine Engine { get; }

        public HandbackManager Manager { get; }

        public object EngineLock { get; } = new();

        public ManualClock Clock { get; } = new() { NowNanoseconds = 1_000_000_000_000 };

        public void OpenControl()
        {
            var syn = Forward(TcpPacket(Client, 40000, Server, 21, Syn, seq: 1000), Lan, Wan);
            _outsidePort = SourcePort(syn);
            Forward(TcpPacket(Server, 21, Outside, _outsidePort, Syn | Ack, seq: 5000, ack: 1001), Wan, Lan);
            Forward(TcpPacket(Client, 40000, Server, 21, Ack, seq: 1001, ack: 5001), Lan, Wan);
            Announce("220 ready\r\n");
        }

        public void Announce(string line)
        {
            Forward(TcpPacket(Server, 21, Outside, _outsidePort, Psh | Ack, seq: _serverSeq, ack: 1001, payload: Ascii(line)), Wan, Lan);
            _serverSeq += (uint)line.Length;
            Forward(TcpPacket(Client, 40000, Server, 21, Ack, seq: 1001, ack: _serverSeq), Lan, Wan);
        }

        /// <summary>The control connection, the server's 227 and the client's data connection from port 40001; returns the port it was translated to.</summary>
        public ushort OpenPassiveData()
        {
            OpenControl();
            Announce(PassivePort);
            return OpenData(40001);
        }

        /// <summary>The client's PORT command for one of its ports; returns the port offloadd placed it at on the router.</summary>
        public ushort Port(ushort clientPort)
        {
            // The helper reads a command at the start of a line it saw begin (as the kernel's does): one line first.
            const string User = "USER ftp\r\n";
            Forward(TcpPacket(Client, 40000, Server, 21, Psh | Ack, seq: 1001, ack: _serverSeq, payload: Ascii(User)), Lan, Wan);
            string command = $"PORT 192,168,1,10,{clientPort >> 8},{clientPort & 0xff}\r\n";
            string sent = PayloadText(Forward(TcpPacket(Client, 40000, Server, 21, Psh | Ack, seq: 1001 + (uint)User.Length, ack: _serverSeq, payload: Ascii(command)), Lan, Wan));
            Assert.StartsWith("PORT 198,51,100,1,", sent, StringComparison.Ordinal);
            string[] fields = sent.TrimEnd().Split(',');
            return (ushort)((int.Parse(fields[4], System.Globalization.CultureInfo.InvariantCulture) << 8) | int.Parse(fields[5], System.Globalization.CultureInfo.InvariantCulture));
        }

        /// <summary>The server's active data connection from port 20 to where the PORT command was placed, its handshake done.</summary>
        public void OpenActiveData(ushort natPort, ushort clientPort)
        {
            Forward(TcpPacket(Server, 20, Outside, natPort, Syn, seq: 9000), Wan, Lan);
            Forward(TcpPacket(Client, clientPort, Server, 20, Syn | Ack, seq: 7000, ack: 9001), Lan, Wan);
            Forward(TcpPacket(Server, 20, Outside, natPort, Ack, seq: 9001, ack: 7001), Wan, Lan);
        }

        /// <summary>The client's passive data connection, its handshake done; returns the port it was translated to.</summary>
        public ushort OpenData(ushort clientPort)
        {
            ushort natPort = SourcePort(Forward(TcpPacket(Client, clientPort, Server, 50000, Syn, seq: 7000), Lan, Wan));
            Forward(TcpPacket(Server, 50000, Outside, natPort, Syn | Ack, seq: 9000, ack: 7001), Wan, Lan);
            Forward(TcpPacket(Client, clientPort, Server, 50000, Ack, seq: 7001, ack: 9001), Lan, Wan);
            return natPort;
        }

        /// <summary>A call from the phone's port 5060 with media at its port 6000, answered with the peer's media at 7000; returns the router's port the forwarded INVITE announced.</summary>
        public ushort SipCall()
        {
            string invite = PayloadText(Forward(UdpPacket(Client, 5060, Server, 5060, Ascii(Invite(Client, 5060, Server, Sdp(Client, 6000)))), Lan, Wan));
            ushort signalling = ushort.Parse(Regex.Match(invite, $@"Via: SIP/2.0/UDP {Outside}:(\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            Forward(UdpPacket(Server, 5060, Outside, signalling, Ascii(Ok(Header(invite, "Via"), Outside, signalling, Server, Sdp(Server, 7000)))), Wan, Lan);
            return ushort.Parse(Regex.Match(invite, @"m=audio (\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        }

        /// <summary>A data segment from the server (the n-th of 1000 bytes).</summary>
        public void Data(ushort natPort, int n) =>
            Forward(TcpPacket(Server, 50000, Outside, natPort, Ack, seq: 9001 + (uint)((n - 1) * 1000), ack: 7001, payload: new byte[1000]), Wan, Lan);

        /// <summary>One packet as a burst of its own, as a queue worker runs it: the engine and hand-back's count under the lock, then the flushes.</summary>
        public byte[] Forward(byte[] packet, int inInterface, int outInterface)
        {
            byte[] output;
            lock (EngineLock)
            {
                var buffer = WithRoom(packet, 256);
                var ctx = new PacketContext(buffer, packet.Length, inInterface) { OutInterface = outInterface };
                Assert.Equal(Verdict.Accept, Engine.Process(ref ctx));
                Manager.Saw(ref ctx);
                output = ctx.Packet.ToArray();
            }

            Manager.Flush();
            Steering?.Flush();
            return output;
        }

        /// <summary>Waits for a line the events thread writes (the log is read under its lock, as the fakes write it).</summary>
        public bool WaitForLog(string line) => SpinWait.SpinUntil(
            () =>
            {
                lock (Log)
                {
                    return Log.Contains(line);
                }
            },
            TimeSpan.FromSeconds(5));

        public void Dispose() => Manager.Dispose();
    }

    /// <summary>The steering sets, writing what reaches them into the shared log.</summary>
    private sealed class LoggingSets(List<string> log) : ISteeringSets
    {
        /// <summary>The entries in the sets now.</summary>
        public HashSet<string> Present { get; } = [];

        public void Apply(ReadOnlySpan<IpsetOperation> operations, Span<Errno> results)
        {
            for (int i = 0; i < operations.Length; i++)
            {
                bool add = operations[i].Kind == IpsetOperationKind.Add;
                lock (log)
                {
                    log.Add($"steering {(add ? "add" : "del")} {Text(operations[i].Entry)}");
                    _ = add ? Present.Add(Text(operations[i].Entry)) : Present.Remove(Text(operations[i].Entry));
                }

                results[i] = Errno.None;
            }
        }

        public void Flush(string set)
        {
        }

        public void Recreate(string set, byte family)
        {
        }

        public void Swap(string set, string set2)
        {
        }

        public void Destroy(string set)
        {
        }

        public void Dispose()
        {
        }
    }

    /// <summary>The kernel: ctnetlink and the hand-back sets write into the shared log; destroy events are queued by the test.</summary>
    private sealed class FakeKernel(List<string> log) : IHandbackKernel
    {
        public CtnlCommitResult Result { get; set; } = CtnlCommitResult.Created;

        public BlockingCollection<CtnlTuple> Destroyed { get; } = [];

        public CtnlCommitResult Commit(in CtnlEntry entry, out Errno error)
        {
            lock (log)
            {
                log.Add($"ct new {entry.Original} -> {entry.Reply}");
            }

            error = Result == CtnlCommitResult.Failed ? Errno.EINVAL : Errno.None;
            return Result;
        }

        public Errno Delete(in CtnlTuple original) => Errno.None;

        public Errno Get(in CtnlTuple original) => Errno.None;

        public void Apply(ReadOnlySpan<IpsetOperation> operations, Span<Errno> results)
        {
            for (int i = 0; i < operations.Length; i++)
            {
                lock (log)
                {
                    log.Add($"handback {(operations[i].Kind == IpsetOperationKind.Add ? "add" : "del")} {Text(operations[i].Entry)}");
                }

                results[i] = Errno.None;
            }
        }

        public void Flush(string set)
        {
        }

        public int ReceiveDestroyed(Span<CtnlTuple> destroyed)
        {
            if (!Destroyed.TryTake(out CtnlTuple tuple, 50))
            {
                return 0;
            }

            destroyed[0] = tuple;
            return 1;
        }

        public void Dispose()
        {
        }
    }
}
