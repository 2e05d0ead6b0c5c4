using System.Security.Cryptography;

namespace Offload.Engine.Snapshot;

/// <summary>
/// An engine's state copied into memory by <see cref="EngineSnapshot.Capture"/>, ready to be written. Writing needs no
/// access to the engine: the daemon takes the copy under its engine lock and writes it outside.
/// </summary>
public sealed class SnapshotImage : IDisposable
{
    private readonly SnapshotBuffer _body;
    private readonly long _capturedAt;

    internal SnapshotImage(SnapshotBuffer body, long capturedAtUnixNanoseconds, bool final, int connections, int expectations, int helperStates, TimeSpan captureTime)
    {
        Final = final;
        _body = body;
        _capturedAt = capturedAtUnixNanoseconds;
        Connections = connections;
        Expectations = expectations;
        HelperStates = helperStates;
        CaptureTime = captureTime;
    }

    /// <summary>Taken after the queues stopped reading: exact, rather than a checkpoint some packets may have overtaken.</summary>
    public bool Final { get; }

    /// <summary>Connections copied.</summary>
    public int Connections { get; }

    /// <summary>Expectations copied.</summary>
    public int Expectations { get; }

    /// <summary>Connections whose helper saved its state.</summary>
    public int HelperStates { get; }

    /// <summary>How long the copy took (the time the engine was held).</summary>
    public TimeSpan CaptureTime { get; }

    /// <summary>The size of the snapshot file.</summary>
    public long Length => SnapshotFormat.HeaderLength + _body.Length;

    /// <summary>Writes the snapshot (header, then body) to a stream.</summary>
    public void WriteTo(Stream destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var segment in _body.Segments())
        {
            sha.AppendData(segment.Span);
        }

        Span<byte> header = stackalloc byte[SnapshotFormat.HeaderLength];
        SnapshotFormat.WriteHeader(header, new SnapshotFormat.Header(SnapshotFormat.Version, _capturedAt, _body.Length, Connections, Expectations, sha.GetHashAndReset(), Final ? SnapshotFormat.FlagFinal : 0));
        destination.Write(header);
        foreach (var segment in _body.Segments())
        {
            destination.Write(segment.Span);
        }
    }

    /// <summary>
    /// Writes the snapshot to <paramref name="path"/> atomically: to a temporary file beside it, flushed to the device,
    /// then renamed over the old one. A crash at any moment leaves the old snapshot or the new one, never a mix.
    /// </summary>
    public void WriteFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string temporary = path + ".new";
        try
        {
            using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                WriteTo(file);
                file.Flush(flushToDisk: true);
            }

            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    /// <summary>Returns the copy's buffers to the pool.</summary>
    public void Dispose() => _body.Dispose();
}
