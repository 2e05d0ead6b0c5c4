using FsCheck;
using Microsoft.FSharp.Core;

namespace Offload.Engine.Tests.Packets;

/// <summary>FsCheck configurations with a fixed seed, so a failure found once is found again on every run and machine.</summary>
internal static class Deterministic
{
    public static Config Runs(int maxTest, ulong seed) =>
        Config.QuickThrowOnFailure
            .WithMaxTest(maxTest)
            .WithReplay(FSharpOption<Replay>.Some(new Replay(new Rnd(seed, 0x9E3779B97F4A7C15UL), FSharpOption<int>.None)));
}
