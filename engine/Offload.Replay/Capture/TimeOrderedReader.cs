using System.Buffers;

namespace Offload.Replay.Capture;

/// <summary>
/// Reads a capture in time order: a stable merge of its interfaces by timestamp. Each interface's packets keep
/// their file order; across interfaces the earlier timestamp goes first, and on equal timestamps the packet that
/// comes first in the file.
/// </summary>
/// <remarks>
/// <c>dumpcap -i A -i B</c> writes each interface's packets in batches, so its file is not in time order across
/// interfaces, while the packets of one interface are. A router handled them in time order: a reply read before the
/// packet it answers would find no connection. So before it returns a packet the merge holds one pending packet of
/// every awaited interface (or knows that interface has no more): it reads ahead as far as the file strays from time
/// order, and holds those packets in pooled buffers meanwhile.
/// </remarks>
public sealed class TimeOrderedReader
{
    private readonly CaptureReader _reader;
    private readonly Func<CaptureInterface, bool> _awaited;
    private readonly List<Queue<Pending>> _pending = [];
    private readonly List<bool> _isAwaited = [];
    private byte[]? _returned;
    private long _sequence;
    private long _lastSequence = -1;
    private int _held;
    private bool _end;

    /// <param name="reader">The capture, read from where it stands.</param>
    /// <param name="awaited">
    /// The interfaces whose packets the caller needs in order (default: all). The merge does not wait for the
    /// others, so an interface the caller skips anyway costs no read-ahead; its packets still come, near their time.
    /// </param>
    public TimeOrderedReader(CaptureReader reader, Func<CaptureInterface, bool>? awaited = null)
    {
        _reader = reader;
        _awaited = awaited ?? (_ => true);
    }

    /// <summary>The interfaces described so far (see <see cref="CaptureReader.Interfaces"/>).</summary>
    public IReadOnlyList<CaptureInterface> Interfaces => _reader.Interfaces;

    /// <summary>Packets returned after a packet that follows them in the file: how far the file was from time order.</summary>
    public long Reordered { get; private set; }

    /// <summary>The most packets held at once while reading ahead.</summary>
    public int MostHeld { get; private set; }

    /// <summary>
    /// The next packet in time order. Its <see cref="CapturedPacket.Data"/> stays valid until the next call, as with
    /// <see cref="CaptureReader.TryRead"/>.
    /// </summary>
    public bool TryRead(out CapturedPacket packet)
    {
        if (_returned is not null)
        {
            ArrayPool<byte>.Shared.Return(_returned);
            _returned = null;
        }

        while (!_end && (_held == 0 || AnAwaitedInterfaceHasNothingPending()))
        {
            ReadAhead();
        }

        Queue<Pending>? first = null;
        foreach (var queue in _pending)
        {
            if (queue.Count == 0)
            {
                continue;
            }

            var head = queue.Peek();
            var best = first?.Peek();
            if (best is null
                || head.Packet.TimestampNanoseconds < best.Value.Packet.TimestampNanoseconds
                || (head.Packet.TimestampNanoseconds == best.Value.Packet.TimestampNanoseconds && head.Sequence < best.Value.Sequence))
            {
                first = queue;
            }
        }

        if (first is null)
        {
            packet = default;
            return false;
        }

        var next = first.Dequeue();
        _held--;
        if (next.Sequence < _lastSequence)
        {
            Reordered++;
        }

        _lastSequence = Math.Max(_lastSequence, next.Sequence);
        _returned = next.Buffer;
        packet = next.Packet;
        return true;
    }

    private bool AnAwaitedInterfaceHasNothingPending()
    {
        var interfaces = _reader.Interfaces;
        for (int i = _isAwaited.Count; i < interfaces.Count; i++)
        {
            _isAwaited.Add(_awaited(interfaces[i])); // Asked once per interface, not once per packet.
        }

        for (int i = 0; i < interfaces.Count; i++)
        {
            if (_isAwaited[i] && (i >= _pending.Count || _pending[i].Count == 0))
            {
                return true;
            }
        }

        return false;
    }

    private void ReadAhead()
    {
        if (!_reader.TryRead(out var packet))
        {
            _end = true;
            return;
        }

        while (_pending.Count <= packet.InterfaceId)
        {
            _pending.Add(new Queue<Pending>());
        }

        // The reader reuses its buffer: a packet held for later needs its own copy.
        var data = packet.Data.Span;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Max(data.Length, 1));
        data.CopyTo(buffer);
        var copy = new CapturedPacket(
            packet.TimestampNanoseconds, packet.InterfaceId, packet.LinkType, packet.Direction, packet.OriginalLength, buffer.AsMemory(0, data.Length));
        _pending[packet.InterfaceId].Enqueue(new Pending(_sequence++, copy, buffer));
        MostHeld = Math.Max(MostHeld, ++_held);
    }

    private readonly record struct Pending(long Sequence, CapturedPacket Packet, byte[] Buffer);
}
