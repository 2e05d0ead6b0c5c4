using FsCheck;
using FsCheck.Fluent;

namespace Offload.Alg.Tests.Support;

/// <summary>
/// Valid protocol text damaged a few bytes at a time, for the parsers' property tests: what a hostile or broken peer
/// sends is mostly a valid message with something wrong in it, which random bytes alone rarely reach.
/// </summary>
internal static class ByteMutations
{
    /// <summary>
    /// One of <paramref name="texts"/> with at most <paramref name="maxEdits"/> edits (a byte replaced, inserted or
    /// removed, or the rest cut off) at positions below <paramref name="maxPosition"/> (wrapped into the text), with
    /// bytes from <paramref name="anyByte"/>.
    /// </summary>
    public static Gen<byte[]> Of(Gen<byte[]> texts, Gen<byte> anyByte, int maxPosition, int maxEdits) =>
        from text in texts
        from edits in Gen.ListOf(Gen.Choose(0, 3).SelectMany(op => Gen.Choose(0, maxPosition).SelectMany(pos => anyByte.Select(b => (op, pos, b)))))
        select Apply(text, edits, maxEdits);

    private static byte[] Apply(byte[] text, IEnumerable<(int Op, int Pos, byte Value)> edits, int maxEdits)
    {
        var bytes = new List<byte>(text);
        foreach ((int op, int pos, byte value) in edits.Take(maxEdits))
        {
            int at = bytes.Count == 0 ? 0 : pos % (bytes.Count + 1);
            switch (op)
            {
                case 0 when at < bytes.Count: bytes[at] = value; break;
                case 1: bytes.Insert(at, value); break;
                case 2 when at < bytes.Count: bytes.RemoveAt(at); break;
                case 3: bytes.RemoveRange(at, bytes.Count - at); break;
            }
        }

        return [.. bytes];
    }
}
