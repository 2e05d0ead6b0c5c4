using System.Buffers.Binary;
using Offload.Engine.Conntrack.Tcp;
using Xunit;

namespace Offload.Engine.Tests.Tcp;

/// <summary>Builds TCP option areas byte by byte, as they appear on the wire.</summary>
internal static class Opt
{
    public static byte[] Nop => [1];

    public static byte[] End => [0];

    public static byte[] WindowScale(byte shift) => [3, 3, shift];

    public static byte[] SackPermitted => [4, 2];

    public static byte[] Mss(ushort mss) => [2, 4, (byte)(mss >> 8), (byte)mss];

    public static byte[] Timestamp(uint value, uint echo)
    {
        var b = new byte[10];
        b[0] = 8;
        b[1] = 10;
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(2), value);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(6), echo);
        return b;
    }

    public static byte[] Sack(params (uint Left, uint Right)[] blocks)
    {
        var b = new byte[2 + (8 * blocks.Length)];
        b[0] = 5;
        b[1] = (byte)b.Length;
        for (int i = 0; i < blocks.Length; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(2 + (8 * i)), blocks[i].Left);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(6 + (8 * i)), blocks[i].Right);
        }

        return b;
    }

    public static byte[] Of(params byte[][] parts) => parts.SelectMany(p => p).ToArray();
}

/// <summary>One tracked connection driven segment by segment, keeping the last update for assertions.</summary>
internal sealed class Flow
{
    // Client and server initial sequence numbers used by the scenarios.
    public const uint C = 1000;
    public const uint S = 5000;

    public TcpTrackState State;
    public TcpUpdate Update;

    public TcpTrackerSettings Settings { get; } = new();

    public bool Start(uint seq, TcpSegmentFlags flags, ushort window, int length = 0, byte[]? options = null, uint ack = 0) =>
        TcpTracker.TryStart(ref State, new TcpSegment(seq, ack, flags, window, length, options), Settings, out Update);

    public TcpVerdict Orig(uint seq, uint ack, TcpSegmentFlags flags, ushort window, int length = 0, byte[]? options = null, int offset = 0) =>
        TcpTracker.Process(ref State, new TcpSegment(seq, ack, flags, window, length, options), false, offset, Settings, out Update);

    public TcpVerdict Reply(uint seq, uint ack, TcpSegmentFlags flags, ushort window, int length = 0, byte[]? options = null, int offset = 0) =>
        TcpTracker.Process(ref State, new TcpSegment(seq, ack, flags, window, length, options), true, offset, Settings, out Update);

    /// <summary>
    /// Client ISN <see cref="C"/>, server ISN <see cref="S"/>; the client's third ACK advertises a raw window of 1000.
    /// Asserts every step, so scenarios start from a known ESTABLISHED + ASSURED connection.
    /// </summary>
    public static Flow Established(byte[]? clientOptions = null, byte[]? serverOptions = null, Action<TcpTrackerSettings>? configure = null)
    {
        var f = new Flow();
        configure?.Invoke(f.Settings);

        Assert.True(f.Start(C, TcpSegmentFlags.Syn, 64240, options: clientOptions));
        f.Expect(TcpConntrackState.SynSent, 120);

        Assert.Equal(TcpVerdict.Accept, f.Reply(S, C + 1, TcpSegmentFlags.Syn | TcpSegmentFlags.Ack, 65160, options: serverOptions));
        f.Expect(TcpConntrackState.SynRecv, 60);

        Assert.Equal(TcpVerdict.Accept, f.Orig(C + 1, S + 1, TcpSegmentFlags.Ack, 1000));
        f.Expect(TcpConntrackState.Established, 432_000);
        Assert.True(f.Update.BecameAssured);
        return f;
    }

    /// <summary>Asserts the last segment was accepted into <paramref name="state"/> with the timeout set to <paramref name="timeout"/> seconds.</summary>
    public void Expect(TcpConntrackState state, int timeout)
    {
        Assert.Equal(TcpInvalidReason.None, Update.Reason);
        Assert.Equal(state, State.State);
        Assert.Equal(state, Update.NewState);
        Assert.Equal(TcpTimeoutAction.Set, Update.TimeoutAction);
        Assert.Equal(timeout, Update.TimeoutSeconds);
    }

    /// <summary>Asserts the last segment was rejected (or ignored) for <paramref name="reason"/> and changed neither state nor timeout.</summary>
    public void ExpectRejected(TcpConntrackState unchangedState, TcpInvalidReason reason)
    {
        Assert.Equal(reason, Update.Reason);
        Assert.Equal(unchangedState, State.State);
        Assert.Equal(unchangedState, Update.NewState);
        Assert.False(Update.StateChanged);
        Assert.Equal(TcpTimeoutAction.Keep, Update.TimeoutAction);
    }
}
