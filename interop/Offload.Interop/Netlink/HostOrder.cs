using System.Runtime.InteropServices;

namespace Offload.Interop.Netlink;

/// <summary>
/// Netlink headers are in the host's byte order (unlike netfilter attribute values): these read and write them
/// with bounds checks by the span, never a raw pointer.
/// </summary>
internal static class HostOrder
{
    internal static ushort ReadU16(ReadOnlySpan<byte> s) => MemoryMarshal.Read<ushort>(s);

    internal static uint ReadU32(ReadOnlySpan<byte> s) => MemoryMarshal.Read<uint>(s);

    internal static int ReadI32(ReadOnlySpan<byte> s) => MemoryMarshal.Read<int>(s);

    internal static void Write(Span<byte> s, ushort v) => MemoryMarshal.Write(s, in v);

    internal static void Write(Span<byte> s, uint v) => MemoryMarshal.Write(s, in v);

    internal static void Write(Span<byte> s, int v) => MemoryMarshal.Write(s, in v);
}
