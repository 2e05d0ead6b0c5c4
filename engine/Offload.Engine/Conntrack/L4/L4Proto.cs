using Offload.Engine.Packets;

namespace Offload.Engine.Conntrack.L4;

/// <summary>
/// What the engine asks of one transport protocol's tracking (the kernel's struct nf_conntrack_l4proto): whether a
/// packet may start a connection, its state from the first packet, and each packet's effect on state and timeout.
/// A new protocol (GRE) is one more subclass and one more line in <see cref="L4Protos"/>.
/// </summary>
/// <remarks>
/// Instances hold configuration only, never per-packet or per-connection state (that lives in the
/// <see cref="Connection"/>), so one engine's trackers are safe to call for any of its connections.
/// </remarks>
internal abstract class L4Proto
{
    /// <summary>
    /// Whether a packet of this tuple may start a connection at all, asked before anything is allocated (the kernel
    /// refuses ICMP errors and replies as a connection's first packet).
    /// </summary>
    public virtual bool CanStart(in ConnTuple tuple) => true;

    /// <summary>
    /// Sets up a new connection's protocol state from its first packet (the kernel's per-protocol new()); false
    /// when that packet cannot start one (a TCP segment that is no valid opener).
    /// </summary>
    public virtual bool Start(ReadOnlySpan<byte> packet, in PacketInfo info, Connection conn, long now) => true;

    /// <summary>
    /// Tracks one packet of a connection and sets its timeout (the kernel's per-protocol packet()). Drops are counted
    /// here, under the protocol's reason. <c>isNew</c>: the packet created the connection (<see cref="Start"/> ran on
    /// it); <c>reopen</c> is set when the packet starts a new connection on the tuple of one that is closing.
    /// </summary>
    public abstract Verdict Track(ReadOnlySpan<byte> packet, in PacketInfo info, Connection conn, ConnDirection dir, bool isNew, long now, out bool reopen);
}
