using Offload.Engine.Conntrack;
using Offload.Engine.Expectations;
using Offload.Engine.Helpers;
using Offload.Engine.Packets;

namespace Offload.Engine.Tests.Fuzz;

/// <summary>
/// A helper that does what a real ALG may do (rewrite payloads longer or shorter, announce expectations,
/// drop, count events), steered by the payload's own bytes, so fuzzed packets drive the engine's rewrite,
/// sequence-adjustment and expectation paths the way FTP traffic would, without needing a valid FTP command.
/// </summary>
internal sealed class FuzzHelper : ConntrackHelper
{
    public FuzzHelper()
        : base("fuzz", new ExpectationPolicy(3, TimeSpan.FromSeconds(60)))
    {
    }

    public int Calls { get; private set; }

    public int RewritesRefused { get; private set; }

    /// <summary>
    /// Only lengthen payloads, one rewrite per packet. With a shrink and then a growth in the same direction, the
    /// peer's ACK of the grown segment is judged against the older offset (kernel and engine both take the offset
    /// at ack - 1 in the peer's numbering, nf_ct_seq_offset) and can look out of window; whole conversations that
    /// must pass use this mode.
    /// </summary>
    public bool GrowOnly { get; set; }

    public override HelperVerdict Help(ref HelperContext context)
    {
        Calls++;
        var payload = context.Payload;
        if (payload.Length < 4)
        {
            return HelperVerdict.Accept;
        }

        byte control = payload[0];
        if ((control & 0x80) != 0 && (control & 0x40) != 0)
        {
            return HelperVerdict.Drop;
        }

        if ((control & 0x01) != 0)
        {
            int offset = payload[1] % payload.Length;
            int length = payload[2] % (payload.Length - offset + 1);
            int grow = GrowOnly ? length + 1 + (payload[3] % 16) : payload[3] % 48;
            Span<byte> replacement = stackalloc byte[grow];
            replacement.Fill((byte)'7');
            if (!context.Rewrite(offset, length, replacement))
            {
                RewritesRefused++;
            }

            if ((control & 0x02) != 0 && !GrowOnly)
            {
                // A second rewrite, sometimes out of order or out of bounds: the engine must refuse those and keep the first.
                // It grows one byte into three, after a first rewrite that may shrink: the intermediate length must fit too
                // (FuzzFindingsTests.Rewrites_that_grow_then_shrink_never_throw_when_the_result_fits).
                int second = (control & 0x04) != 0 ? offset : offset + length + 1;
                if (!context.Rewrite(second, 1, "xyz"u8))
                {
                    RewritesRefused++;
                }
            }
        }

        if ((control & 0x08) != 0)
        {
            var request = new ExpectationRequest
            {
                Protocol = (control & 0x10) != 0 ? IpProtocol.Udp : IpProtocol.Tcp,
                Source = context.OtherTuple.Source,
                SourcePrefixLength = context.Tuple.Family == 4 ? 32 : 128,
                Destination = context.Tuple.Source,
                DestinationPort = (ushort)((payload[1] << 8) | payload[2]),
            };
            if (context.Expect(ref request) != ExpectResult.Added)
            {
                context.Count(HelperEvent.ExpectationFailed);
            }
        }

        if ((control & 0x20) != 0)
        {
            context.Count(HelperEvent.MalformedCommand);
        }

        return HelperVerdict.Accept;
    }
}
