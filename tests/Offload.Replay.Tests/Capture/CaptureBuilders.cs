using System.Buffers.Binary;
using System.Text;
using Offload.Replay.Capture;

namespace Offload.Replay.Tests.Capture;

/// <summary>A pcapng option for <see cref="PcapngBuilder"/>: raw bytes, or a number encoded in the section's byte order.</summary>
internal readonly record struct TestOption(ushort Code, byte[]? Bytes, ulong Number, int Width)
{
    public static TestOption Raw(ushort code, byte[] value) => new(code, value, 0, 0);

    public static TestOption Text(ushort code, string value) => new(code, Encoding.UTF8.GetBytes(value), 0, 0);

    public static TestOption U32(ushort code, uint value) => new(code, null, value, 4);

    public static TestOption U64(ushort code, ulong value) => new(code, null, value, 8);

    public static TestOption Name(string name) => Text(2, name);

    public static TestOption Tsresol(byte code) => Raw(9, [code]);

    public static TestOption Flags(uint flags) => U32(2, flags);
}

/// <summary>Builds pcapng files block by block, in either byte order, so tests need no binary data files.</summary>
internal sealed class PcapngBuilder
{
    private readonly MemoryStream _out = new();
    private bool _bigEndian;

    /// <summary>Offsets where each block starts, and the file length as the last entry.</summary>
    public List<long> BlockStarts { get; } = [];

    public PcapngBuilder Section(bool bigEndian = false, ushort major = 1, ushort minor = 0)
    {
        _bigEndian = bigEndian;
        var body = new byte[16];
        WriteU32(body, 0x1A2B3C4D);
        WriteU16(body.AsSpan(4), major);
        WriteU16(body.AsSpan(6), minor);
        BinaryPrimitives.WriteInt64LittleEndian(body.AsSpan(8), -1);
        return Block(0x0A0D0D0A, body);
    }

    public PcapngBuilder Interface(ushort linkType, uint snaplen = 0, params TestOption[] options)
    {
        var fixedPart = new byte[8];
        WriteU16(fixedPart, linkType);
        WriteU32(fixedPart.AsSpan(4), snaplen);
        return Block(1, [.. fixedPart, .. EncodeOptions(options)]);
    }

    public PcapngBuilder Enhanced(uint interfaceId, ulong timestamp, byte[] data, uint? originalLength = null, params TestOption[] options)
    {
        var fixedPart = new byte[20];
        WriteU32(fixedPart, interfaceId);
        WriteU32(fixedPart.AsSpan(4), (uint)(timestamp >> 32));
        WriteU32(fixedPart.AsSpan(8), (uint)timestamp);
        WriteU32(fixedPart.AsSpan(12), (uint)data.Length);
        WriteU32(fixedPart.AsSpan(16), originalLength ?? (uint)data.Length);
        return Block(6, [.. fixedPart, .. Padded(data), .. EncodeOptions(options)]);
    }

    public PcapngBuilder Simple(uint originalLength, byte[] data)
    {
        var fixedPart = new byte[4];
        WriteU32(fixedPart, originalLength);
        return Block(3, [.. fixedPart, .. Padded(data)]);
    }

    /// <summary>Any block: the body is padded to 4 bytes, the lengths are filled in.</summary>
    public PcapngBuilder Block(uint type, byte[] body)
    {
        byte[] padded = Padded(body);
        int length = 12 + padded.Length;
        var head = new byte[8];
        WriteU32(head, type);
        WriteU32(head.AsSpan(4), (uint)length);
        BlockStarts.Add(_out.Length);
        _out.Write(head);
        _out.Write(padded);
        _out.Write(head.AsSpan(4, 4));
        return this;
    }

    /// <summary>Appends bytes as they are, for blocks with deliberately wrong framing.</summary>
    public PcapngBuilder Bytes(params byte[] bytes)
    {
        _out.Write(bytes);
        return this;
    }

    public byte[] U32Bytes(uint value)
    {
        var bytes = new byte[4];
        WriteU32(bytes, value);
        return bytes;
    }

    public byte[] ToArray() => _out.ToArray();

    private byte[] EncodeOptions(TestOption[] options)
    {
        if (options.Length == 0)
        {
            return [];
        }

        var list = new MemoryStream();
        var header = new byte[4];
        foreach (TestOption option in options)
        {
            byte[] value = option.Bytes ?? new byte[option.Width];
            if (option.Bytes is null)
            {
                if (option.Width == 4)
                {
                    WriteU32(value, (uint)option.Number);
                }
                else if (_bigEndian)
                {
                    BinaryPrimitives.WriteUInt64BigEndian(value, option.Number);
                }
                else
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(value, option.Number);
                }
            }

            WriteU16(header, option.Code);
            WriteU16(header.AsSpan(2), (ushort)value.Length);
            list.Write(header);
            list.Write(Padded(value));
        }

        list.Write(new byte[4]);   // opt_endofopt
        return list.ToArray();
    }

    private static byte[] Padded(byte[] data)
    {
        var padded = new byte[(data.Length + 3) & ~3];
        data.CopyTo(padded, 0);
        return padded;
    }

    private void WriteU16(Span<byte> destination, ushort value)
    {
        if (_bigEndian)
        {
            BinaryPrimitives.WriteUInt16BigEndian(destination, value);
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(destination, value);
        }
    }

    private void WriteU32(Span<byte> destination, uint value)
    {
        if (_bigEndian)
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination, value);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(destination, value);
        }
    }
}

internal readonly record struct PcapRecord(uint Seconds, uint Fraction, byte[] Data, uint OriginalLength);

/// <summary>Builds classic pcap files in either byte order and resolution.</summary>
internal static class PcapBuilder
{
    public static byte[] Build(bool bigEndian, bool nanoseconds, uint linkTypeField, uint snaplen, params PcapRecord[] records) =>
        Build(bigEndian, nanoseconds ? 0xA1B23C4D : 0xA1B2C3D4, 2, linkTypeField, snaplen, records);

    public static byte[] Build(bool bigEndian, uint magic, ushort major, uint linkTypeField, uint snaplen, params PcapRecord[] records)
    {
        var output = new MemoryStream();
        var header = new byte[24];
        U32(header, magic);
        U16(header.AsSpan(4), major);
        U16(header.AsSpan(6), 4);
        U32(header.AsSpan(16), snaplen);
        U32(header.AsSpan(20), linkTypeField);
        output.Write(header);
        foreach (PcapRecord record in records)
        {
            var recordHeader = new byte[16];
            U32(recordHeader, record.Seconds);
            U32(recordHeader.AsSpan(4), record.Fraction);
            U32(recordHeader.AsSpan(8), (uint)record.Data.Length);
            U32(recordHeader.AsSpan(12), record.OriginalLength);
            output.Write(recordHeader);
            output.Write(record.Data);
        }

        return output.ToArray();

        void U16(Span<byte> destination, ushort value)
        {
            if (bigEndian)
            {
                BinaryPrimitives.WriteUInt16BigEndian(destination, value);
            }
            else
            {
                BinaryPrimitives.WriteUInt16LittleEndian(destination, value);
            }
        }

        void U32(Span<byte> destination, uint value)
        {
            if (bigEndian)
            {
                BinaryPrimitives.WriteUInt32BigEndian(destination, value);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(destination, value);
            }
        }
    }
}

/// <summary>A read-only, non-seekable stream that hands out at most a few bytes per read, like a pipe.</summary>
internal sealed class TrickleStream(byte[] data, int maxChunk = 3) : Stream
{
    private int _position;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n = Math.Min(Math.Min(buffer.Length, maxChunk), data.Length - _position);
        data.AsSpan(_position, n).CopyTo(buffer);
        _position += n;
        return n;
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>A packet copied out of the reader's reusable buffer.</summary>
internal sealed record ReadPacket(long Timestamp, int Interface, ushort LinkType, PacketDirection Direction, uint OriginalLength, byte[] Data);

internal static class CaptureTestUtil
{
    /// <summary>Reads a whole capture, copying each packet.</summary>
    public static List<ReadPacket> ReadAll(CaptureReader reader)
    {
        var packets = new List<ReadPacket>();
        while (reader.TryRead(out CapturedPacket packet))
        {
            packets.Add(new ReadPacket(packet.TimestampNanoseconds, packet.InterfaceId, packet.LinkType, packet.Direction, packet.OriginalLength, packet.Data.ToArray()));
        }

        return packets;
    }

    public static List<ReadPacket> ReadAll(byte[] file)
    {
        using var reader = new CaptureReader(new MemoryStream(file));
        return ReadAll(reader);
    }

    public static byte[] Bytes(int length, byte seed)
    {
        var bytes = new byte[length];
        for (int i = 0; i < length; i++)
        {
            bytes[i] = (byte)(seed + (i * 7));
        }

        return bytes;
    }
}
