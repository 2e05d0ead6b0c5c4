using Offload.Engine;
using Offload.Sdk;

namespace Offload.Rules;

/// <summary>
/// Turns the daemon's view of a packet it accepts into bits of the packet mark (inside
/// <see cref="SteeringConfig.StateMark"/>, the rest of the mark kept), so that iptables rules after the queue match
/// what <c>-m conntrack --ctstate</c> would give for a flow the kernel tracked.
/// </summary>
public sealed class StateMarker
{
    private readonly uint _mask;
    private readonly uint _offloaded;
    private readonly uint _new;
    private readonly uint _established;
    private readonly uint _related;
    private readonly uint _reply;
    private readonly uint _destinationNat;
    private readonly uint _sourceNat;

    public StateMarker(SteeringConfig steering)
    {
        _mask = steering.StateMark;
        _offloaded = SteeringRules.MarkBit(steering, StateMarkBits.Offloaded);
        _new = SteeringRules.MarkBit(steering, StateMarkBits.New);
        _established = SteeringRules.MarkBit(steering, StateMarkBits.Established);
        _related = SteeringRules.MarkBit(steering, StateMarkBits.Related);
        _reply = SteeringRules.MarkBit(steering, StateMarkBits.Reply);
        _destinationNat = SteeringRules.MarkBit(steering, StateMarkBits.DestinationNat);
        _sourceNat = SteeringRules.MarkBit(steering, StateMarkBits.SourceNat);
    }

    /// <summary>The mark for a packet the engine accepted: <paramref name="mark"/> with our bits replaced.</summary>
    /// <param name="ctx">The packet's context after <see cref="ConntrackEngine.Process"/> returned Accept.</param>
    /// <param name="mark">The mark the packet came with.</param>
    public uint For(ref PacketContext ctx, uint mark)
    {
        uint bits = _offloaded | ctx.CtInfo switch
        {
            CtInfo.New => _new,
            CtInfo.Related or CtInfo.RelatedReply => _related,
            _ => _established,
        };
        if (ctx.Direction == ConnDirection.Reply)
        {
            bits |= _reply;
        }

        if (ctx.IsDestinationNatted)
        {
            bits |= _destinationNat;
        }

        if (ctx.IsSourceNatted)
        {
            bits |= _sourceNat;
        }

        return (mark & ~_mask) | bits;
    }
}
