using System.Net;
using Offload.Interop.Ctnetlink;
using Offload.Interop.Tests.Support;
using Xunit;

namespace Offload.Interop.Tests.Ctnetlink;

/// <summary>A test that needs root, the namespace lab and the conntrack tool (to read back what we did, independently).</summary>
public sealed class CtnlLabFactAttribute : FactAttribute
{
    public CtnlLabFactAttribute()
    {
        Skip = Lab.WhyUnavailable() ?? (Shell.Which("conntrack") is null ? "Needs the 'conntrack' tool (Debian package conntrack, listed in tests/lab/packages.txt)." : null);
    }
}

/// <summary>
/// CtnlClient and CtnlDestroyEvents against the real kernel, in the namespace lab (the conntrack table belongs to a
/// network namespace). The kernel's NAT setup turns a create with an untranslated reply and a one-address,
/// one-port NAT range into an entry whose reply is translated to exactly that address and port, with the NAT and
/// NAT-done status bits set (nf_nat_setup_info); conntrack -L reads it back.
/// </summary>
[Collection("kernel")]
public sealed class CtnlKernelTests
{
    // A LAN client's passive FTP data connection, its source translated to the router's 203.0.113.1:61000.
    private static readonly CtnlTuple Original = Tuple(6, "10.0.0.2", "198.51.100.2", 40000, 30000);
    private static readonly CtnlTuple Reply = Tuple(6, "198.51.100.2", "203.0.113.1", 30000, 61000);

    [CtnlLabFact]
    public void A_created_entry_is_established_assured_liberal_and_source_natted_to_the_given_port()
    {
        using Lab lab = Lab.Create();
        using CtnlClient client = Lab.In(lab.A, CtnlClient.Open);

        Assert.Equal(Errno.None, client.Create(new CtnlEntry(Original, Reply, 300, 7, 7)));

        string listed = Lab.Exec(lab.A, "conntrack", "-L", "-p", "tcp");
        Assert.Contains("ESTABLISHED src=10.0.0.2 dst=198.51.100.2 sport=40000 dport=30000 src=198.51.100.2 dst=203.0.113.1 sport=30000 dport=61000 [ASSURED]", listed, StringComparison.Ordinal);
        string snat = Lab.Exec(lab.A, "conntrack", "-L", "--src-nat");
        Assert.Contains("dport=61000", snat, StringComparison.Ordinal);
        Assert.Equal(Errno.None, client.Get(Original, out CtnlTuple reply));
        Assert.Equal(Reply, reply);
    }

    [CtnlLabFact]
    public void A_destination_natted_entry_gets_the_translated_destination_as_its_reply_source()
    {
        using Lab lab = Lab.Create();
        using CtnlClient client = Lab.In(lab.A, CtnlClient.Open);

        // Active FTP: the server's data connection arrives at the router's port and goes to the client's.
        var original = Tuple(6, "198.51.100.2", "203.0.113.1", 20, 61001);
        var reply = Tuple(6, "10.0.0.2", "198.51.100.2", 45000, 20);
        Assert.Equal(Errno.None, client.Create(new CtnlEntry(original, reply, 300)));

        Assert.Contains("src=10.0.0.2 dst=198.51.100.2 sport=45000 dport=20", Lab.Exec(lab.A, "conntrack", "-L", "--dst-nat"), StringComparison.Ordinal);
    }

    [CtnlLabFact]
    public void Commit_takes_an_equal_entry_as_done_and_replaces_one_with_another_nat()
    {
        using Lab lab = Lab.Create();
        using CtnlClient client = Lab.In(lab.A, CtnlClient.Open);
        var entry = new CtnlEntry(Original, Reply, 300);

        Assert.Equal(CtnlCommitResult.Created, client.Commit(entry, out _));
        Assert.Equal(Errno.EEXIST, client.Create(entry));
        Assert.Equal(CtnlCommitResult.AlreadyThere, client.Commit(entry, out _));

        var moved = entry with { Reply = Reply with { DestinationPort = 61002 } };
        Assert.Equal(CtnlCommitResult.Replaced, client.Commit(moved, out _));
        Assert.Equal(Errno.None, client.Get(Original, out CtnlTuple reply));
        Assert.Equal(61002, reply.DestinationPort);
    }

    [CtnlLabFact]
    public void Delete_removes_the_entry_and_the_destroy_event_names_its_original_tuple()
    {
        using Lab lab = Lab.Create();
        using CtnlClient client = Lab.In(lab.A, CtnlClient.Open);
        using CtnlDestroyEvents events = Lab.In(lab.A, () => CtnlDestroyEvents.Open());
        events.ReceiveTimeout = TimeSpan.FromSeconds(2);
        var v6 = new CtnlEntry(Tuple(17, "2001:db8::2", "2001:db8:1::2", 5004, 6004), Tuple(17, "2001:db8:1::2", "2001:db8::2", 6004, 5004), 60);

        Assert.Equal(Errno.None, client.Create(new CtnlEntry(Original, Reply, 300)));
        Assert.Equal(Errno.None, client.Create(v6));
        Assert.Equal(Errno.None, client.Delete(Original));
        Assert.Equal(Errno.None, client.Delete(v6.Original));
        Assert.Equal(Errno.ENOENT, client.Delete(Original));
        Assert.Equal(Errno.ENOENT, client.Get(Original, out _));

        var seen = new List<CtnlTuple>();
        Span<CtnlTuple> batch = new CtnlTuple[8];
        for (int i = 0; i < 4 && seen.Count < 2; i++)
        {
            int n = events.Receive(batch);
            for (int k = 0; k < n; k++)
            {
                seen.Add(batch[k]);
            }
        }

        Assert.Equal([Original, v6.Original], seen);
        Assert.Equal("", Lab.Exec(lab.A, "conntrack", "-L").Trim());
    }

    private static CtnlTuple Tuple(byte protocol, string source, string destination, ushort sourcePort, ushort destinationPort)
    {
        byte[] s = IPAddress.Parse(source).GetAddressBytes();
        return CtnlTuple.Of(s.Length == 4 ? CtnlTuple.Inet : CtnlTuple.Inet6, protocol, s, IPAddress.Parse(destination).GetAddressBytes(), sourcePort, destinationPort);
    }
}
