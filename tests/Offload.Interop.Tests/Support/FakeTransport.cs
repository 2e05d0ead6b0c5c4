using Offload.Interop.Netlink;
using static Offload.Interop.Netlink.NetlinkConstants;

namespace Offload.Interop.Tests.Support;

/// <summary>
/// Stands in for the kernel end of a socket: hands out queued datagrams (recorded or built), records what is
/// sent, and acknowledges requests that ask for it, so NfQueue's logic runs without root and without allocating.
/// </summary>
internal sealed class FakeTransport : INetlinkTransport
{
    private uint _sequence;

    /// <summary>A datagram to deliver; null bytes stand for an ENOBUFS report.</summary>
    internal readonly record struct Datagram(byte[]? Bytes, uint Sender = 0, bool Truncate = false);

    internal Queue<Datagram> Incoming { get; } = new();

    internal List<byte[]> Sent { get; } = [];

    internal List<string> Log { get; } = [];

    /// <summary>Keep copies of sent datagrams (off for allocation measurements).</summary>
    internal bool RecordSends { get; set; } = true;

    internal int SendCount { get; private set; }

    /// <summary>Answer requests flagged NLM_F_ACK; returns the datagrams to queue (default: a plain ack).</summary>
    internal Func<uint, ushort, IEnumerable<byte[]>>? Answer { get; set; } = (seq, type) => [Synth.Error(seq, type)];

    /// <summary>Datagrams delivered before the answer to a request (packets racing the acknowledgement).</summary>
    internal List<byte[]> BeforeAnswer { get; } = [];

    public uint PortId => 0x2acd;

    public TimeSpan ReceiveTimeout { get; set; }

    public bool Disposed { get; private set; }

    public uint NextSequence() => ++_sequence;

    public void SendBatch(ReadOnlySpan<byte> messages)
    {
        SendCount++;
        if (!RecordSends)
        {
            return;
        }

        Sent.Add(messages.ToArray());
        Log.Add("send");
        var reader = new NetlinkMessageReader(messages);
        while (reader.TryRead(out NetlinkMessage m))
        {
            if ((m.Flags & NLM_F_ACK) != 0 && Answer is not null)
            {
                foreach (byte[] early in BeforeAnswer)
                {
                    Incoming.Enqueue(new Datagram(early));
                }

                BeforeAnswer.Clear();
                foreach (byte[] answer in Answer(m.Sequence, m.Type))
                {
                    Incoming.Enqueue(new Datagram(answer));
                }
            }
        }
    }

    public int Receive(Span<byte> buffer)
    {
        while (Incoming.TryDequeue(out Datagram d))
        {
            if (d.Bytes is null)
            {
                return NetlinkSocket.NoBuffers;
            }

            if (d.Sender != 0)
            {
                continue;
            }

            int n = Math.Min(d.Bytes.Length, buffer.Length);
            d.Bytes.AsSpan(0, n).CopyTo(buffer);
            return d.Bytes.Length;
        }

        return NetlinkSocket.TimedOut;
    }

    public int ReceiveMany(ReceiveSlots slots, int count)
    {
        if (RecordSends)
        {
            Log.Add("receive");
        }

        int n = 0;
        while (n < count && Incoming.TryPeek(out Datagram d))
        {
            if (d.Bytes is null)
            {
                if (n > 0)
                {
                    break;
                }

                Incoming.Dequeue();
                return NetlinkSocket.NoBuffers;
            }

            Incoming.Dequeue();
            Span<byte> slot = slots.Whole(n);
            int stored = d.Truncate ? d.Bytes.Length / 2 : Math.Min(d.Bytes.Length, slot.Length);
            d.Bytes.AsSpan(0, stored).CopyTo(slot);
            bool truncated = d.Truncate || d.Bytes.Length > slot.Length;
            slots.SetReceived(n, truncated ? Math.Max(d.Bytes.Length, slot.Length + 1) : d.Bytes.Length, truncated, d.Sender);
            if (d.Truncate)
            {
                // Stored() shows min(length, slot size) bytes: make what lies past our copy unmistakable junk.
                slot[stored..].Fill(0xEE);
            }

            n++;
        }

        return n == 0 ? NetlinkSocket.TimedOut : n;
    }

    public void Dispose() => Disposed = true;
}
