using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Offload.Interop.Ipset;
using Offload.Interop.Tests.Support;
using Xunit;

namespace Offload.Interop.Tests.Ipset;

/// <summary>A test that needs root, the namespace lab and the ipset tool (to read back what we did, independently).</summary>
public sealed class IpsetLabFactAttribute : FactAttribute
{
    public IpsetLabFactAttribute()
    {
        Skip = Lab.WhyUnavailable() ?? (Shell.Which("ipset") is null ? "Needs the 'ipset' tool (Debian package ipset, listed in tests/lab/packages.txt)." : null);
    }
}

/// <summary>
/// IpsetClient against the real kernel, in the namespace lab (sets belong to a network namespace, so nothing
/// here touches the host's). The ipset tool reads back what we did; iptables proves that packets see it.
/// </summary>
[Collection("kernel")]
public sealed partial class IpsetKernelTests
{
    private const string Set = "offl-flows";
    private static readonly byte[] A = Lab.AddressA.GetAddressBytes();
    private static readonly byte[] B = Lab.AddressB.GetAddressBytes();

    [IpsetLabFact]
    public void Open_finds_the_kernel_speaking_protocol_7()
    {
        using Lab lab = Lab.Create();
        using IpsetClient client = Lab.In(lab.A, IpsetClient.Open);
        Assert.Equal(7, client.Protocol);
    }

    [IpsetLabFact]
    public void Create_is_idempotent_refuses_another_set_of_the_same_name_and_destroy_forgives_a_missing_set()
    {
        using Lab lab = Lab.Create();
        using IpsetClient client = Lab.In(lab.A, IpsetClient.Open);

        client.Create(Set, IpsetType.HashIpPortIp, IpsetFamily.IPv4, 60, 1024);
        client.Create(Set, IpsetType.HashIpPortIp, IpsetFamily.IPv4, 60, 1024);

        string header = Lab.Exec(lab.A, "ipset", "list", "-t", Set);
        Assert.Contains("Type: hash:ip,port,ip", header, StringComparison.Ordinal);
        Assert.Matches(@"Header: family inet hashsize \d+ maxelem 1024 timeout 60", header);

        Assert.Equal(Errno.EEXIST, Assert.Throws<NetlinkException>(() => client.Create(Set, IpsetType.HashIpPort, IpsetFamily.IPv4, 60, 1024)).Errno);
        Assert.Equal(Errno.EEXIST, Assert.Throws<NetlinkException>(() => client.Create(Set, IpsetType.HashIpPortIp, IpsetFamily.IPv4, 60, 2048)).Errno);
        Assert.Equal(Errno.EEXIST, Assert.Throws<NetlinkException>(() => client.Create(Set, IpsetType.HashIpPortIp, IpsetFamily.IPv4, null, 1024)).Errno);

        client.Create("offl-ports", IpsetType.HashIpPort, IpsetFamily.IPv6, null, 65536);
        string ports = Lab.Exec(lab.A, "ipset", "list", "-t", "offl-ports");
        Assert.Contains("Type: hash:ip,port", ports, StringComparison.Ordinal);
        Assert.Matches(@"Header: family inet6 hashsize \d+ maxelem 65536", ports);

        client.Destroy(Set);
        client.Destroy(Set);
        client.Destroy("offl-ports");
        Assert.Equal("", Lab.Exec(lab.A, "ipset", "list", "-n").Trim());
    }

    [IpsetLabFact]
    public void Ipv4_and_ipv6_entries_with_timeouts_are_what_the_ipset_tool_lists()
    {
        using Lab lab = Lab.Create();
        using IpsetClient client = Lab.In(lab.A, IpsetClient.Open);
        client.Create("offl4", IpsetType.HashIpPortIp, IpsetFamily.IPv4, 600, 1024);
        client.Create("offl6", IpsetType.HashIpPortIp, IpsetFamily.IPv6, 600, 1024);
        var v4 = new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, Ip("192.0.2.2"), 5000, Ip("192.0.2.1"));
        var v4Tcp = new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Tcp, Ip("198.51.100.7"), 21, Ip("203.0.113.9"));
        var v6 = new IpsetEntry(IpsetFamily.IPv6, IpsetEntry.Tcp, Ip("2001:db8::2"), 2121, Ip("2001:db8:0:1::1"));

        client.Add("offl4", v4, 100);
        client.Add("offl4", v4Tcp);
        client.Add("offl6", v6, 0);

        Dictionary<string, int?> four = Members(lab.A, "offl4");
        Assert.Equal(["192.0.2.2,udp:5000,192.0.2.1", "198.51.100.7,tcp:21,203.0.113.9"], four.Keys.Order());
        Assert.InRange(four["192.0.2.2,udp:5000,192.0.2.1"]!.Value, 95, 100);
        Assert.InRange(four["198.51.100.7,tcp:21,203.0.113.9"]!.Value, 595, 600);
        Dictionary<string, int?> six = Members(lab.A, "offl6");
        Assert.Equal("2001:db8::2,tcp:2121,2001:db8:0:1::1", Assert.Single(six.Keys));
        Assert.Equal(0, six["2001:db8::2,tcp:2121,2001:db8:0:1::1"]);

        // Adding what is present refreshes its timeout.
        client.Add("offl4", v4, 500);
        Assert.InRange(Members(lab.A, "offl4")["192.0.2.2,udp:5000,192.0.2.1"]!.Value, 495, 500);

        Assert.True(client.Test("offl4", v4));
        Assert.True(client.Test("offl6", v6));
        Assert.False(client.Test("offl4", new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Tcp, Ip("192.0.2.2"), 5000, Ip("192.0.2.1"))));

        client.Delete("offl4", v4);
        client.Delete("offl4", v4);
        client.Delete("offl6", v6);
        Assert.False(client.Test("offl4", v4));
        Assert.False(client.Test("offl6", v6));
        Assert.Equal(["198.51.100.7,tcp:21,203.0.113.9"], Members(lab.A, "offl4").Keys);
        Assert.Empty(Members(lab.A, "offl6"));

        client.Flush("offl4");
        Assert.Empty(Members(lab.A, "offl4"));
    }

    [IpsetLabFact]
    public void An_entry_times_out_by_itself()
    {
        using Lab lab = Lab.Create();
        using IpsetClient client = Lab.In(lab.A, IpsetClient.Open);
        client.Create(Set, IpsetType.HashIpPort, IpsetFamily.IPv4, 0, 1024);
        var e = new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, B, 9);

        client.Add(Set, e, 1);
        Assert.True(client.Test(Set, e));
        Thread.Sleep(2200);
        Assert.False(client.Test(Set, e));
    }

    [IpsetLabFact]
    public void A_thousand_adds_leave_in_four_sends_allocate_nothing_and_are_all_listed()
    {
        using Lab lab = Lab.Create();
        using IpsetClient client = Lab.In(lab.A, IpsetClient.Open);
        client.Create(Set, IpsetType.HashIpPortIp, IpsetFamily.IPv4, 3600, 65536);
        IpsetOperation[] adds = Batch(1000, i => IpsetOperation.Add(Set, Nth(i), 600));
        IpsetOperation[] deletes = Batch(1000, i => IpsetOperation.Delete(Set, Nth(i)));
        var results = new Errno[1000];

        // Once through to warm up (JIT), then measured.
        Assert.Equal(0, client.Apply(adds, results));
        Assert.Equal(0, client.Apply(deletes, results));
        long sendsBefore = client.Counters.Sends;
        long before = GC.GetAllocatedBytesForCurrentThread();
        int failed = client.Apply(adds, results);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, failed);
        Assert.Equal(0, allocated);
        Assert.Equal(4, client.Counters.Sends - sendsBefore);
        Assert.All(results, r => Assert.Equal(Errno.None, r));
        Assert.Equal(0, client.Counters.Unanswered);
        Assert.Equal(0, client.Counters.NoBufferEvents);

        Dictionary<string, int?> members = Members(lab.A, Set);
        Assert.Equal(1000, members.Count);
        Assert.Equal(Enumerable.Range(0, 1000).Select(i => Nth(i).ToString()).Order(), members.Keys.Order());
        Assert.True(client.Test(Set, Nth(999)));

        Assert.Equal(0, client.Apply(deletes, results));
        Assert.Empty(Members(lab.A, Set));

        // 192.0.2.1 → 10.x.y.z, port 1024 + i: a thousand distinct flows.
        static IpsetEntry Nth(int i) =>
            new(IpsetFamily.IPv4, (i & 1) == 0 ? IpsetEntry.Udp : IpsetEntry.Tcp, [10, 0, (byte)(i >> 8), (byte)i], (ushort)(1024 + i), A);
    }

    [IpsetLabFact]
    public void Swap_exchanges_two_sets_contents_and_refuses_sets_of_another_type()
    {
        using Lab lab = Lab.Create();
        using IpsetClient client = Lab.In(lab.A, IpsetClient.Open);
        client.Create(Set, IpsetType.HashIpPortIp, IpsetFamily.IPv4, 0, 1024);
        client.Create("offl-next", IpsetType.HashIpPortIp, IpsetFamily.IPv4, null, 1024);
        client.Create("offl-ports", IpsetType.HashIpPort, IpsetFamily.IPv4, null, 1024);
        var old = new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Tcp, B, 2001, A);
        var fresh = new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Tcp, B, 2002, A);
        client.Add(Set, old);
        client.Add("offl-next", fresh);

        client.Swap(Set, "offl-next");

        Assert.Equal([fresh.ToString()], Members(lab.A, Set).Keys);
        Assert.Equal([old.ToString()], Members(lab.A, "offl-next").Keys);
        Assert.Equal(IpsetErrors.TypeMismatch, Assert.Throws<NetlinkException>(() => client.Swap(Set, "offl-ports")).Errno);
        Assert.Equal(IpsetErrors.SecondSet, Assert.Throws<NetlinkException>(() => client.Swap(Set, "offl-missing")).Errno);
    }

    [IpsetLabFact]
    public void A_bad_entry_in_a_batch_fails_alone()
    {
        using Lab lab = Lab.Create();
        using IpsetClient client = Lab.In(lab.A, IpsetClient.Open);
        client.Create(Set, IpsetType.HashIpPortIp, IpsetFamily.IPv4, 600, 1024);
        client.Create("offl-notimeout", IpsetType.HashIpPortIp, IpsetFamily.IPv4, null, 1024);
        var good1 = new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, B, 1001, A);
        var good2 = new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, B, 1002, A);
        var good3 = new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, B, 1003, A);
        IpsetOperation[] ops =
        [
            IpsetOperation.Add(Set, good1, 60),
            IpsetOperation.Add(Set, new IpsetEntry(IpsetFamily.IPv6, IpsetEntry.Udp, Ip("2001:db8::1"), 1, Ip("2001:db8::2"))),
            IpsetOperation.Add(Set, good2),
            IpsetOperation.Add(Set, new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, B, 1)),
            IpsetOperation.Add("offl-missing", good1),
            IpsetOperation.Add("offl-notimeout", good1, 60),
            IpsetOperation.Delete(Set, new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, B, 4242, A)),
            IpsetOperation.Add(Set, good3, 60),
        ];
        var results = new Errno[ops.Length];

        Assert.Equal(4, client.Apply(ops, results));

        Assert.Equal(Errno.None, results[0]);
        Assert.Equal(IpsetErrors.Protocol, results[1]);
        Assert.Equal(Errno.None, results[2]);
        Assert.Equal(IpsetErrors.Protocol, results[3]);
        Assert.Equal(Errno.ENOENT, results[4]);
        Assert.Equal(IpsetErrors.Timeout, results[5]);
        Assert.Equal(Errno.None, results[6]);
        Assert.Equal(Errno.None, results[7]);
        Assert.Equal(1, client.Counters.Sends);
        Assert.Equal([good1.ToString(), good2.ToString(), good3.ToString()], Members(lab.A, Set).Keys.Order());
        Assert.Empty(Members(lab.A, "offl-notimeout"));
    }

    [IpsetLabFact]
    public void A_set_an_iptables_rule_uses_cannot_be_destroyed_until_the_rule_goes()
    {
        using Lab lab = Lab.Create();
        using IpsetClient client = Lab.In(lab.B, IpsetClient.Open);
        client.Create(Set, IpsetType.HashIpPort, IpsetFamily.IPv4, null, 1024);
        Lab.Exec(lab.B, "iptables", "-A", "INPUT", "-m", "set", "--match-set", Set, "dst,dst", "-j", "DROP");

        Assert.Equal(IpsetErrors.Busy, Assert.Throws<NetlinkException>(() => client.Destroy(Set)).Errno);

        Lab.Exec(lab.B, "iptables", "-F", "INPUT");

        // iptables-nft frees a deleted rule, and so its reference to the set, a moment after the command returns.
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                client.Destroy(Set);
                break;
            }
            catch (NetlinkException e) when (e.Errno == IpsetErrors.Busy && attempt < 40)
            {
                Thread.Sleep(50);
            }
        }

        Assert.Equal("", Lab.Exec(lab.B, "ipset", "list", "-n").Trim());
    }

    [IpsetLabFact]
    public void A_hash_ip_port_entry_steers_packets_to_its_address_and_port_while_present()
    {
        using Lab lab = Lab.Create();
        using IpsetClient client = Lab.In(lab.B, IpsetClient.Open);
        client.Create(Set, IpsetType.HashIpPort, IpsetFamily.IPv4, 600, 1024);
        Lab.Exec(lab.B, "iptables", "-A", "INPUT", "-p", "udp", "-m", "set", "--match-set", Set, "dst,dst", "-j", "DROP");
        var entry = new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, B, 9);

        AssertSteering(lab, client, entry, port: 9, otherPort: 10);
    }

    [IpsetLabFact]
    public void A_hash_ip_port_ip_entry_steers_one_flow_by_destination_port_and_source()
    {
        using Lab lab = Lab.Create();
        using IpsetClient client = Lab.In(lab.B, IpsetClient.Open);
        client.Create(Set, IpsetType.HashIpPortIp, IpsetFamily.IPv4, 600, 1024);
        Lab.Exec(lab.B, "iptables", "-A", "INPUT", "-p", "udp", "-m", "set", "--match-set", Set, "dst,dst,src", "-j", "DROP");

        // An entry naming another source must not match our packets.
        client.Add(Set, new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, B, 9, Ip("192.0.2.77")));
        var entry = new IpsetEntry(IpsetFamily.IPv4, IpsetEntry.Udp, B, 9, A);

        AssertSteering(lab, client, entry, port: 9, otherPort: 10);
    }

    /// <summary>
    /// UDP from A to B:<paramref name="port"/> passes, is dropped by the set rule at B's INPUT once
    /// <paramref name="entry"/> is added (while B:<paramref name="otherPort"/> still passes), and passes again
    /// once it is deleted. The rule's own counter proves the drops were its doing.
    /// </summary>
    private static void AssertSteering(Lab lab, IpsetClient client, in IpsetEntry entry, ushort port, ushort otherPort)
    {
        using Socket sender = Lab.Udp(lab.A);
        using Socket receiver = Lab.Udp(lab.B, new IPEndPoint(Lab.AddressB, port));
        using Socket other = Lab.Udp(lab.B, new IPEndPoint(Lab.AddressB, otherPort));
        var target = new IPEndPoint(Lab.AddressB, port);
        var otherTarget = new IPEndPoint(Lab.AddressB, otherPort);

        sender.SendTo("before"u8, target);
        Assert.Equal("before", ReceiveText(receiver));
        Assert.Equal(0, DroppedByRule(lab));

        client.Add(Set, entry);
        sender.SendTo("during"u8, target);
        sender.SendTo("other"u8, otherTarget);
        Assert.Equal("other", ReceiveText(other));
        Assert.False(receiver.Poll(TimeSpan.FromMilliseconds(300), SelectMode.SelectRead));
        Assert.Equal(1, DroppedByRule(lab));

        client.Delete(Set, entry);
        sender.SendTo("after"u8, target);
        Assert.Equal("after", ReceiveText(receiver));
        Assert.Equal(1, DroppedByRule(lab));
    }

    private static long DroppedByRule(Lab lab)
    {
        string rules = Lab.Exec(lab.B, "iptables", "-L", "INPUT", "-v", "-x", "-n");
        string line = rules.Split('\n').Single(l => l.Contains("match-set", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0], CultureInfo.InvariantCulture);
    }

    private static string ReceiveText(Socket s)
    {
        Assert.True(s.Poll(TimeSpan.FromSeconds(5), SelectMode.SelectRead), "nothing arrived");
        var buffer = new byte[256];
        int n = s.Receive(buffer);
        return System.Text.Encoding.ASCII.GetString(buffer, 0, n);
    }

    /// <summary>The members of set <paramref name="name"/> as the ipset tool lists them, with their timeouts.</summary>
    private static Dictionary<string, int?> Members(string ns, string name)
    {
        string listing = Lab.Exec(ns, "ipset", "list", name);
        string[] lines = listing.Split('\n');
        int start = Array.FindIndex(lines, l => l.StartsWith("Members:", StringComparison.Ordinal));
        Assert.True(start >= 0, listing);
        var members = new Dictionary<string, int?>(StringComparer.Ordinal);
        foreach (string line in lines.Skip(start + 1).Where(l => l.Length > 0))
        {
            Match m = MemberLine().Match(line);
            Assert.True(m.Success, line);
            members.Add(m.Groups[1].Value, m.Groups[2].Success ? int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture) : null);
        }

        return members;
    }

    private static IpsetOperation[] Batch(int count, Func<int, IpsetOperation> make) => Enumerable.Range(0, count).Select(make).ToArray();

    private static byte[] Ip(string text) => IPAddress.Parse(text).GetAddressBytes();

    [GeneratedRegex(@"^(\S+)(?: timeout (\d+))?$")]
    private static partial Regex MemberLine();
}
