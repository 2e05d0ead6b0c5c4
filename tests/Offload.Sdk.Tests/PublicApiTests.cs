using Xunit;
using System.Reflection;
using System.Xml.Linq;

namespace Offload.Sdk.Tests;

/// <summary>
/// The SDK's public surface is frozen by two listings (Roslyn's public API convention): alg/Offload.Sdk/PublicAPI.Shipped.txt,
/// what released versions offered, and PublicAPI.Unshipped.txt, what this version adds. Helpers compiled against a
/// shipped version must keep loading: a shipped line that no longer holds fails here (a breaking change), and so does
/// a new member in neither listing, until it is added to the unshipped one in the same commit. At a release the
/// unshipped lines move to the shipped listing.
/// </summary>
public class PublicApiTests
{
    private static readonly Assembly Sdk = typeof(ConntrackHelper).Assembly;

    private static string Listing(string name) => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, name)).ReplaceLineEndings("\n");

    [Fact]
    public void Nothing_shipped_is_removed_or_changed()
    {
        var actual = PublicApiListing.Parse(PublicApiListing.Of(Sdk));
        var shipped = PublicApiListing.Parse(Listing("PublicAPI.Shipped.txt"));
        var broken = PublicApiListing.Missing(shipped, actual);
        Assert.True(broken.Count == 0, "Shipped members of the SDK were removed or changed (helpers built against them would no longer load):\n  " + string.Join("\n  ", broken));
    }

    [Fact]
    public void The_public_surface_is_the_shipped_listing_and_the_unshipped_one()
    {
        string actual = PublicApiListing.Of(Sdk);
        var listed = PublicApiListing.Merge(PublicApiListing.Parse(Listing("PublicAPI.Shipped.txt")), PublicApiListing.Parse(Listing("PublicAPI.Unshipped.txt")));
        string expected = PublicApiListing.Render(listed);
        if (expected != actual)
        {
            // Leave the whole listing beside the test output, for whoever changes the surface on purpose.
            string received = Path.Combine(AppContext.BaseDirectory, "PublicAPI.received.txt");
            File.WriteAllText(received, actual);
            var missing = PublicApiListing.Missing(listed, PublicApiListing.Parse(actual)).Take(10);
            var added = PublicApiListing.Missing(PublicApiListing.Parse(actual), listed).Take(10);
            Assert.Fail($"The SDK's public surface changed. Listed but gone:\n  {string.Join("\n  ", missing)}\nIn neither listing (add to alg/Offload.Sdk/PublicAPI.Unshipped.txt, under its type's line):\n  {string.Join("\n  ", added)}\nThe whole surface: {received}.");
        }
    }

    [Fact]
    public void The_unshipped_listing_repeats_nothing_shipped()
    {
        var shipped = PublicApiListing.Parse(Listing("PublicAPI.Shipped.txt"));
        var unshipped = PublicApiListing.Parse(Listing("PublicAPI.Unshipped.txt"));
        var repeated = unshipped.SelectMany(t => t.Value.Where(m => shipped.TryGetValue(t.Key, out var s) && s.Contains(m)).Select(m => t.Key + " " + m.Trim())).ToList();
        Assert.True(repeated.Count == 0, "Lines of PublicAPI.Unshipped.txt already shipped:\n  " + string.Join("\n  ", repeated));
    }

    [Fact]
    public void The_listing_names_the_helper_contract()
    {
        // Guards the listing itself: a generator that printed nothing would make the comparisons above meaningless.
        string listing = PublicApiListing.Of(Sdk);
        Assert.Contains("abstract class Offload.Sdk.ConntrackHelper", listing, StringComparison.Ordinal);
        Assert.Contains("  abstract Offload.Sdk.HelperVerdict Help(ref Offload.Sdk.HelperContext context)", listing, StringComparison.Ordinal);
        Assert.Contains("ref struct Offload.Sdk.HelperContext", listing, StringComparison.Ordinal);
        Assert.DoesNotContain("HelperHost", listing, StringComparison.Ordinal);
        Assert.DoesNotContain("DisabledReason", listing, StringComparison.Ordinal);
        Assert.DoesNotContain("BoundPortList", listing, StringComparison.Ordinal);
    }

    [Fact]
    public void A_changed_shipped_member_is_told_apart_from_an_added_one()
    {
        // The comparison itself, on a made-up surface: a member whose signature changed is missing from the new surface.
        var shipped = PublicApiListing.Parse("class A\n  System.Int32 M(System.Int32 x)\n");
        var now = PublicApiListing.Parse("class A\n  System.Int64 M(System.Int32 x)\n  System.Void N()\n");
        Assert.Equal(["class A  System.Int32 M(System.Int32 x)"], PublicApiListing.Missing(shipped, now));
        Assert.Equal("class A\n  System.Int32 M(System.Int32 x)\n  System.Void N()\n",
            PublicApiListing.Render(PublicApiListing.Merge(shipped, PublicApiListing.Parse("class A\n  System.Void N()\n"))));
    }

    [Fact]
    public void Every_public_member_is_documented()
    {
        var docs = XDocument.Load(Path.ChangeExtension(Sdk.Location, ".xml"));
        var documented = docs.Descendants("member").Select(m => (string)m.Attribute("name")!).ToHashSet(StringComparer.Ordinal);
        var undocumented = new List<string>();
        foreach (var type in Sdk.GetExportedTypes())
        {
            string typeId = type.FullName!.Replace('+', '.');
            if (!documented.Contains("T:" + typeId))
            {
                undocumented.Add("T:" + typeId);
            }

            foreach (var member in type.GetMembers(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
            {
                string? id = member switch
                {
                    FieldInfo f when !type.IsEnum || f.IsLiteral => "F:" + typeId + "." + f.Name,
                    PropertyInfo p when p.GetIndexParameters().Length == 0 => "P:" + typeId + "." + p.Name,
                    _ => null,
                };
                if (id is not null && !documented.Contains(id))
                {
                    undocumented.Add(id);
                }
            }
        }

        Assert.True(undocumented.Count == 0, "Undocumented public members of the SDK:\n" + string.Join("\n", undocumented));
    }
}
