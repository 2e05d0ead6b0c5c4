using System.Reflection;
using Offload.Interop.Ctnetlink;
using Offload.Interop.Ipset;
using Offload.Interop.Netlink;
using Offload.Interop.Nfqueue;
using Offload.Interop.Tests.Support;
using Xunit;

namespace Offload.Interop.Tests.Headers;

/// <summary>
/// Every constant we name after C (all-capitals names in Interop.Sys, NetlinkConstants, NfqConstants, IpsetConstants,
/// and the Errno values) equals the value the real headers give it.
/// </summary>
public sealed class ConstantsTests
{
    // Kernel-internal errno that leaks to userspace but has no userspace definition.
    private static readonly HashSet<string> NotInUserspaceHeaders = ["ENOTSUPP"];

    [CcFact]
    public void Constants_match_the_C_headers()
    {
        List<(string Name, long Value, int Bits, bool Unsigned)> ours = OurConstants().ToList();
        Assert.True(ours.Count > 90, $"only {ours.Count} constants found: has reflection lost some?");

        Dictionary<string, long> c = HeaderProbe.Run(HeaderProbe.PrintAll(ours.Select(o => (o.Name, o.Name))));

        var mismatches = new List<string>();
        foreach ((string name, long value, int bits, bool unsigned) in ours)
        {
            long expected = c[name];

            // A C# constant is the C value in the width we store it (NLA_TYPE_MASK is an int in C, a ushort here).
            if (unsigned && bits < 64)
            {
                expected &= (1L << bits) - 1;
            }

            if (expected != value)
            {
                mismatches.Add($"{name}: ours {value}, headers {expected}");
            }
        }

        Assert.Empty(mismatches);
    }

    [CcFact]
    public void O_NOFOLLOW_is_the_one_of_this_architecture()
    {
        Dictionary<string, long> c = HeaderProbe.Run(HeaderProbe.PrintValue("O_NOFOLLOW", "O_NOFOLLOW"));

        Assert.Equal(c["O_NOFOLLOW"], Interop.Sys.OpenFlagNoFollow);
    }

    [Fact]
    public void Constants_are_found_in_every_class_we_name_after_C()
    {
        var names = OurConstants().Select(o => o.Name).ToHashSet();
        Assert.Contains("AF_NETLINK", names);
        Assert.Contains("NLMSG_ERROR", names);
        Assert.Contains("NFQA_CFG_F_GSO", names);
        Assert.Contains("NFQA_SKB_CSUM_NOTVERIFIED", names);
        Assert.Contains("ENOBUFS", names);
        Assert.Contains("IPSET_ATTR_IP2", names);
        Assert.Contains("IPSET_ERR_HASH_FULL", names);
        Assert.Contains("CTA_NAT_SRC", names);
        Assert.Contains("IPS_CONFIRMED", names);
        Assert.Contains("IP_CT_TCP_FLAG_BE_LIBERAL", names);
        Assert.Contains("NFNLGRP_CONNTRACK_DESTROY", names);
        Assert.DoesNotContain("ENOTSUPP", names);
    }

    private static IEnumerable<(string Name, long Value, int Bits, bool Unsigned)> OurConstants()
    {
        foreach (Type t in new[] { typeof(Interop.Sys), typeof(NetlinkConstants), typeof(NfqConstants), typeof(IpsetConstants), typeof(CtnlConstants) })
        {
            foreach (FieldInfo f in t.GetFields(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public))
            {
                if (!f.IsLiteral || f.Name != f.Name.ToUpperInvariant())
                {
                    continue;
                }

                object v = f.GetRawConstantValue()!;
                yield return v switch
                {
                    byte b => (f.Name, b, 8, true),
                    ushort u => (f.Name, u, 16, true),
                    uint u => (f.Name, u, 32, true),
                    int i => (f.Name, i, 32, false),
                    _ => throw new InvalidOperationException($"{t.Name}.{f.Name}: unexpected type {v.GetType()}"),
                };
            }
        }

        foreach (Errno e in Enum.GetValues<Errno>())
        {
            if (e != Errno.None && !NotInUserspaceHeaders.Contains(e.ToString()))
            {
                yield return (e.ToString(), (int)e, 32, false);
            }
        }
    }
}
