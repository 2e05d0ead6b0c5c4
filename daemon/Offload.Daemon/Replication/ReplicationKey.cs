using System.Globalization;
using Offload.Interop.Posix;
using Offload.Rules;

namespace Offload.Daemon.Replication;

/// <summary>
/// Reads the replication's shared secret, refusing a key anyone but root could read or replace: whoever has it can
/// write NAT state into the standby. The checks are strict modes' (daemon/Offload.Plugins/StrictModes.cs) with reading
/// forbidden too: the file opened without following a link, owner and mode from that descriptor, no bit for group or
/// others, every directory above it root's and writable by no one else, and the bytes read from the checked descriptor.
/// </summary>
internal static class ReplicationKey
{
    private const int MaxBytes = 4096;

    /// <summary>The key's bytes (trailing white space left out, so that a key written by <c>echo</c> works). Throws <see cref="ConfigException"/>.</summary>
    public static byte[] Read(string path) => Read(path, [0, PosixFiles.EffectiveUserId]);

    internal static byte[] Read(string path, IReadOnlyCollection<uint> trusted)
    {
        try
        {
            string resolved = PosixFiles.RealPath(path);
            using var file = PosixFiles.OpenNoFollow(resolved);
            var status = file.Status();
            if (!status.IsRegularFile)
            {
                throw Refuse(path, "is not a regular file");
            }

            if (!trusted.Contains(status.Owner))
            {
                throw Refuse(path, $"is owned by uid {status.Owner}, not root");
            }

            if ((status.Permissions & 0b000_111_111) != 0)
            {
                throw Refuse(path, $"has mode {Convert.ToString(status.Permissions, 8).PadLeft(4, '0')}: group or others may use it (chmod 600)");
            }

            for (string? directory = Path.GetDirectoryName(resolved); directory is not null; directory = Path.GetDirectoryName(directory))
            {
                var parent = PosixFiles.LinkStatus(directory);
                if (!trusted.Contains(parent.Owner) || parent.WritableByGroup || parent.WritableByOthers)
                {
                    throw Refuse(path, $"lies in {directory}, which someone other than root may change");
                }
            }

            var bytes = file.ReadAll(MaxBytes);
            int length = bytes.Length;
            while (length > 0 && bytes[length - 1] is (byte)'\n' or (byte)'\r' or (byte)' ' or (byte)'\t')
            {
                length--;
            }

            if (length < ReplicationConfig.MinKeyBytes)
            {
                throw Refuse(path, string.Create(CultureInfo.InvariantCulture, $"holds {length} bytes, fewer than {ReplicationConfig.MinKeyBytes} (make one: head -c 32 /dev/urandom | base64 > FILE)"));
            }

            return bytes.AsSpan(0, length).ToArray();
        }
        catch (IOException e)
        {
            throw Refuse(path, $"cannot be read: {e.Message}");
        }
    }

    private static ConfigException Refuse(string path, string problem) =>
        new(path, 0, 0, $"replication key refused: the file {problem}");
}
