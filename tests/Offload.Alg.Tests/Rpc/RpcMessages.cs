using System.Buffers.Binary;
using System.Text;

namespace Offload.Alg.Tests.Rpc;

/// <summary>
/// Portmapper messages as libtirpc writes them (RFC 5531 and RFC 1833, XDR big-endian words, strings padded to 4),
/// and TCP's record marking around them.
/// </summary>
internal static class RpcMessages
{
    public const uint Portmapper = 100000;
    public const uint NfsProgram = 100003;
    public const uint MountProgram = 100005;

    /// <summary>AUTH_SYS with a machine name and uid/gid 0 (what rpcinfo sends to a server as root), or AUTH_NONE.</summary>
    public static byte[] Auth(bool sys)
    {
        if (!sys)
        {
            return Words(0, 0);
        }

        var body = Concat(Words(0x12345678), Str("client"), Words(0, 0, 0));
        return Concat(Words(1, (uint)body.Length), body);
    }

    /// <summary>A call's header: xid, CALL, rpcvers 2, program, version, procedure, credential, AUTH_NONE verifier.</summary>
    public static byte[] CallHeader(uint xid, uint program, uint version, uint procedure, bool authSys = false) =>
        Concat(Words(xid, 0, 2, program, version, procedure), Auth(authSys), Auth(false));

    /// <summary>Version 2 GETPORT for a program, version and protocol (6 or 17).</summary>
    public static byte[] GetPortCall(uint xid, uint program = NfsProgram, uint version = 3, uint protocol = 6, bool authSys = false) =>
        Concat(CallHeader(xid, Portmapper, 2, 3, authSys), Words(program, version, protocol, 0));

    /// <summary>Version 3 or 4 GETADDR (procedure 3), or version 4 GETVERSADDR (9).</summary>
    public static byte[] GetAddrCall(uint xid, string netid, uint program = NfsProgram, uint version = 3, uint rpcbVersion = 4, uint procedure = 3, string addr = "", string owner = "") =>
        Concat(CallHeader(xid, Portmapper, rpcbVersion, procedure), Words(program, version), Str(netid), Str(addr), Str(owner));

    /// <summary>Version 2 DUMP (procedure 4): no arguments.</summary>
    public static byte[] DumpCall(uint xid) => CallHeader(xid, Portmapper, 2, 4);

    /// <summary>An accepted, successful reply with a result.</summary>
    public static byte[] Reply(uint xid, byte[] result) => Concat(Words(xid, 1, 0), Auth(false), Words(0), result);

    public static byte[] GetPortReply(uint xid, uint port) => Reply(xid, Words(port));

    public static byte[] GetAddrReply(uint xid, string universalAddress) => Reply(xid, Str(universalAddress));

    /// <summary>A message in record marking: cut into fragments of the given sizes (the rest in the last).</summary>
    public static byte[] Record(byte[] message, params int[] fragmentSizes)
    {
        var output = new List<byte>();
        int offset = 0;
        foreach (int size in fragmentSizes.Append(message.Length))
        {
            int length = Math.Min(size, message.Length - offset);
            bool last = offset + length == message.Length;
            output.AddRange(Words((uint)length | (last ? 0x8000_0000u : 0)));
            output.AddRange(message.AsSpan(offset, length).ToArray());
            offset += length;
            if (last)
            {
                break;
            }
        }

        return [.. output];
    }

    /// <summary>The universal address a reply carries, read back from a message (its last string).</summary>
    public static string LastString(ReadOnlySpan<byte> message, int fromEnd)
    {
        int length = (int)BinaryPrimitives.ReadUInt32BigEndian(message[^fromEnd..]);
        return Encoding.ASCII.GetString(message.Slice(message.Length - fromEnd + 4, length));
    }

    public static byte[] Words(params uint[] words)
    {
        var bytes = new byte[words.Length * 4];
        for (int i = 0; i < words.Length; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(i * 4), words[i]);
        }

        return bytes;
    }

    public static byte[] Str(string text)
    {
        var bytes = new byte[4 + ((text.Length + 3) & ~3)];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, (uint)text.Length);
        Encoding.ASCII.GetBytes(text).CopyTo(bytes, 4);
        return bytes;
    }

    public static byte[] Concat(params byte[][] parts) => [.. parts.SelectMany(p => p)];

    /// <summary>The universal address of an address and port, as rpcbind writes it.</summary>
    public static string Universal(string address, ushort port) => $"{address}.{port >> 8}.{port & 0xff}";
}
