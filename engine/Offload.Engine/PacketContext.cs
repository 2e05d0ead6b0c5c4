using Offload.Engine.Conntrack;
using Offload.Engine.Packets;

namespace Offload.Engine;

/// <summary>
/// One packet on its way through the engine: its buffer (with room to grow when a helper lengthens it),
/// the interfaces it came in and goes out on, and what the engine learnt about it between hooks
/// (the kernel keeps the same in the skb: its conntrack entry and ctinfo).
/// </summary>
public ref struct PacketContext
{
    /// <summary>The packet, starting at its IP header, followed by spare room.</summary>
    public Span<byte> Buffer;

    /// <summary>The packet's current length in <see cref="Buffer"/>; a rewrite may change it.</summary>
    public int Length;

    /// <summary>The interface the packet came in on (0: unknown).</summary>
    public int InInterface;

    /// <summary>The interface routing chose (0: not routed yet).</summary>
    public int OutInterface;

    /// <summary>
    /// Set when the transport checksum holds only the pseudo-header sum (offloaded to the device; NFQUEUE's
    /// CSUMNOTREADY). PreRouting completes it, since whatever the engine gives back is taken as final.
    /// </summary>
    public bool ChecksumPartial;

    /// <summary>
    /// Set for a segmentation-offload super-packet (NFQUEUE's GSO flag). The kernel recomputes each segment's TCP
    /// checksum when it splits such a packet, so a partial TCP checksum need not be completed here.
    /// </summary>
    public bool Gso;

    /// <summary>
    /// After <see cref="Verdict.Handover"/>: the shard that owns the packet, or -1 for an ICMP error about a flow no
    /// shard published (any shard may hold it: ask each with <see cref="ConntrackEngine.TracksFlowOf"/>). Set
    /// <see cref="HandedOver"/> before running the packet through that shard.
    /// </summary>
    public int OwnerShard;

    /// <summary>
    /// The packet came from another shard's queue: a connection it creates is published both ways (its packets may keep
    /// arriving at that queue), and it is never handed over again.
    /// </summary>
    public bool HandedOver;

    /// <summary>
    /// Set when whoever hands the packet over has verified its transport checksum already (a live queue: the kernel's
    /// NFQA_SKB_INFO without CSUM_NOTVERIFIED, as the device or the stack checked it). PreRouting then does not sum
    /// the packet again; the IPv4 header checksum is still checked. False by default: a replay and the tests verify.
    /// </summary>
    public bool ChecksumVerified;

    internal PacketInfo Info;
    internal Connection? Conn;
    internal ConnDirection Dir;
    internal CtInfo Ct;
    internal bool Unconfirmed;
    internal bool IsIcmpError;
    internal bool PassedPreRouting;
    internal bool Untracked;
    internal PacketInfo Inner;
    internal int InnerOffset;

    public PacketContext(Span<byte> buffer, int length, int inInterface = 0)
    {
        Buffer = buffer;
        Length = length;
        InInterface = inInterface;
    }

    /// <summary>The packet as it stands.</summary>
    public readonly Span<byte> Packet => Buffer.Slice(0, Length);

    /// <summary>The connection the packet belongs to, once PreRouting has run.</summary>
    public readonly Connection? Connection => Conn;

    /// <summary>
    /// The packet's relation to its connection (the kernel's ctinfo), valid once PreRouting accepted it: New for a
    /// connection that has seen no reply yet, Established once it has, Related for an expected connection's packets and
    /// for an ICMP error quoting a tracked flow; the reply variants for packets in the reply direction.
    /// </summary>
    public readonly CtInfo CtInfo => Ct;

    /// <summary>Which of its connection's tuples the packet matched, valid once PreRouting accepted it.</summary>
    public readonly ConnDirection Direction => Dir;

    /// <summary>
    /// The status bits of the packet's connection as they stand (the kernel's ct->status), or
    /// <see cref="ConnStatus.None"/> when the packet has none (it was dropped, or PreRouting has not run). For an ICMP
    /// error these are the bits of the flow it quotes.
    /// </summary>
    /// <remarks>
    /// After <see cref="ConntrackEngine.Process"/> (or PostRouting) accepted a packet, both translations of its
    /// connection are decided, so <see cref="ConnStatus.SrcNat"/> and <see cref="ConnStatus.DstNat"/> are final and
    /// <see cref="ConnStatus.Confirmed"/> is set. A field read: nothing is allocated.
    /// </remarks>
    public readonly ConnStatus ConnectionStatus => Conn is { } conn ? conn.StatusBits : ConnStatus.None;

    /// <summary>
    /// True when the packet's connection has its source translated in the original direction (SNAT or MASQUERADE,
    /// the kernel's IPS_SRC_NAT): its replies are addressed to the translated source. False without a connection.
    /// </summary>
    public readonly bool IsSourceNatted => (ConnectionStatus & ConnStatus.SrcNat) != 0;

    /// <summary>
    /// True when the packet's connection has its destination translated in the original direction (DNAT or REDIRECT,
    /// a port forward; the kernel's IPS_DST_NAT). False without a connection.
    /// </summary>
    public readonly bool IsDestinationNatted => (ConnectionStatus & ConnStatus.DstNat) != 0;

    /// <summary>
    /// True once the engine has changed the packet's bytes or length (NAT, a helper's rewrite, sequence adjustment, a
    /// checksum it completed, padding it cut), false while the packet is as it came: a caller answers an unchanged
    /// packet with a plain verdict instead of sending its bytes back. Reset by PreRouting.
    /// </summary>
    public bool Changed { readonly get; internal set; }

    /// <summary>The parsed headers (valid after PreRouting accepted the packet).</summary>
    public readonly PacketInfo Headers => Info;
}

