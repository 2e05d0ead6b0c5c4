using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Offload.Engine.Packets;

/// <summary>
/// The Internet checksum: full computation (RFC 1071) and incremental updates (RFC 1624).
/// </summary>
/// <remarks>
/// Partial sums are carried as <see cref="ulong"/> values that are not yet folded, so several
/// pieces (pseudo-header, header, payload) can be added before one final fold. Because
/// 2^16 = 1 (mod 0xFFFF), adding wider big-endian words is the same as adding their 16-bit halves.
/// </remarks>
public static class Checksum
{
    /// <summary>Adds the bytes of <paramref name="data"/>, read as big-endian 16-bit words, to <paramref name="sum"/>.</summary>
    /// <remarks>
    /// An odd final byte is padded with a zero, so only the last piece of a sum may have an odd length. The words are
    /// summed in the machine's own order, 32 bits at a time into 64-bit lanes (32 bytes per step, in two vectors, where
    /// the CPU has them), and the folded result is swapped to network order once: the Internet checksum does not depend on byte
    /// order (RFC 1071, section 2(B)). A packet's payload is summed at several bytes per cycle.
    /// </remarks>
    public static ulong Add(ulong sum, ReadOnlySpan<byte> data)
    {
        if (!BitConverter.IsLittleEndian)
        {
            return AddBigEndianWords(sum, data);
        }

        ref byte start = ref MemoryMarshal.GetReference(data);
        int length = data.Length;
        int i = 0;
        ulong native = 0; // no carry to lose: fewer than 2^32 words of 32 bits each
        if (Vector128.IsHardwareAccelerated && length >= 32)
        {
            var lanes0 = Vector128<ulong>.Zero;
            var lanes1 = Vector128<ulong>.Zero;
            for (; i + 32 <= length; i += 32)
            {
                var (low0, high0) = Vector128.Widen(Vector128.LoadUnsafe(ref start, (nuint)i).AsUInt32());
                var (low1, high1) = Vector128.Widen(Vector128.LoadUnsafe(ref start, (nuint)(i + 16)).AsUInt32());
                lanes0 += low0 + high0;
                lanes1 += low1 + high1;
            }

            var lanes = lanes0 + lanes1;
            native = lanes.GetElement(0) + lanes.GetElement(1);
        }

        for (; i + 4 <= length; i += 4)
        {
            native += Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref start, i));
        }

        if (i + 2 <= length)
        {
            native += Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref start, i));
            i += 2;
        }

        if (i < length)
        {
            native += Unsafe.Add(ref start, i); // the high byte of a big-endian word is the low byte of a native one
        }

        return Combine(sum, BinaryPrimitives.ReverseEndianness(Fold(native)));
    }

    /// <summary><see cref="Add"/> word by word in network order: for big-endian machines (and the baseline of the <c>ChecksumSum</c> benchmark).</summary>
    internal static ulong AddBigEndianWords(ulong sum, ReadOnlySpan<byte> data)
    {
        int i = 0;
        // Keep the accumulator below 2^63 by folding the carry from each 64-bit add back in.
        for (; i + 8 <= data.Length; i += 8)
        {
            ulong word = BinaryPrimitives.ReadUInt64BigEndian(data.Slice(i, 8));
            sum += word;
            if (sum < word)
            {
                sum++;
            }
        }

        ulong tail = 0;
        for (; i + 2 <= data.Length; i += 2)
        {
            tail += BinaryPrimitives.ReadUInt16BigEndian(data.Slice(i, 2));
        }

        if (i < data.Length)
        {
            tail += (ulong)data[i] << 8;
        }

        sum += tail;
        if (sum < tail)
        {
            sum++;
        }

        return sum;
    }

    /// <summary>Adds two partial sums, keeping the carry out of the top bit (it is worth 1, since 2^64 = 1 mod 0xFFFF).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Combine(ulong a, ulong b)
    {
        ulong sum = a + b;
        return sum < b ? sum + 1 : sum;
    }

    /// <summary>Folds a partial sum to 16 bits with end-around carry.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Fold(ulong sum)
    {
        sum = (sum & 0xFFFFFFFF) + (sum >> 32);
        sum = (sum & 0xFFFFFFFF) + (sum >> 32);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)sum;
    }

    /// <summary>The checksum field value for data whose (unfolded) sum is <paramref name="sum"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Finish(ulong sum) => (ushort)~Fold(sum);

    /// <summary>Computes the checksum of <paramref name="data"/> alone (as for an IPv4 header or ICMPv4).</summary>
    public static ushort Compute(ReadOnlySpan<byte> data) => Finish(Add(0, data));

    /// <summary>The partial sum of the IPv4 or IPv6 pseudo-header used by TCP, UDP and ICMPv6.</summary>
    /// <param name="source">Source address bytes (4 or 16).</param>
    /// <param name="destination">Destination address bytes (4 or 16).</param>
    /// <param name="protocol">Upper-layer protocol number.</param>
    /// <param name="length">Upper-layer length (header plus payload).</param>
    public static ulong PseudoHeader(ReadOnlySpan<byte> source, ReadOnlySpan<byte> destination, byte protocol, int length)
    {
        ulong sum = Add(0, source);
        sum = Add(sum, destination);
        return Combine(sum, protocol + (ulong)(uint)length);
    }

    /// <summary>
    /// Updates a checksum field after a 16-bit word it covers changed from <paramref name="oldWord"/> to <paramref name="newWord"/> (RFC 1624, eqn. 3).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Update(ushort check, ushort oldWord, ushort newWord)
    {
        uint sum = (uint)(ushort)~check + (ushort)~oldWord + newWord;
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)~sum;
    }

    /// <summary>Updates a checksum field after a 32-bit value it covers changed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Update(ushort check, uint oldValue, uint newValue) => Apply(check, Difference(oldValue, newValue));

    /// <summary>What a 16-bit word changing from <paramref name="oldWord"/> to <paramref name="newWord"/> adds to a sum (~old + new, RFC 1624), for <see cref="Apply"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Difference(ushort oldWord, ushort newWord) => (ulong)(ushort)~oldWord + newWord;

    /// <summary>What a 32-bit value changing adds to a sum, for <see cref="Apply"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Difference(uint oldValue, uint newValue) =>
        (ulong)(ushort)~(oldValue >> 16) + (ushort)~oldValue + (newValue >> 16) + (newValue & 0xFFFF);

    /// <summary>
    /// What a run of bytes (even length, even offset) changing adds to a sum, for <see cref="Apply"/>: ~(sum of old)
    /// equals the sum of the ~old words in one's complement.
    /// </summary>
    public static ulong Difference(ReadOnlySpan<byte> oldBytes, ReadOnlySpan<byte> newBytes) =>
        Combine((ushort)~Fold(Add(0, oldBytes)), Add(0, newBytes));

    /// <summary>
    /// Updates a checksum field by differences (<see cref="Difference(ushort, ushort)"/> and its overloads, added with
    /// <see cref="Combine"/>): the same value as updating for each change in turn.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Apply(ushort check, ulong difference) => (ushort)~Fold(Combine((ushort)~check, difference));

    /// <summary>Updates a checksum field after a run of bytes it covers (even length, even offset) changed.</summary>
    public static ushort Update(ushort check, ReadOnlySpan<byte> oldBytes, ReadOnlySpan<byte> newBytes) =>
        Apply(check, Difference(oldBytes, newBytes));

    /// <summary>Reads the checksum field at <paramref name="offset"/>, updates it for a 16-bit change, and writes it back.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UpdateField(Span<byte> packet, int offset, ushort oldWord, ushort newWord)
    {
        var field = packet.Slice(offset, 2);
        BinaryPrimitives.WriteUInt16BigEndian(field, Update(BinaryPrimitives.ReadUInt16BigEndian(field), oldWord, newWord));
    }

    /// <summary>Reads the checksum field at <paramref name="offset"/>, updates it for a 32-bit change, and writes it back.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void UpdateField(Span<byte> packet, int offset, uint oldValue, uint newValue)
    {
        var field = packet.Slice(offset, 2);
        BinaryPrimitives.WriteUInt16BigEndian(field, Update(BinaryPrimitives.ReadUInt16BigEndian(field), oldValue, newValue));
    }

    /// <summary>Reads the checksum field at <paramref name="offset"/>, updates it for changed bytes, and writes it back.</summary>
    public static void UpdateField(Span<byte> packet, int offset, ReadOnlySpan<byte> oldBytes, ReadOnlySpan<byte> newBytes)
    {
        var field = packet.Slice(offset, 2);
        BinaryPrimitives.WriteUInt16BigEndian(field, Update(BinaryPrimitives.ReadUInt16BigEndian(field), oldBytes, newBytes));
    }
}
