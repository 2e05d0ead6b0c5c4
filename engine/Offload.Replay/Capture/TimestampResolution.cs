namespace Offload.Replay.Capture;

/// <summary>
/// The unit of a capture's timestamps, coded as pcapng's <c>if_tsresol</c>: with the high bit clear the unit
/// is 10^-n seconds, with it set 2^-n seconds, n being the low 7 bits.
/// </summary>
public readonly record struct TimestampResolution
{
    // Beyond these, one unit is either not representable in our arithmetic or finer than anything a clock produces;
    // such a value only appears in a damaged file.
    private const int MaxDecimalExponent = 19;
    private const int MaxBinaryExponent = 63;

    private TimestampResolution(byte code) => Code = code;

    /// <summary>Microseconds: the pcapng default and classic pcap's usual unit.</summary>
    public static TimestampResolution Microseconds => new(6);

    /// <summary>Nanoseconds.</summary>
    public static TimestampResolution Nanoseconds => new(9);

    /// <summary>The <c>if_tsresol</c> byte.</summary>
    public byte Code { get; }

    /// <summary>True when the unit is a negative power of 2 rather than of 10.</summary>
    public bool IsPowerOfTwo => (Code & 0x80) != 0;

    /// <summary>n, where the unit is 10^-n or 2^-n seconds.</summary>
    public int Exponent => Code & 0x7F;

    /// <summary>Accepts an <c>if_tsresol</c> byte whose unit this library can convert to nanoseconds.</summary>
    public static bool TryFromCode(byte code, out TimestampResolution resolution)
    {
        resolution = new TimestampResolution(code);
        int exponent = code & 0x7F;
        return (code & 0x80) != 0 ? exponent <= MaxBinaryExponent : exponent <= MaxDecimalExponent;
    }

    /// <summary>Converts a count of units to nanoseconds; false when the result does not fit in a <see cref="long"/>.</summary>
    public bool TryToNanoseconds(ulong units, out long nanoseconds)
    {
        // 128-bit arithmetic: a 64-bit count times 10^9 cannot overflow it, so no case needs its own overflow check.
        UInt128 result;
        if (IsPowerOfTwo)
        {
            result = ((UInt128)units * 1_000_000_000UL) >> Exponent;
        }
        else if (Exponent <= 9)
        {
            result = (UInt128)units * Pow10(9 - Exponent);
        }
        else
        {
            result = units / Pow10(Exponent - 9);
        }

        if (result > long.MaxValue)
        {
            nanoseconds = 0;
            return false;
        }

        nanoseconds = (long)result;
        return true;
    }

    private static ulong Pow10(int exponent)
    {
        ulong value = 1;
        for (int i = 0; i < exponent; i++)
        {
            value *= 10;
        }

        return value;
    }

    public override string ToString() => IsPowerOfTwo ? $"2^-{Exponent} s" : $"10^-{Exponent} s";
}
