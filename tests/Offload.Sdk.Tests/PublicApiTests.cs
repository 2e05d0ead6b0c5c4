using Xunit;
using System.Reflection;
using System.Xml.Linq;

namespace Offload.Sdk.Tests;

/// <summary>
/// The SDK's public surface is frozen by alg/Offload.Sdk/PublicApi.txt: helpers compiled against it must keep loading.
/// A change to the surface fails here until the listing is updated in the same commit, so it is always deliberate
/// (and reviewed: adding is fine, changing or removing breaks helpers already written).
/// </summary>
public class PublicApiTests
{
    private static readonly Assembly Sdk = typeof(ConntrackHelper).Assembly;

    [Fact]
    public void The_public_surface_matches_the_checked_in_listing()
    {
        string expected = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "PublicApi.txt")).ReplaceLineEndings("\n");
        string actual = PublicApiListing.Of(Sdk);
        if (expected != actual)
        {
            // Leave the new listing beside the test output, for whoever changes the surface on purpose to copy over.
            string received = Path.Combine(AppContext.BaseDirectory, "PublicApi.received.txt");
            File.WriteAllText(received, actual);
            var missing = expected.Split('\n').Except(actual.Split('\n')).Take(10);
            var added = actual.Split('\n').Except(expected.Split('\n')).Take(10);
            Assert.Fail($"The SDK's public surface changed. Removed or changed:\n  {string.Join("\n  ", missing)}\nAdded:\n  {string.Join("\n  ", added)}\nIf intended, copy {received} to alg/Offload.Sdk/PublicApi.txt.");
        }
    }

    [Fact]
    public void The_listing_names_the_helper_contract()
    {
        // Guards the listing itself: a generator that printed nothing would make the comparison above meaningless.
        string listing = PublicApiListing.Of(Sdk);
        Assert.Contains("abstract class Offload.Sdk.ConntrackHelper", listing, StringComparison.Ordinal);
        Assert.Contains("  abstract Offload.Sdk.HelperVerdict Help(ref Offload.Sdk.HelperContext context)", listing, StringComparison.Ordinal);
        Assert.Contains("ref struct Offload.Sdk.HelperContext", listing, StringComparison.Ordinal);
        Assert.DoesNotContain("HelperHost", listing, StringComparison.Ordinal);
        Assert.DoesNotContain("DisabledReason", listing, StringComparison.Ordinal);
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
