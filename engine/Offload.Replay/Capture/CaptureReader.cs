using System.Buffers.Binary;
using System.Text;

namespace Offload.Replay.Capture;

/// <summary>The file format a <see cref="CaptureReader"/> found.</summary>
public enum CaptureFileFormat
{
    /// <summary>Classic libpcap format (either byte order, microsecond or nanosecond timestamps).</summary>
    Pcap,

    /// <summary>pcapng, one or more sections.</summary>
    Pcapng,
}

/// <summary>
/// Reads packets from a classic pcap or a pcapng capture, telling them apart by their first bytes.
/// </summary>
/// <remarks>
/// <para>
/// One buffer is reused for every packet: the <see cref="CapturedPacket.Data"/> returned by <see cref="TryRead"/>
/// is valid only until the next call to <see cref="TryRead"/> or <see cref="Dispose"/>. Reading allocates nothing
/// per packet; the buffer grows only when a block larger than any before it arrives.
/// </para>
/// <para>
/// Every defect of the file raises <see cref="CaptureFormatException"/> with its byte offset; nothing in the file can
/// make the reader loop, index out of range or allocate more than twice the bytes the stream actually holds (no
/// block may claim more than 256 MiB, nor, on a seekable stream, more than what remains of it).
/// </para>
/// <para>
/// A file that ends exactly between two records or blocks ends normally (<see cref="TryRead"/> returns false). A file
/// cut inside a record or block, as when a capture was killed while writing, raises
/// <see cref="CaptureFormatException"/> instead of dropping the partial packet silently: a replay must not pass for
/// complete when it was not. The packets before the cut have been returned by then, so a caller who wants
/// "as much as possible" can catch the exception and stop there.
/// </para>
/// <para>Not thread-safe.</para>
/// </remarks>
public sealed class CaptureReader : IDisposable
{
    /// <summary>The largest block or record the reader accepts, in bytes.</summary>
    public const int MaxBlockLength = 256 * 1024 * 1024;

    private const uint PcapMagicMicroseconds = 0xA1B2C3D4;
    private const uint PcapMagicNanoseconds = 0xA1B23C4D;
    private const int PcapFileHeaderLength = 24;
    private const int PcapRecordHeaderLength = 16;

    private const uint SectionHeaderBlockType = 0x0A0D0D0A;   // the same in both byte orders, so it can be found before the order is known
    private const uint ByteOrderMagic = 0x1A2B3C4D;
    private const uint InterfaceDescriptionBlockType = 1;
    private const uint SimplePacketBlockType = 3;
    private const uint EnhancedPacketBlockType = 6;
    private const int MinBlockLength = 12;                    // type, length, trailing length
    private const int SectionHeaderMinLength = 28;
    private const int InterfaceDescriptionFixedLength = 8;    // after type and length
    private const int EnhancedPacketFixedLength = 20;
    private const int SimplePacketFixedLength = 4;

    private const ushort OptionEnd = 0;
    private const ushort IfNameOption = 2;
    private const ushort IfTsresolOption = 9;
    private const ushort IfTsoffsetOption = 14;
    private const ushort EpbFlagsOption = 2;

    private const int InitialBufferLength = 4096;

    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private readonly List<CaptureInterface> _interfaces = [];
    private readonly byte[] _head = new byte[PcapFileHeaderLength];
    private byte[] _buffer = new byte[InitialBufferLength];
    private long _position;
    private bool _bigEndian;
    private int _sectionFirstInterface;   // index in _interfaces of interface 0 of the current pcapng section
    private long _lastTimestamp;
    private bool _disposed;

    /// <summary>Reads the file header (the first section header for pcapng) from <paramref name="stream"/>.</summary>
    /// <param name="stream">A readable stream positioned at the start of the capture; offsets in errors count from there.</param>
    /// <param name="leaveOpen">Whether <see cref="Dispose"/> leaves <paramref name="stream"/> open.</param>
    /// <exception cref="CaptureFormatException">The stream is empty, too short, or not a capture this reader knows.</exception>
    public CaptureReader(Stream stream, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanRead)
        {
            throw new ArgumentException("The stream must be readable.", nameof(stream));
        }

        _stream = stream;
        _leaveOpen = leaveOpen;

        int read = ReadUpTo(_head.AsSpan(0, 4));
        if (read < 4)
        {
            throw new CaptureFormatException(0, read == 0 ? "empty capture file" : "file too short for a capture magic number");
        }

        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(_head);
        if (magic == SectionHeaderBlockType)
        {
            Format = CaptureFileFormat.Pcapng;
            ReadExactly(_head.AsSpan(4, 4), 0, "section header block");
            ReadSectionHeader(0);
        }
        else
        {
            Format = CaptureFileFormat.Pcap;
            ReadPcapFileHeader(magic);
        }
    }

    /// <summary>Classic pcap or pcapng.</summary>
    public CaptureFileFormat Format { get; }

    /// <summary>
    /// The interfaces described so far. For pcapng the list grows as <see cref="TryRead"/> meets Interface Description
    /// Blocks, across all sections; every packet's interface is in it by the time the packet is returned.
    /// </summary>
    public IReadOnlyList<CaptureInterface> Interfaces => _interfaces;

    /// <summary>Reads the next packet, skipping blocks that carry none.</summary>
    /// <param name="packet">The packet; its <see cref="CapturedPacket.Data"/> is valid until the next call.</param>
    /// <returns>False at the end of the capture.</returns>
    /// <exception cref="CaptureFormatException">The file is malformed or ends inside a record or block.</exception>
    public bool TryRead(out CapturedPacket packet)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Format == CaptureFileFormat.Pcap ? TryReadPcapRecord(out packet) : TryReadPcapngPacket(out packet);
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (!_leaveOpen)
        {
            _stream.Dispose();
        }
    }

    // ---- classic pcap ----

    private void ReadPcapFileHeader(uint magic)
    {
        TimestampResolution resolution;
        switch (magic)
        {
            case PcapMagicMicroseconds:
                resolution = TimestampResolution.Microseconds;
                break;
            case PcapMagicNanoseconds:
                resolution = TimestampResolution.Nanoseconds;
                break;
            default:
                if (magic == BinaryPrimitives.ReverseEndianness(PcapMagicMicroseconds))
                {
                    resolution = TimestampResolution.Microseconds;
                }
                else if (magic == BinaryPrimitives.ReverseEndianness(PcapMagicNanoseconds))
                {
                    resolution = TimestampResolution.Nanoseconds;
                }
                else
                {
                    throw new CaptureFormatException(0, $"unknown magic number 0x{magic:X8}: neither pcap nor pcapng");
                }

                _bigEndian = true;
                break;
        }

        ReadExactly(_head.AsSpan(4, PcapFileHeaderLength - 4), 0, "pcap file header");
        ReadOnlySpan<byte> header = _head;
        ushort major = U16(header.Slice(4));
        if (major != 2)
        {
            throw new CaptureFormatException(4, $"unsupported pcap version {major}.{U16(header.Slice(6))}");
        }

        uint snaplen = U32(header.Slice(16));
        // The upper bits of this field carry FCS information; the link type is its low 16 bits.
        ushort linkType = (ushort)U32(header.Slice(20));
        _interfaces.Add(new CaptureInterface(0, null, linkType, snaplen, resolution, 0));
    }

    private bool TryReadPcapRecord(out CapturedPacket packet)
    {
        long recordStart = _position;
        Span<byte> header = _head.AsSpan(0, PcapRecordHeaderLength);
        int read = ReadUpTo(header);
        if (read == 0)
        {
            packet = default;
            return false;
        }

        if (read < PcapRecordHeaderLength)
        {
            throw new CaptureFormatException(recordStart, $"file ends inside a packet record header ({read} of {PcapRecordHeaderLength} bytes)");
        }

        uint seconds = U32(header);
        uint fraction = U32(header.Slice(4));
        uint capturedLength = U32(header.Slice(8));
        uint originalLength = U32(header.Slice(12));
        if (capturedLength > MaxBlockLength)
        {
            throw new CaptureFormatException(recordStart + 8, $"captured length {capturedLength} exceeds the {MaxBlockLength}-byte limit");
        }

        ReadIntoBuffer((int)capturedLength, recordStart, "packet record");

        CaptureInterface iface = _interfaces[0];
        // 2^32 seconds times 10^9 plus 2^32 microseconds times 10^3 stays below 2^63: no overflow possible.
        long nanoseconds = (seconds * 1_000_000_000L) + (iface.TimestampResolution.Exponent == 6 ? fraction * 1_000L : fraction);
        _lastTimestamp = nanoseconds;
        packet = new CapturedPacket(nanoseconds, 0, iface.LinkType, PacketDirection.Unknown, originalLength, _buffer.AsMemory(0, (int)capturedLength));
        return true;
    }

    // ---- pcapng ----

    private bool TryReadPcapngPacket(out CapturedPacket packet)
    {
        // Each pass consumes one whole block of at least 12 bytes, so the loop ends with the stream.
        while (true)
        {
            long blockStart = _position;
            int read = ReadUpTo(_head.AsSpan(0, 8));
            if (read == 0)
            {
                packet = default;
                return false;
            }

            if (read < 8)
            {
                throw new CaptureFormatException(blockStart, $"file ends inside a block header ({read} of 8 bytes)");
            }

            if (BinaryPrimitives.ReadUInt32LittleEndian(_head) == SectionHeaderBlockType)
            {
                ReadSectionHeader(blockStart);
                continue;
            }

            uint type = U32(_head);
            int length = CheckBlockLength(U32(_head.AsSpan(4)), MinBlockLength, blockStart, type);
            ReadBlockRest(length, blockStart, type);
            ReadOnlySpan<byte> body = _buffer.AsSpan(0, length - MinBlockLength);

            switch (type)
            {
                case InterfaceDescriptionBlockType:
                    ReadInterfaceDescription(body, blockStart);
                    break;
                case EnhancedPacketBlockType:
                    packet = ReadEnhancedPacket(body, blockStart);
                    return true;
                case SimplePacketBlockType:
                    packet = ReadSimplePacket(body, blockStart);
                    return true;
                default:
                    // Statistics, name resolution, decryption secrets, custom and future blocks: nothing replay needs.
                    break;
            }
        }
    }

    // Called with the block type and length in _head[0..8]; reads the rest of the section header block.
    private void ReadSectionHeader(long blockStart)
    {
        ReadExactly(_head.AsSpan(8, 4), blockStart, "section header block");
        uint byteOrder = BinaryPrimitives.ReadUInt32LittleEndian(_head.AsSpan(8));
        if (byteOrder == ByteOrderMagic)
        {
            _bigEndian = false;
        }
        else if (byteOrder == BinaryPrimitives.ReverseEndianness(ByteOrderMagic))
        {
            _bigEndian = true;
        }
        else
        {
            throw new CaptureFormatException(blockStart + 8, $"section header has an invalid byte-order magic 0x{byteOrder:X8}");
        }

        int length = CheckBlockLength(U32(_head.AsSpan(4)), SectionHeaderMinLength, blockStart, SectionHeaderBlockType);
        // The byte-order magic is already consumed: the buffer receives the block from the version on.
        int rest = length - 12;
        ReadIntoBuffer(rest, blockStart, "section header block");
        CheckTrailer(_buffer.AsSpan(rest - 4), length, blockStart);

        ushort major = U16(_buffer);
        if (major != 1)
        {
            throw new CaptureFormatException(blockStart + 12, $"unsupported pcapng version {major}.{U16(_buffer.AsSpan(2))}");
        }

        // Interface ids restart at 0 in every section; ours keep counting so that they stay unique in the file.
        _sectionFirstInterface = _interfaces.Count;
    }

    private void ReadInterfaceDescription(ReadOnlySpan<byte> body, long blockStart)
    {
        if (body.Length < InterfaceDescriptionFixedLength)
        {
            throw new CaptureFormatException(blockStart, $"interface description block too short ({body.Length + MinBlockLength} bytes)");
        }

        ushort linkType = U16(body);
        uint snaplen = U32(body.Slice(4));
        string? name = null;
        TimestampResolution resolution = TimestampResolution.Microseconds;
        long offsetSeconds = 0;

        long optionsStart = blockStart + 8 + InterfaceDescriptionFixedLength;
        var options = new OptionReader(this, body.Slice(InterfaceDescriptionFixedLength), optionsStart);
        while (options.TryNext(out ushort code, out ReadOnlySpan<byte> value, out long valueOffset))
        {
            switch (code)
            {
                case IfNameOption:
                    int end = value.IndexOf((byte)0);
                    name = Encoding.UTF8.GetString(end < 0 ? value : value.Slice(0, end));
                    break;
                case IfTsresolOption:
                    if (value.Length != 1 || !TimestampResolution.TryFromCode(value[0], out resolution))
                    {
                        throw new CaptureFormatException(valueOffset, value.Length != 1
                            ? $"if_tsresol option has length {value.Length}, not 1"
                            : $"if_tsresol value 0x{value[0]:X2} is out of range");
                    }

                    break;
                case IfTsoffsetOption:
                    if (value.Length != 8)
                    {
                        throw new CaptureFormatException(valueOffset, $"if_tsoffset option has length {value.Length}, not 8");
                    }

                    offsetSeconds = _bigEndian ? BinaryPrimitives.ReadInt64BigEndian(value) : BinaryPrimitives.ReadInt64LittleEndian(value);
                    break;
            }
        }

        _interfaces.Add(new CaptureInterface(_interfaces.Count, name, linkType, snaplen, resolution, offsetSeconds));
    }

    private CapturedPacket ReadEnhancedPacket(ReadOnlySpan<byte> body, long blockStart)
    {
        if (body.Length < EnhancedPacketFixedLength)
        {
            throw new CaptureFormatException(blockStart, $"enhanced packet block too short ({body.Length + MinBlockLength} bytes)");
        }

        CaptureInterface iface = SectionInterface(U32(body), blockStart + 8);
        ulong units = ((ulong)U32(body.Slice(4)) << 32) | U32(body.Slice(8));
        uint capturedLength = U32(body.Slice(12));
        uint originalLength = U32(body.Slice(16));
        int room = body.Length - EnhancedPacketFixedLength;
        if (capturedLength > (uint)room)
        {
            throw new CaptureFormatException(blockStart + 20, $"captured length {capturedLength} exceeds the {room} bytes the block holds");
        }

        var direction = PacketDirection.Unknown;
        int padded = Math.Min(room, (int)((capturedLength + 3) & ~3u));
        int optionsIndex = EnhancedPacketFixedLength + padded;
        var options = new OptionReader(this, body.Slice(optionsIndex), blockStart + 8 + optionsIndex);
        while (options.TryNext(out ushort code, out ReadOnlySpan<byte> value, out long valueOffset))
        {
            if (code == EpbFlagsOption)
            {
                if (value.Length != 4)
                {
                    throw new CaptureFormatException(valueOffset, $"epb_flags option has length {value.Length}, not 4");
                }

                direction = (U32(value) & 3) switch
                {
                    1 => PacketDirection.Inbound,
                    2 => PacketDirection.Outbound,
                    _ => PacketDirection.Unknown,
                };
            }
        }

        long nanoseconds = ToNanoseconds(iface, units, blockStart + 12);
        _lastTimestamp = nanoseconds;
        return new CapturedPacket(nanoseconds, iface.Id, iface.LinkType, direction, originalLength,
            _buffer.AsMemory(EnhancedPacketFixedLength, (int)capturedLength));
    }

    private CapturedPacket ReadSimplePacket(ReadOnlySpan<byte> body, long blockStart)
    {
        if (body.Length < SimplePacketFixedLength)
        {
            throw new CaptureFormatException(blockStart, $"simple packet block too short ({body.Length + MinBlockLength} bytes)");
        }

        CaptureInterface iface = SectionInterface(0, blockStart);
        uint originalLength = U32(body);
        // The block does not record how much was captured: the smallest of the packet, the snaplen and the room.
        uint captured = Math.Min(originalLength, (uint)(body.Length - SimplePacketFixedLength));
        if (iface.Snaplen != 0)
        {
            captured = Math.Min(captured, iface.Snaplen);
        }

        // The block has no timestamp. Repeating the previous packet's keeps a replay's clock from jumping back to 1970.
        return new CapturedPacket(_lastTimestamp, iface.Id, iface.LinkType, PacketDirection.Unknown, originalLength,
            _buffer.AsMemory(SimplePacketFixedLength, (int)captured));
    }

    private CaptureInterface SectionInterface(uint sectionId, long offset)
    {
        int available = _interfaces.Count - _sectionFirstInterface;
        if (sectionId >= (uint)available)
        {
            throw new CaptureFormatException(offset, available == 0
                ? $"packet for interface {sectionId} before any interface description in its section"
                : $"packet for interface {sectionId}, but the section describes only {available}");
        }

        return _interfaces[_sectionFirstInterface + (int)sectionId];
    }

    private static long ToNanoseconds(CaptureInterface iface, ulong units, long offset)
    {
        if (!iface.TimestampResolution.TryToNanoseconds(units, out long nanoseconds))
        {
            throw new CaptureFormatException(offset, $"timestamp {units} in units of {iface.TimestampResolution} is past the year 2262");
        }

        if (iface.TimestampOffsetSeconds != 0)
        {
            try
            {
                nanoseconds = checked(nanoseconds + (iface.TimestampOffsetSeconds * 1_000_000_000L));
            }
            catch (OverflowException)
            {
                throw new CaptureFormatException(offset, $"timestamp offset of {iface.TimestampOffsetSeconds} s puts the packet out of range");
            }
        }

        return nanoseconds;
    }

    private static int CheckBlockLength(uint length, int minimum, long blockStart, uint type)
    {
        if (length < (uint)minimum || (length & 3) != 0 || length > MaxBlockLength)
        {
            string why = length < (uint)minimum ? $"below the minimum of {minimum}"
                : (length & 3) != 0 ? "not a multiple of 4"
                : $"over the {MaxBlockLength}-byte limit";
            throw new CaptureFormatException(blockStart + 4, $"block of type 0x{type:X8} has length {length}, {why}");
        }

        return (int)length;
    }

    // Reads a non-SHB block after its 8-byte header into the buffer: body then trailing length.
    private void ReadBlockRest(int length, long blockStart, uint type)
    {
        int rest = length - 8;
        ReadIntoBuffer(rest, blockStart, BlockName(type));
        CheckTrailer(_buffer.AsSpan(rest - 4), length, blockStart);
    }

    // Constant strings: naming the block must not allocate on the path every packet takes.
    private static string BlockName(uint type) => type switch
    {
        InterfaceDescriptionBlockType => "interface description block",
        SimplePacketBlockType => "simple packet block",
        EnhancedPacketBlockType => "enhanced packet block",
        _ => "block",
    };

    private void CheckTrailer(ReadOnlySpan<byte> trailer, int length, long blockStart)
    {
        uint trailing = U32(trailer);
        if (trailing != (uint)length)
        {
            throw new CaptureFormatException(blockStart + length - 4, $"block's trailing length {trailing} differs from its leading length {length}");
        }
    }

    // Fills _buffer[0..count) from the stream. The buffer grows only as data actually arrives, so a hostile length
    // on a stream that holds less costs at most twice what the stream holds.
    private void ReadIntoBuffer(int count, long recordStart, string what)
    {
        if (count > _buffer.Length && _stream.CanSeek)
        {
            long remaining = _stream.Length - _stream.Position;
            if (count > remaining)
            {
                throw new CaptureFormatException(recordStart,
                    $"file ends inside a {what}: {count} bytes needed from offset {_position}, only {Math.Max(remaining, 0)} remain");
            }
        }

        int filled = 0;
        while (filled < count)
        {
            if (filled == _buffer.Length)
            {
                int grown = (int)Math.Min(count, Math.Max(InitialBufferLength, (long)_buffer.Length * 2));
                Array.Resize(ref _buffer, grown);
            }

            int wanted = Math.Min(count, _buffer.Length) - filled;
            int read = ReadUpTo(_buffer.AsSpan(filled, wanted));
            filled += read;
            if (read < wanted)
            {
                throw new CaptureFormatException(recordStart,
                    $"file ends inside a {what}: {count} bytes needed from offset {_position - filled}, only {filled} remain");
            }
        }
    }

    private void ReadExactly(Span<byte> destination, long recordStart, string what)
    {
        int read = ReadUpTo(destination);
        if (read < destination.Length)
        {
            throw new CaptureFormatException(recordStart, $"file ends inside a {what}");
        }
    }

    private int ReadUpTo(Span<byte> destination)
    {
        int read = _stream.ReadAtLeast(destination, destination.Length, throwOnEndOfStream: false);
        _position += read;
        return read;
    }

    private ushort U16(ReadOnlySpan<byte> source) =>
        _bigEndian ? BinaryPrimitives.ReadUInt16BigEndian(source) : BinaryPrimitives.ReadUInt16LittleEndian(source);

    private uint U32(ReadOnlySpan<byte> source) =>
        _bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(source) : BinaryPrimitives.ReadUInt32LittleEndian(source);

    // Walks a pcapng option list: code (2), length (2), value padded to 4 bytes, until opt_endofopt or the end.
    private ref struct OptionReader
    {
        private readonly CaptureReader _owner;
        private ReadOnlySpan<byte> _rest;
        private long _offset;

        public OptionReader(CaptureReader owner, ReadOnlySpan<byte> options, long offset)
        {
            _owner = owner;
            _rest = options;
            _offset = offset;
        }

        public bool TryNext(out ushort code, out ReadOnlySpan<byte> value, out long valueOffset)
        {
            code = 0;
            value = default;
            valueOffset = _offset;
            // Fewer than 4 bytes left cannot hold an option: some writers leave the list unterminated.
            if (_rest.Length < 4)
            {
                return false;
            }

            code = _owner.U16(_rest);
            if (code == OptionEnd)
            {
                return false;
            }

            int length = _owner.U16(_rest.Slice(2));
            if (length > _rest.Length - 4)
            {
                throw new CaptureFormatException(_offset + 2, $"option {code} has length {length}, but only {_rest.Length - 4} bytes remain in its block");
            }

            value = _rest.Slice(4, length);
            valueOffset = _offset + 4;
            // Tolerate a missing pad after the last option; the length check above already kept the value in bounds.
            int advance = Math.Min(_rest.Length, 4 + ((length + 3) & ~3));
            _rest = _rest.Slice(advance);
            _offset += advance;
            return true;
        }
    }
}
