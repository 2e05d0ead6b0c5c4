using System.Buffers;
using System.Buffers.Binary;

namespace Offload.Alg.H323;

/// <summary>
/// What a Q.931, H.245 or RAS flow remembers between messages (the kernel's nf_ct_h323_master): per direction, the
/// signalling port announced and the one the peer was told instead, and the RTP ports of up to
/// <see cref="RtpChannels"/> logical channels with the router's ports that replaced them, so that a channel announced
/// again (its RTCP address, an Ack, a repeated OpenLogicalChannel) keeps its port.
/// </summary>
internal sealed class H323State
{
    /// <summary>Logical channels whose ports are remembered (the kernel's H323_RTP_CHANNEL_MAX).</summary>
    public const int RtpChannels = 4;

    /// <summary>The version of what <see cref="Save"/> writes (the helpers' <see cref="ConntrackHelper.StateVersion"/>).</summary>
    public const int Version = 1;

    /// <summary>The saved form's length: the signalling ports and the RTP ports, 16 bits each.</summary>
    private const int SavedLength = (2 + (RtpChannels * 2)) * 2;

    private readonly ushort[] _signalPorts = new ushort[2];
    private readonly ushort[] _pendingTpkt = new ushort[2];
    private readonly ushort[] _rtpPorts = new ushort[RtpChannels * 2];

    /// <summary>The signalling port announced in direction <paramref name="direction"/> (0 original, 1 reply); 0 when none.</summary>
    public ushort SignalPort(int direction) => _signalPorts[direction];

    public void SetSignalPorts(int direction, ushort announced, ushort translated)
    {
        _signalPorts[direction] = announced;
        _signalPorts[1 - direction] = translated;
    }

    public void ClearSignalPorts() => Array.Clear(_signalPorts);

    /// <summary>A RAS flow's registration time to live, in seconds (the last RRQ's or RCF's; 0 before one).</summary>
    public long RegistrationTtl { get; set; }

    /// <summary>
    /// The length of the TPKT data announced by a header that came alone in the last segment of
    /// <paramref name="direction"/> (NetMeeting sends them apart), 0 when none; taking it forgets it.
    /// </summary>
    public int TakePendingTpkt(int direction)
    {
        int length = _pendingTpkt[direction];
        _pendingTpkt[direction] = 0;
        return length;
    }

    public void SetPendingTpkt(int direction, int length) => _pendingTpkt[direction] = (ushort)length;

    /// <summary>
    /// The slot of the channel whose RTP port <paramref name="rtpPort"/> was announced in <paramref name="direction"/>,
    /// or of the first free slot (<paramref name="known"/> false); -1 when all are taken by other channels.
    /// </summary>
    public int FindRtp(int direction, ushort rtpPort, out bool known)
    {
        for (int i = 0; i < RtpChannels; i++)
        {
            ushort port = _rtpPorts[(i * 2) + direction];
            if (port == rtpPort)
            {
                known = true;
                return i;
            }

            if (port == 0)
            {
                known = false;
                return i;
            }
        }

        known = false;
        return -1;
    }

    /// <summary>The port that replaced the RTP port of slot <paramref name="slot"/> (announced in <paramref name="direction"/>).</summary>
    public ushort TranslatedRtp(int slot, int direction) => _rtpPorts[(slot * 2) + 1 - direction];

    /// <summary>The RTP port slot <paramref name="slot"/> remembers as announced in <paramref name="direction"/>, and the router's port that replaced it.</summary>
    public bool TryGetRtp(int slot, int direction, out ushort announced, out ushort translated)
    {
        announced = _rtpPorts[(slot * 2) + direction];
        translated = _rtpPorts[(slot * 2) + 1 - direction];
        return announced != 0;
    }

    public void SetRtp(int slot, int direction, ushort announced, ushort translated)
    {
        _rtpPorts[(slot * 2) + direction] = announced;
        _rtpPorts[(slot * 2) + 1 - direction] = translated;
    }

    /// <summary>
    /// Writes the ports remembered (a TPKT header waiting for its data is not: the daemon restarted in between), so that
    /// a channel announced again after a restart keeps its port at the router.
    /// </summary>
    public static bool Save(object state, IBufferWriter<byte> writer)
    {
        if (state is not H323State h323)
        {
            return false;
        }

        var span = writer.GetSpan(SavedLength);
        int at = 0;
        foreach (ushort port in h323._signalPorts.Concat(h323._rtpPorts))
        {
            BinaryPrimitives.WriteUInt16BigEndian(span.Slice(at), port);
            at += 2;
        }

        writer.Advance(SavedLength);
        return true;
    }

    /// <summary>The state <see cref="Save"/> wrote, or null (another version, another length: fresh state).</summary>
    public static H323State? Restore(ReadOnlySpan<byte> data, int version)
    {
        if (version != Version || data.Length != SavedLength)
        {
            return null;
        }

        var state = new H323State();
        for (int i = 0; i < state._signalPorts.Length; i++)
        {
            state._signalPorts[i] = BinaryPrimitives.ReadUInt16BigEndian(data.Slice(i * 2));
        }

        for (int i = 0; i < state._rtpPorts.Length; i++)
        {
            state._rtpPorts[i] = BinaryPrimitives.ReadUInt16BigEndian(data.Slice((state._signalPorts.Length + i) * 2));
        }

        return state;
    }
}
