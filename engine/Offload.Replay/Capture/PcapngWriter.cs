using System.Buffers.Binary;
using System.Text;

namespace Offload.Replay.Capture;

/// <summary>
/// Writes a little-endian pcapng capture: one section, interfaces with names and nanosecond timestamps, and
/// Enhanced Packet Blocks with their direction. Wireshark, tshark and <see cref="CaptureReader"/> read the result.
/// </summary>
/// <remarks>
/// The section header is written by the constructor. Blocks go to the stream as they are made, unbuffered here:
/// give it a buffered stream (a <see cref="FileStream"/> is one). Not thread-safe.
/// </remarks>
public sealed class PcapngWriter : IDisposable
{
    /// <summary>The snaplen <see cref="AddInterface"/> records when none is given: Wireshark's own default.</summary>
    public const int DefaultSnaplen = 262144;

    private const uint SectionHeaderBlockType = 0x0A0D0D0A;
    private const uint InterfaceDescriptionBlockType = 1;
    private const uint EnhancedPacketBlockType = 6;
    private const uint ByteOrderMagic = 0x1A2B3C4D;
    private const ushort IfNameOption = 2;
    private const ushort IfTsresolOption = 9;
    private const ushort EpbFlagsOption = 2;
    private const byte NanosecondResolution = 9;
    private const int EnhancedPacketHeaderLength = 28;   // type, length, interface, timestamp (2), captured and original lengths
    private const int FlagsOptionLength = 8;             // code, length, 4-byte value
    private const int EndOfOptionsLength = 4;

    // The reader refuses blocks over its limit; refusing to write them keeps every file we make readable by it.
    private const int MaxPacketLength = CaptureReader.MaxBlockLength - EnhancedPacketHeaderLength - FlagsOptionLength - EndOfOptionsLength - 4 - 3;

    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private int _interfaceCount;
    private bool _disposed;

    /// <summary>Starts a capture on <paramref name="stream"/> by writing its section header.</summary>
    /// <param name="stream">A writable stream.</param>
    /// <param name="leaveOpen">Whether <see cref="Dispose"/> leaves <paramref name="stream"/> open (it is flushed either way).</param>
    public PcapngWriter(Stream stream, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanWrite)
        {
            throw new ArgumentException("The stream must be writable.", nameof(stream));
        }

        _stream = stream;
        _leaveOpen = leaveOpen;

        Span<byte> block = stackalloc byte[28];
        BinaryPrimitives.WriteUInt32LittleEndian(block, SectionHeaderBlockType);
        BinaryPrimitives.WriteUInt32LittleEndian(block.Slice(4), 28);
        BinaryPrimitives.WriteUInt32LittleEndian(block.Slice(8), ByteOrderMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(block.Slice(12), 1);    // version 1.0
        BinaryPrimitives.WriteUInt16LittleEndian(block.Slice(14), 0);
        BinaryPrimitives.WriteInt64LittleEndian(block.Slice(16), -1);    // section length not known in advance
        BinaryPrimitives.WriteUInt32LittleEndian(block.Slice(24), 28);
        _stream.Write(block);
    }

    /// <summary>Number of interfaces added so far; their ids are 0 to this minus 1.</summary>
    public int InterfaceCount => _interfaceCount;

    /// <summary>Describes an interface (pcapng IDB with <c>if_name</c> and nanosecond <c>if_tsresol</c>).</summary>
    /// <param name="name">The interface name, as shown by Wireshark; at most 65535 bytes of UTF-8.</param>
    /// <param name="linkType">The link type of its packets, a <c>LINKTYPE_</c> value (see <see cref="LinkLayer"/>).</param>
    /// <param name="snaplen">The largest packet capture length the interface claims; 0 for no limit.</param>
    /// <returns>The interface id to pass to <see cref="WritePacket"/>: 0 for the first, then 1, 2, ...</returns>
    public int AddInterface(string name, ushort linkType, int snaplen = DefaultSnaplen)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(name);
        ArgumentOutOfRangeException.ThrowIfNegative(snaplen);
        byte[] nameBytes = Encoding.UTF8.GetBytes(name);
        if (nameBytes.Length > ushort.MaxValue)
        {
            throw new ArgumentException("The interface name is longer than a pcapng option can hold (65535 bytes of UTF-8).", nameof(name));
        }

        int namePadded = Pad4(nameBytes.Length);
        // type, length, link type, reserved, snaplen | if_name | if_tsresol (1 byte, padded) | end of options | trailing length
        int length = 16 + 4 + namePadded + 8 + EndOfOptionsLength + 4;
        Span<byte> head = stackalloc byte[20];
        BinaryPrimitives.WriteUInt32LittleEndian(head, InterfaceDescriptionBlockType);
        BinaryPrimitives.WriteUInt32LittleEndian(head.Slice(4), (uint)length);
        BinaryPrimitives.WriteUInt16LittleEndian(head.Slice(8), linkType);
        BinaryPrimitives.WriteUInt16LittleEndian(head.Slice(10), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(head.Slice(12), (uint)snaplen);
        BinaryPrimitives.WriteUInt16LittleEndian(head.Slice(16), IfNameOption);
        BinaryPrimitives.WriteUInt16LittleEndian(head.Slice(18), (ushort)nameBytes.Length);
        _stream.Write(head);
        _stream.Write(nameBytes);

        Span<byte> tail = stackalloc byte[3 + 8 + EndOfOptionsLength + 4];
        tail.Clear();
        int at = namePadded - nameBytes.Length;
        BinaryPrimitives.WriteUInt16LittleEndian(tail.Slice(at), IfTsresolOption);
        BinaryPrimitives.WriteUInt16LittleEndian(tail.Slice(at + 2), 1);
        tail[at + 4] = NanosecondResolution;
        at += 8 + EndOfOptionsLength;   // value padding and opt_endofopt are the zeros already there
        BinaryPrimitives.WriteUInt32LittleEndian(tail.Slice(at), (uint)length);
        _stream.Write(tail.Slice(0, at + 4));

        return _interfaceCount++;
    }

    /// <summary>Writes one packet as an Enhanced Packet Block, its original length equal to its captured length.</summary>
    /// <param name="interfaceId">An id returned by <see cref="AddInterface"/>.</param>
    /// <param name="timestampNanoseconds">Capture time in nanoseconds since the Unix epoch; not negative.</param>
    /// <param name="data">The packet, from its link-layer header on.</param>
    /// <param name="direction">Recorded in <c>epb_flags</c> when known; omitted otherwise.</param>
    public void WritePacket(int interfaceId, long timestampNanoseconds, ReadOnlySpan<byte> data, PacketDirection direction = PacketDirection.Unknown)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((uint)interfaceId >= (uint)_interfaceCount)
        {
            throw new ArgumentOutOfRangeException(nameof(interfaceId), interfaceId, $"No interface {interfaceId}: {_interfaceCount} added so far.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(timestampNanoseconds);
        if (data.Length > MaxPacketLength)
        {
            throw new ArgumentOutOfRangeException(nameof(data), data.Length, $"A packet may hold at most {MaxPacketLength} bytes.");
        }

        if (direction is not (PacketDirection.Unknown or PacketDirection.Inbound or PacketDirection.Outbound))
        {
            throw new ArgumentOutOfRangeException(nameof(direction), direction, "Not a packet direction.");
        }

        bool withFlags = direction != PacketDirection.Unknown;
        int dataPadded = Pad4(data.Length);
        int length = EnhancedPacketHeaderLength + dataPadded + (withFlags ? FlagsOptionLength + EndOfOptionsLength : 0) + 4;

        Span<byte> head = stackalloc byte[EnhancedPacketHeaderLength];
        BinaryPrimitives.WriteUInt32LittleEndian(head, EnhancedPacketBlockType);
        BinaryPrimitives.WriteUInt32LittleEndian(head.Slice(4), (uint)length);
        BinaryPrimitives.WriteUInt32LittleEndian(head.Slice(8), (uint)interfaceId);
        BinaryPrimitives.WriteUInt32LittleEndian(head.Slice(12), (uint)((ulong)timestampNanoseconds >> 32));
        BinaryPrimitives.WriteUInt32LittleEndian(head.Slice(16), (uint)timestampNanoseconds);
        BinaryPrimitives.WriteUInt32LittleEndian(head.Slice(20), (uint)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(head.Slice(24), (uint)data.Length);
        _stream.Write(head);
        _stream.Write(data);

        Span<byte> tail = stackalloc byte[3 + FlagsOptionLength + EndOfOptionsLength + 4];
        tail.Clear();
        int at = dataPadded - data.Length;
        if (withFlags)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(tail.Slice(at), EpbFlagsOption);
            BinaryPrimitives.WriteUInt16LittleEndian(tail.Slice(at + 2), 4);
            // The low two bits of epb_flags are the direction, coded as PacketDirection's values.
            BinaryPrimitives.WriteUInt32LittleEndian(tail.Slice(at + 4), (uint)direction);
            at += FlagsOptionLength + EndOfOptionsLength;
        }

        BinaryPrimitives.WriteUInt32LittleEndian(tail.Slice(at), (uint)length);
        _stream.Write(tail.Slice(0, at + 4));
    }

    /// <summary>Flushes the underlying stream.</summary>
    public void Flush()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _stream.Flush();
    }

    /// <summary>Flushes the stream, and closes it unless the writer was told to leave it open.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        try
        {
            _stream.Flush();
        }
        finally
        {
            if (!_leaveOpen)
            {
                _stream.Dispose();
            }
        }
    }

    private static int Pad4(int length) => (length + 3) & ~3;
}
