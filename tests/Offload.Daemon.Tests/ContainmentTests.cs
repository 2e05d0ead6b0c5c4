using System.Diagnostics;
using Offload.Engine;
using Offload.Plugins;
using Xunit;

namespace Offload.Daemon.Tests;

/// <summary>
/// Budgets of wall-clock time and allocation: these tests run alone, since another test class of this assembly compiling
/// plugins with Roslyn at the same time can hold a 2-core machine long enough for a healthy call to overrun 50 ms.
/// </summary>
[Collection(AloneCollection.Name)]
public sealed class ContainmentTests
{
    [Theory]
    [InlineData("throw", "InvalidOperationException: broken on purpose")]
    [InlineData("loop", "HelperBudgetException: a call ran past its 50 ms budget and was aborted")]
    [InlineData("allocate", "HelperBudgetException: a call allocated")]
    public void A_faulty_plugin_is_disabled_and_its_traffic_flows_on(string fault, string reason)
    {
        // Allocating 64 MiB can itself take longer than 50 ms on a busy machine (fresh pages, a collection): the
        // allocation budget is what the "allocate" case checks, so its time budget is out of its way.
        TimeSpan callBudget = fault == "allocate" ? TimeSpan.FromSeconds(10) : PluginRig.ProductionCallBudget;
        using var rig = new PluginRig(callBudget, setup: dir => File.WriteAllText(Path.Combine(dir, "faulty.cs"), PluginSources.Faulty("faulty", fault)));
        var c = rig.Connect();
        Assert.All(c.Handshake, v => Assert.Equal(Verdict.Accept, v));
        Assert.Equal("faulty", rig.Find(c)!.Value.Helper!.Name);

        var started = Stopwatch.StartNew();
        Assert.Equal(Verdict.Accept, c.Say("hello\r\n"));
        var took = started.Elapsed;

        var (helper, why) = Assert.Single(rig.Events.Disabled);
        Assert.Equal("faulty", helper);
        Assert.StartsWith(reason, why, StringComparison.Ordinal);
        Assert.Equal(1, rig.Engine[EngineCounter.HelperFailures]);
        if (fault == "loop")
        {
            // Aborted between one and one and a quarter budgets, plus the time the abort takes to land.
            Assert.InRange(took.TotalMilliseconds, 50, 1000);
            Assert.Equal(1, rig.Invoker.Aborted);
        }

        // The daemon goes on: this connection is tracked without its helper, both ways, and a new one binds to nothing.
        Assert.Equal(Verdict.Accept, c.Say("more\r\n"));
        Assert.Equal(Verdict.Accept, c.Answer("reply\r\n"));
        var next = rig.Connect();
        Assert.All(next.Handshake, v => Assert.Equal(Verdict.Accept, v));
        Assert.Equal(Verdict.Accept, next.Say("hello\r\n"));
        Assert.Null(rig.Find(next)!.Value.Helper);
        Assert.Single(rig.Events.Disabled);
        Assert.Contains("disabled: " + why, rig.Manager.List(), StringComparison.Ordinal);
    }

    [Fact]
    public void Looping_helpers_are_aborted_again_and_again_on_the_same_thread()
    {
        // Every abort ends the executor thread the call ran on; the next call gets a new one. The caller is never aborted.
        using var rig = new PluginRig(PluginRig.ProductionCallBudget, setup: dir =>
        {
            for (int i = 0; i < 3; i++)
            {
                File.WriteAllText(Path.Combine(dir, $"loop{i}.cs"), PluginSources.Faulty($"loop{i}", "loop").Replace("7777", (7777 + i).ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal));
            }
        });
        File.WriteAllText(Path.Combine(rig.Directory, "announce.cs"), PluginSources.Announce().Replace("7777", "7780", StringComparison.Ordinal));
        rig.Manager.Load(Path.Combine(rig.Directory, "announce.cs"));

        for (int i = 0; i < 3; i++)
        {
            var c = rig.Connect((ushort)(7777 + i));
            var started = Stopwatch.StartNew();
            Assert.Equal(Verdict.Accept, c.Say("spin\r\n"));
            Assert.InRange(started.Elapsed.TotalMilliseconds, 50, 1000);
            Assert.Equal(i + 1, rig.Events.Disabled.Count);
            Assert.StartsWith("HelperBudgetException: a call ran past", rig.Events.Disabled[i].Reason, StringComparison.Ordinal);

            // A healthy plugin goes on being called (on the stand-in after the first abort) and still works.
            var healthy = rig.Connect(7780);
            Assert.Equal(Verdict.Accept, healthy.Say($"PORT {5000 + i}\r\n"));
            Assert.Equal($"announce: v1 seen=1", rig.Events.Lines[^1]);
        }

        Assert.Equal(3, rig.Invoker.Aborted);
        Assert.Equal(3, rig.Expectations);
    }

    [Fact]
    public void A_healthy_plugin_call_costs_no_allocation_of_ours_and_runs_under_the_budget()
    {
        using var rig = new PluginRig(PluginRig.ProductionCallBudget, setup: dir => File.WriteAllText(Path.Combine(dir, "quiet.cs"), """
            public sealed class Quiet : ConntrackHelper
            {
                public Quiet() : base("quiet", new ExpectationPolicy(1, TimeSpan.FromSeconds(1))) { Ports = [7777]; }
                public override HelperVerdict Help(ref HelperContext context) => context.Payload.Length > 1000 ? HelperVerdict.Drop : HelperVerdict.Accept;
            }
            """));
        var c = rig.Connect();
        for (int i = 0; i < 50; i++)
        {
            Assert.Equal(Verdict.Accept, c.Say("warm up\r\n"));
        }

        // What one call through the invoker allocates: ControlledExecution's own small object, nothing per byte or per packet of ours.
        var packet = Offload.Sdk.Testing.TestPackets.TcpPacket(PluginRig.Client, c.ClientPort, PluginRig.Server, c.ServerPort, 0x18, 1, 1, new byte[10]);
        long before = GC.GetAllocatedBytesForCurrentThread();
        const int calls = 1000;
        for (int i = 0; i < calls; i++)
        {
            rig.Send(packet, fromClient: true);
        }

        long perCall = (GC.GetAllocatedBytesForCurrentThread() - before) / calls;
        // The rig itself copies each packet into a new buffer (~600 bytes); the invoker adds ControlledExecution's object.
        Assert.InRange(perCall, 0, packet.Length + 512 + 64 + 160);
        Assert.Empty(rig.Events.Disabled);
        Assert.Equal(0, rig.Invoker.Aborted);
    }

    [Fact]
    public void Built_in_helpers_are_called_directly()
    {
        Assert.False(ContainedHelperInvoker.IsContained(Offload.Alg.BuiltInHelpers.Create("ftp", false)!));
    }
}
