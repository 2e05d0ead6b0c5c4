using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Xunit;

namespace Offload.Sdk.Tests;

/// <summary>The helper walk-through (docs/helpers.md) shows the example exactly as it is built and tested, and keeps its promise of brevity.</summary>
public partial class WalkthroughTests
{
    private static string Repo([CallerFilePath] string here = "") => Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "..", ".."));

    private static string Example => File.ReadAllText(Path.Combine(Repo(), "examples", "helpers", "callback", "CallbackHelper.cs")).ReplaceLineEndings("\n");

    [GeneratedRegex("```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();

    [Fact]
    public void The_walkthrough_shows_the_example_as_it_is_built()
    {
        string doc = File.ReadAllText(Path.Combine(Repo(), "docs", "helpers.md")).ReplaceLineEndings("\n");
        var blocks = CSharpBlock().Matches(doc).Select(m => m.Groups[1].Value).ToList();
        Assert.Contains(Example, blocks);
    }

    [Fact]
    public void The_example_helper_fits_in_40_lines()
    {
        Assert.InRange(Example.TrimEnd('\n').Split('\n').Length, 1, 40);
    }
}
