using Microsoft.Extensions.Logging.Abstractions;
using Offload.Alg.Ftp;
using Offload.Engine;
using Offload.Engine.Conntrack;
using Offload.Engine.Helpers;
using Offload.Engine.Nat;
using Offload.Engine.Packets;
using Offload.Engine.Routing;
using Offload.Interop;
using Offload.Interop.Ipset;
using Xunit;
using static Offload.Sdk.Testing.RouterRig;
using static Offload.Sdk.Testing.TestPackets;

namespace Offload.Daemon.Tests;

/// <summary>
/// Helpers mode steers an expected connection by an ipset entry (destination, port, source), as the kernel lets an
/// expectation admit one connection and the connection then live on its own: the entry appears with the expectation,
/// stays while the connection it admitted lives, and is gone once both are, so that no later, unrelated connection of
/// the same addresses and port is steered by it. An entry only an expectation needs carries the expectation's
/// timeout (the kernel removes it even if the daemon never does); a failed delete is retried. Stopping leaves the
/// entries (the flows they steer wait for the next start instead of reaching the kernel untranslated), and starting
/// swaps in what the table needs in one step, never through an empty set.
/// </summary>
public sealed class IpsetSteeringTests
{
    // The router's address on the WAN side of this test's rig.
    private const string Outside = WanAddress2;

    private static readonly string PassivePort = "227 Entering Passive Mode (192,0,2,80,195,80).\r\n"; // port 50000

    [Fact]
    public void The_entry_of_an_expected_connection_lives_as_long_as_the_expectation_and_then_the_connection_and_no_longer()
    {
        var rig = new Rig();
        rig.OpenControl();

        rig.Announce(PassivePort);
        var entry = Assert.Single(rig.Sets.Contents);
        Assert.Equal(("offload4", $"{Server},tcp:50000,{Client}"), (entry.Set, entry.Text));
        Assert.Equal((uint)(FtpHelper.DefaultPolicy.Timeout + IpsetSteering.ExpectationGrace).TotalSeconds, entry.Timeout);

        // The client's data connection takes the expectation: the entry stays, now without a timeout.
        rig.Forward(TcpPacket(Client, 40001, Server, 50000, Syn, seq: 7000), Lan, Wan);
        entry = Assert.Single(rig.Sets.Contents);
        Assert.Equal(0u, entry.Timeout);
        Assert.Equal(1, rig.Steering.Steered);
        Assert.Empty(rig.Engine.Expectations.Entries());

        // The data connection times out: nothing is left to steer a later connection to that port.
        rig.Clock.Advance(TimeSpan.FromMinutes(3));
        rig.CollectGarbage(4096);
        Assert.Empty(rig.Sets.Contents);
        Assert.Equal(0, rig.Steering.Steered);
        Assert.Equal(0, rig.Steering.Entries);
        Assert.Equal(0, rig.Steering.Failed);
    }

    [Fact]
    public void A_pptp_calls_gre_is_steered_by_its_addresses_with_port_0_as_ipset_sees_gre()
    {
        var tuple = new ConnTuple(4, IpProtocol.Gre, InetAddress.From(System.Net.IPAddress.Parse(Server)), 0x2222, InetAddress.From(System.Net.IPAddress.Parse(Outside)), 0x7777);
        var key = IpsetSteering.EntryKey.Of(tuple);
        Assert.Equal((IpProtocol.Gre, (ushort)0), (key.Protocol, key.Port));
        Assert.Equal(key, IpsetSteering.EntryKey.Of(tuple with { SourcePort = 1, DestinationPort = 2 })); // one entry for every call between them
    }

    [Fact]
    public void An_expectation_that_lapses_unused_takes_its_entry_with_it()
    {
        var rig = new Rig();
        rig.OpenControl();
        rig.Announce(PassivePort);
        Assert.Single(rig.Sets.Contents);

        rig.Clock.Advance(FtpHelper.DefaultPolicy.Timeout + TimeSpan.FromSeconds(1));
        rig.CollectGarbage(rig.Engine.Expectations.BucketCount); // one sweep of the expectations

        Assert.Empty(rig.Sets.Contents);
        Assert.Equal(0, rig.Steering.Entries);
    }

    [Fact]
    public void When_the_control_connection_dies_its_outstanding_expectation_and_entry_go_with_it()
    {
        var rig = new Rig();
        var control = rig.OpenControl();
        rig.Announce(PassivePort);

        rig.Destroy(control);

        Assert.Empty(rig.Sets.Contents);
    }

    [Fact]
    public void A_delete_the_kernel_refused_is_retried_on_the_next_event_and_the_entry_does_not_stay()
    {
        var rig = new Rig();
        rig.OpenControl();
        rig.Announce(PassivePort);
        rig.Sets.FailNextDeletes = 1;

        rig.Clock.Advance(FtpHelper.DefaultPolicy.Timeout + TimeSpan.FromSeconds(1));
        rig.CollectGarbage(rig.Engine.Expectations.BucketCount); // one sweep of the expectations
        Assert.Single(rig.Sets.Contents);
        Assert.Equal(1, rig.Steering.Entries);

        // The next batch (here an announcement's) first retries the delete.
        rig.Announce("227 Entering Passive Mode (192,0,2,80,195,81).\r\n");
        Assert.Equal([$"{Server},tcp:50001,{Client}"], rig.Sets.Contents.Select(c => c.Text));
        Assert.Equal(1, rig.Steering.Entries);
    }

    [Fact]
    public void An_entry_two_flows_need_stays_until_the_last_is_gone()
    {
        var rig = new Rig();
        var control = rig.OpenControl();
        rig.Announce(PassivePort);
        rig.Forward(TcpPacket(Client, 40001, Server, 50000, Syn, seq: 7000), Lan, Wan);

        // The server announces the same port again; the next data connection takes it too.
        rig.Announce(PassivePort);
        rig.Forward(TcpPacket(Client, 40002, Server, 50000, Syn, seq: 8000), Lan, Wan);
        Assert.Single(rig.Sets.Contents);
        Assert.Equal(2, rig.Steering.Steered);

        var first = rig.Engine.Connections.Entries().Single(c => c.Original.SourcePort == 40001);
        rig.Destroy(first);
        Assert.Single(rig.Sets.Contents);

        var second = rig.Engine.Connections.Entries().Single(c => c.Original.SourcePort == 40002);
        rig.Destroy(second);
        rig.Destroy(control);
        Assert.Empty(rig.Sets.Contents);
    }

    [Fact]
    public void Sets_made_without_timeout_support_still_get_their_entries()
    {
        var rig = new Rig(timeouts: false);
        rig.OpenControl();

        rig.Announce(PassivePort);

        var entry = Assert.Single(rig.Sets.Contents);
        Assert.Null(entry.Timeout);
        Assert.Equal(0, rig.Steering.Failed);
    }

    [Fact]
    public void The_updates_of_a_burst_leave_together_as_one_batch_when_the_burst_is_done()
    {
        var rig = new Rig();
        rig.OpenControl();
        int batchesBefore = rig.Sets.Batches.Count;

        // One burst: the announcement (the entry with the expectation's timeout), the client's data connection (the
        // expectation goes, the connection keeps the entry: a delete and an add without timeout, in that order) and a
        // second announcement.
        rig.Announce(PassivePort, inBurst: true);
        rig.ForwardInBurst(TcpPacket(Client, 40001, Server, 50000, Syn, seq: 7000), Lan, Wan);
        rig.Announce("227 Entering Passive Mode (192,0,2,80,195,81).\r\n", inBurst: true);
        Assert.Empty(rig.Sets.Contents);
        Assert.Equal(batchesBefore, rig.Sets.Batches.Count);
        Assert.Equal(4, rig.Steering.Unsent);

        rig.Steering.Flush();

        Assert.Equal([4], rig.Sets.Batches.Skip(batchesBefore));
        Assert.Equal(0, rig.Steering.Unsent);
        Assert.Equal(
            [($"{Server},tcp:50000,{Client}", (uint?)0), ($"{Server},tcp:50001,{Client}", (uint?)(FtpHelper.DefaultPolicy.Timeout + IpsetSteering.ExpectationGrace).TotalSeconds)],
            rig.Sets.Contents.Select(c => (c.Text, c.Timeout)).OrderBy(c => c.Text));
        Assert.Equal(2, rig.Steering.Entries);
        Assert.Equal(1, rig.Steering.Steered);
    }

    [Fact]
    public void An_add_the_kernel_refused_steers_nothing_and_leaves_nothing_to_delete()
    {
        var rig = new Rig();
        rig.OpenControl();
        rig.Sets.FailNextAdds = 1;

        rig.Announce(PassivePort);
        rig.Forward(TcpPacket(Client, 40001, Server, 50000, Syn, seq: 7000), Lan, Wan);

        // The refused add is counted; the data connection's own add then went through and is the entry's only user.
        Assert.Equal(1, rig.Steering.Failed);
        var entry = Assert.Single(rig.Sets.Contents);
        Assert.Equal(0u, entry.Timeout);
        Assert.Equal(1, rig.Steering.Steered);
        rig.Destroy(rig.Engine.Connections.Entries().Single(c => c.Original.DestinationPort == 50000));
        Assert.Empty(rig.Sets.Contents);
        Assert.Equal(0, rig.Steering.Entries);
    }

    [Fact]
    public void Stopping_leaves_the_entries_in_the_sets_so_that_their_flows_wait_for_the_next_start()
    {
        var rig = new Rig();
        rig.OpenControl();
        rig.Announce(PassivePort);

        rig.Steering.Dispose();

        Assert.Single(rig.Sets.Contents);
        Assert.Empty(rig.Sets.Flushed);
        Assert.True(rig.Sets.Disposed);
    }

    [Fact]
    public void Starting_swaps_in_what_the_table_needs_in_one_step_and_drops_what_an_earlier_run_left()
    {
        var (before, sets, expected) = SetsLeftByAnEarlierRun();
        var steering = new IpsetSteering(sets, "offload4", "offload6", NullLogger.Instance);
        Assert.Equal(2, sets.Contents.Count(c => c.Set == "offload4"));

        steering.Reconcile(before.Engine);

        Assert.Equal([("offload4", expected)], sets.Contents.Select(c => (c.Set, c.Text)));
        Assert.Empty(sets.Flushed);
        Assert.Equal(["swap offload4 offload4-n", "swap offload6 offload6-n"], sets.Swaps);
        Assert.Equal(["offload4-n", "offload6-n"], sets.Destroyed);
    }

    [Fact]
    public void Starting_without_scratch_sets_flushes_and_refills_and_says_so()
    {
        var (before, sets, expected) = SetsLeftByAnEarlierRun();
        sets.RefuseCreate = true;
        var steering = new IpsetSteering(sets, "offload4", "offload6", NullLogger.Instance);

        steering.Reconcile(before.Engine);

        Assert.Equal([("offload4", expected)], sets.Contents.Select(c => (c.Set, c.Text)));
        Assert.Equal(["offload4", "offload6"], sets.Flushed);
        Assert.Empty(sets.Swaps);
    }

    [Fact]
    public void Starting_over_sets_that_refuse_the_swap_flushes_and_refills_and_leaves_no_scratch_set()
    {
        var (before, sets, expected) = SetsLeftByAnEarlierRun();
        sets.RefuseSwap = true;
        var steering = new IpsetSteering(sets, "offload4", "offload6", NullLogger.Instance);

        steering.Reconcile(before.Engine);

        Assert.Equal([("offload4", expected)], sets.Contents.Select(c => (c.Set, c.Text)));
        Assert.Equal(["offload4", "offload6"], sets.Flushed);
        Assert.Contains("offload4-n", sets.Destroyed);
        Assert.Contains("offload6-n", sets.Destroyed);
        Assert.Equal(1, steering.Entries);
    }

    /// <summary>
    /// What a later run of the daemon finds: the sets of a run whose table (as restored) needs one entry (its text is
    /// <c>Expected</c>), beside which they hold one of a flow that ended while the daemon was down.
    /// </summary>
    private static (Rig Before, FakeSets Sets, string Expected) SetsLeftByAnEarlierRun()
    {
        var before = new Rig();
        before.OpenControl();
        before.Announce(PassivePort);
        string expected = Assert.Single(before.Sets.Contents).Text;
        before.Sets.Put("offload4", "192.0.2.80,tcp:50001,192.168.1.99");
        before.Sets.Reopen();
        return (before, before.Sets, expected);
    }

    /// <summary>An engine with MASQUERADE and the FTP helper, observed by the steering under test over a fake pair of sets.</summary>
    private sealed class Rig
    {
        public Rig(bool timeouts = true)
        {
            Sets = new FakeSets(timeouts);
            Steering = new IpsetSteering(Sets, "offload4", "offload6", NullLogger.Instance);
            var interfaces = new StaticNetworkInterfaces();
            interfaces.Add("lan0", (InetAddress.From(System.Net.IPAddress.Parse("192.168.1.1")), 4, 24));
            interfaces.Add("wan0", (InetAddress.From(System.Net.IPAddress.Parse(Outside)), 4, 24));
            Engine = new ConntrackEngine(
                new EngineOptions
                {
                    MaxConnections = 256,
                    HashKey = 3,
                    RandomSeed = 3,
                    Interfaces = interfaces,
                    NatRules = [new NatRule { Action = NatAction.Masquerade, OutInterface = Wan }],
                    Helpers = [new HelperBinding(new FtpHelper(), IpProtocol.Tcp, 21)],
                    Observer = Steering,
                },
                Clock);
        }

        public FakeSets Sets { get; }

        public IpsetSteering Steering { get; }

        public ConntrackEngine Engine { get; }

        public ManualClock Clock { get; } = new() { NowNanoseconds = 1_000_000_000_000 };

        private uint _serverSeq = 5001;

        public ushort OutsidePort { get; private set; }

        /// <summary>Client to server port 21, masqueraded, handshake done.</summary>
        public Connection OpenControl()
        {
            var syn = Forward(TcpPacket(Client, 40000, Server, 21, Syn, seq: 1000), Lan, Wan);
            OutsidePort = SourcePort(syn);
            Forward(TcpPacket(Server, 21, Outside, OutsidePort, Syn | Ack, seq: 5000, ack: 1001), Wan, Lan);
            Forward(TcpPacket(Client, 40000, Server, 21, Ack, seq: 1001, ack: 5001), Lan, Wan);
            Announce("220 ready\r\n");
            return Engine.Connections.Entries().Single(c => c.Original.DestinationPort == 21);
        }

        /// <summary>A line from the server on the control connection (the helper reads lines that start after a newline).</summary>
        public void Announce(string line, bool inBurst = false)
        {
            ForwardInBurst(TcpPacket(Server, 21, Outside, OutsidePort, Psh | Ack, seq: _serverSeq, ack: 1001, payload: Ascii(line)), Wan, Lan);
            _serverSeq += (uint)line.Length;

            // Acknowledged, or the control connection would time out as unacknowledged (5 minutes) in the tests that wait.
            ForwardInBurst(TcpPacket(Client, 40000, Server, 21, Ack, seq: 1001, ack: _serverSeq), Lan, Wan);
            if (!inBurst)
            {
                Steering.Flush();
            }
        }

        /// <summary>One packet as a burst of its own: the engine, then the steering's batch (as a queue worker does).</summary>
        public byte[] Forward(byte[] packet, int inInterface, int outInterface)
        {
            var output = ForwardInBurst(packet, inInterface, outInterface);
            Steering.Flush();
            return output;
        }

        /// <summary>One packet of a burst still going on: nothing is sent to the sets yet.</summary>
        public byte[] ForwardInBurst(byte[] packet, int inInterface, int outInterface)
        {
            var buffer = WithRoom(packet, 256);
            var ctx = new PacketContext(buffer, packet.Length, inInterface) { OutInterface = outInterface };
            Assert.Equal(Verdict.Accept, Engine.Process(ref ctx));
            return ctx.Packet.ToArray();
        }

        public void Destroy(Connection connection)
        {
            Engine.Destroy(connection);
            Steering.Flush();
        }

        public void CollectGarbage(int budget)
        {
            Engine.CollectGarbage(budget);
            Steering.Flush();
        }
    }

    /// <summary>A pair of sets as the kernel keeps them: entries with their timeouts, deletes of absent entries accepted.</summary>
    private sealed class FakeSets(bool timeouts) : ISteeringSets
    {
        private readonly Dictionary<(string Set, IpsetEntry Entry), uint?> _contents = [];

        public int FailNextDeletes { get; set; }

        public int FailNextAdds { get; set; }

        public List<string> Flushed { get; } = [];

        public bool Disposed { get; private set; }

        public IEnumerable<(string Set, string Text, uint? Timeout)> Contents =>
            _contents.Select(c => (c.Key.Set, Text(c.Key.Entry), c.Value));

        /// <summary>How many operations each batch held, in the order the batches came.</summary>
        public List<int> Batches { get; } = [];

        public void Apply(ReadOnlySpan<IpsetOperation> operations, Span<Errno> results)
        {
            Batches.Add(operations.Length);
            for (int i = 0; i < operations.Length; i++)
            {
                results[i] = Apply(operations[i]);
            }
        }

        private Errno Apply(in IpsetOperation operation)
        {
            if (operation.Kind == IpsetOperationKind.Add)
            {
                if (!timeouts && operation.TimeoutSeconds is not null)
                {
                    return IpsetErrors.Timeout;
                }

                if (FailNextAdds > 0)
                {
                    FailNextAdds--;
                    return Errno.ENOMEM;
                }

                _contents[(operation.SetName, operation.Entry)] = operation.TimeoutSeconds;
                return Errno.None;
            }

            if (FailNextDeletes > 0)
            {
                FailNextDeletes--;
                return Errno.ENOBUFS;
            }

            _contents.Remove((operation.SetName, operation.Entry));
            return Errno.None;
        }

        public void Flush(string set)
        {
            Flushed.Add(set);
            foreach (var key in _contents.Keys.Where(k => k.Set == set).ToList())
            {
                _contents.Remove(key);
            }
        }

        public List<string> Swaps { get; } = [];

        public List<string> Destroyed { get; } = [];

        public bool RefuseCreate { get; set; }

        /// <summary>An entry put there by someone else (an earlier run), from its text.</summary>
        public void Put(string set, string text)
        {
            string[] f = text.Split(',', ':');
            var address = InetAddress.From(System.Net.IPAddress.Parse(f[0]));
            var address2 = InetAddress.From(System.Net.IPAddress.Parse(f[3]));
            Span<byte> a = stackalloc byte[4];
            Span<byte> b = stackalloc byte[4];
            address.Write(4, a);
            address2.Write(4, b);
            _contents[(set, new IpsetEntry(IpsetFamily.IPv4, f[1] == "tcp" ? (byte)6 : (byte)17, a, ushort.Parse(f[2], System.Globalization.CultureInfo.InvariantCulture), b))] = 0;
        }

        /// <summary>Usable by the next run's steering, as the kernel's sets are.</summary>
        public void Reopen() => Disposed = false;

        public void Recreate(string set, byte family)
        {
            if (RefuseCreate)
            {
                throw new NetlinkException(Errno.EEXIST, $"create ipset {set}");
            }

            Destroy(set);
            Destroyed.Remove(set);
        }

        public bool RefuseSwap { get; set; }

        public void Swap(string set, string set2)
        {
            if (RefuseSwap)
            {
                throw new NetlinkException(IpsetErrors.TypeMismatch, $"swap ipsets {set} and {set2}");
            }

            Swaps.Add($"swap {set} {set2}");
            var one = _contents.Where(c => c.Key.Set == set).ToList();
            var two = _contents.Where(c => c.Key.Set == set2).ToList();
            foreach (var c in one.Concat(two))
            {
                _contents.Remove(c.Key);
            }

            foreach (var c in one)
            {
                _contents[(set2, c.Key.Entry)] = c.Value;
            }

            foreach (var c in two)
            {
                _contents[(set, c.Key.Entry)] = c.Value;
            }
        }

        public void Destroy(string set)
        {
            Destroyed.Add(set);
            foreach (var key in _contents.Keys.Where(k => k.Set == set).ToList())
            {
                _contents.Remove(key);
            }
        }

        public void Dispose() => Disposed = true;

        private static string Text(IpsetEntry e) =>
            $"{e.Address.ToString(e.Family)},{(e.Protocol == 6 ? "tcp" : "udp")}:{e.Port},{e.Address2.ToString(e.Family)}";
    }
}
