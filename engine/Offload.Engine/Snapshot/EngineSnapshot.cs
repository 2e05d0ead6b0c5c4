using System.Buffers;
using System.Diagnostics;
using System.Security.Cryptography;
using Offload.Engine.Conntrack;
using Offload.Engine.Conntrack.Tcp;
using Offload.Engine.Expectations;

namespace Offload.Engine.Snapshot;

/// <summary>
/// Saves an engine's state (connections with their tuples, NAT, TCP tracking, timeouts, marks, status, helper,
/// sequence adjustment and master; expectations; the helpers' own per-connection state where they can carry it) and
/// loads it into a fresh engine, so that a restart or an upgrade of the daemon costs no connection.
/// </summary>
/// <remarks>
/// Times are kept as what remained at the capture, with the wall clock of the capture: on load, the time the daemon
/// was down is taken off, and what ran out meanwhile is not restored. Connections refer to each other (master,
/// expectations) by the slot they had. The format: <see cref="SnapshotFormat"/>.
/// </remarks>
public static class EngineSnapshot
{
    /// <summary>
    /// Copies the engine's state into memory. The caller holds whatever serialises access to the engine; writing the
    /// copy to disk (<see cref="SnapshotImage.WriteFile"/>) needs no lock.
    /// </summary>
    /// <param name="engine">The engine.</param>
    /// <param name="unixNanoseconds">The wall clock now (ns since 1970): remaining times are relative to it.</param>
    /// <param name="final">
    /// True when no packet can change the state any more (the queues stopped reading): the load takes it as exact. A
    /// checkpoint (false) may be overtaken by packets before a crash, so the load relaxes the TCP window checks of its
    /// connections (as conntrackd does for the entries it injects) rather than drop segments that run ahead of it.
    /// </param>
    public static SnapshotImage Capture(ConntrackEngine engine, long unixNanoseconds, bool final = false)
    {
        ArgumentNullException.ThrowIfNull(engine);
        var started = Stopwatch.GetTimestamp();
        long now = engine.Clock.NowNanoseconds;
        var body = new SnapshotBuffer();
        var scratch = new ArrayBufferWriter<byte>(64);
        int connections = 0, states = 0;
        foreach (var conn in engine.Connections.Entries())
        {
            if (conn.IsDying || conn.ExpiresAt <= now)
            {
                continue;
            }

            WriteConnection(body, conn, now, scratch, ref states);
            connections++;
        }

        int expectations = 0;
        foreach (var e in engine.Expectations.Entries())
        {
            if (e.ExpiresAt <= now || e.Master.Slot < 0)
            {
                continue;
            }

            WriteExpectation(body, e, now);
            expectations++;
        }

        return new SnapshotImage(body, unixNanoseconds, final, connections, expectations, states, Stopwatch.GetElapsedTime(started));
    }

    internal static void WriteConnection(SnapshotBuffer body, Connection conn, long now, ArrayBufferWriter<byte> scratch, ref int states)
    {
        bool tcp = conn.OriginalTuple.Protocol == IpProtocol.Tcp;
        var extras = conn.Extras;
        body.WriteByte((byte)((tcp ? SnapshotFormat.RecordTcp : 0) | (extras is not null ? SnapshotFormat.RecordExtras : 0)));
        body.WriteTuple(conn.OriginalTuple);
        body.WriteTuple(conn.ReplyTuple);
        body.WriteUInt32((uint)conn.StatusBits);
        body.WriteUInt32(conn.MarkValue);
        body.WriteInt64(conn.ExpiresAt - now);
        body.WriteInt64(tcp ? 0 : conn.StreamAt - now); // TCP's tracking holds those bytes
        body.WriteInt32(conn.MasqueradeInterface);
        if (tcp)
        {
            WriteTcp(body, conn.Tcp);
        }

        if (extras is null)
        {
            return;
        }

        body.WriteInt32(conn.Slot);
        body.WriteInt32(extras.Master is { Slot: >= 0 } master ? master.Slot : -1);
        body.WriteByte(extras.ExpectedAtTranslatedAddress ? (byte)1 : (byte)0);
        WriteSeqAdj(body, extras.SeqAdjOriginal);
        WriteSeqAdj(body, extras.SeqAdjReply);
        var helper = extras.Helper;
        body.WriteName(helper?.Name);
        if (helper is not null && TrySaveState(helper, extras.HelperState, scratch, out int version))
        {
            body.WriteInt32(version);
            body.WriteInt32(scratch.WrittenCount);
            body.Write(scratch.WrittenSpan);
            states++;
        }
        else
        {
            body.WriteInt32(SnapshotFormat.NoState);
        }
    }

    private static bool TrySaveState(ConntrackHelper helper, object? state, ArrayBufferWriter<byte> scratch, out int version)
    {
        scratch.ResetWrittenCount();
        version = 0;
        if (state is null || ConntrackEngine.DisabledReason(helper) is not null)
        {
            return false;
        }

        try
        {
            version = helper.StateVersion;
            return version > 0 && helper.SaveState(state, scratch) && scratch.WrittenCount <= SnapshotFormat.MaxHelperState;
        }
        catch (Exception)
        {
            // A helper that cannot save its state costs its connections that state, never the snapshot.
            return false;
        }
    }

    private static void WriteTcp(SnapshotBuffer body, in TcpTrackState tcp)
    {
        WriteWindow(body, tcp.Original);
        WriteWindow(body, tcp.Reply);
        body.WriteUInt32(tcp.LastSeq);
        body.WriteUInt32(tcp.LastAck);
        body.WriteUInt32(tcp.LastEnd);
        body.WriteUInt16(tcp.LastWindow);
        body.WriteByte((byte)tcp.State);
        body.WriteByte((byte)tcp.LastDir);
        body.WriteByte(tcp.Retrans);
        body.WriteByte((byte)tcp.LastIndex);
        body.WriteByte(tcp.LastWindowScale);
        body.WriteByte((byte)tcp.LastFlags);
        body.WriteByte((byte)tcp.Status);
    }

    private static void WriteWindow(SnapshotBuffer body, in TcpDirectionWindow window)
    {
        body.WriteUInt32(window.End);
        body.WriteUInt32(window.MaxEnd);
        body.WriteUInt32(window.MaxWindow);
        body.WriteUInt32(window.MaxAck);
        body.WriteByte(window.Scale);
        body.WriteByte((byte)window.Flags);
    }

    private static void WriteSeqAdj(SnapshotBuffer body, in SeqAdjustment way)
    {
        body.WriteUInt32(way.CorrectionPosition);
        body.WriteInt32(way.OffsetBefore);
        body.WriteInt32(way.OffsetAfter);
    }

    internal static void WriteExpectation(SnapshotBuffer body, Expectation e, long now)
    {
        body.WriteInt32(e.Master.Slot);
        body.WriteName(e.Helper?.Name);
        body.WriteTuple(e.Tuple);
        body.WriteInt32(e.SourcePrefixLength);
        body.WriteByte(e.MatchSourcePort ? (byte)1 : (byte)0);
        body.WriteByte((byte)e.Flags);
        body.WriteInt32(e.Class);
        body.WriteInt64(e.ExpiresAt - now);
        body.WriteByte(e.FollowMasterNat ? (byte)1 : (byte)0);
        body.WriteByte((byte)e.NatDirection);
        body.WriteByte(e.AtTranslatedAddress ? (byte)1 : (byte)0);
        body.WriteUInt16(e.SavedPort);
        body.WriteByte((byte)e.Nat);
        body.WriteAddress(e.NatAddress);
        body.WriteUInt16(e.NatPort);
    }

    /// <summary>Loads a snapshot file into an engine that tracks nothing yet. See <see cref="Load"/>.</summary>
    public static SnapshotLoadResult LoadFile(ConntrackEngine engine, string path, long unixNanoseconds)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        return Load(engine, stream, unixNanoseconds);
    }

    /// <summary>
    /// Loads a snapshot into an engine that tracks nothing yet: all of it, or (with a <see cref="SnapshotException"/>)
    /// nothing. Connections and expectations whose time ran out while the daemon was down are left out; a helper no
    /// longer configured leaves its connections without a helper; a helper's state it cannot restore is reset.
    /// </summary>
    /// <param name="engine">An engine with an empty table.</param>
    /// <param name="stream">The snapshot, seekable (it is read twice: the checksum first, then the records).</param>
    /// <param name="unixNanoseconds">The wall clock now (ns since 1970).</param>
    public static SnapshotLoadResult Load(ConntrackEngine engine, Stream stream, long unixNanoseconds)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(stream);
        if (engine.Connections.Count != 0 || engine.Expectations.Count != 0)
        {
            throw new InvalidOperationException("a snapshot is loaded into an engine that tracks nothing yet");
        }

        var started = Stopwatch.GetTimestamp();
        Span<byte> headerBytes = stackalloc byte[SnapshotFormat.HeaderLength];
        int read = stream.ReadAtLeast(headerBytes, headerBytes.Length, throwOnEndOfStream: false);
        var header = SnapshotFormat.ReadHeader(headerBytes.Slice(0, read), stream.Length);
        VerifyChecksum(stream, header);
        stream.Position = SnapshotFormat.HeaderLength;

        long downtime = Math.Max(0, unixNanoseconds - header.WrittenAtUnixNanoseconds);
        bool final = (header.Flags & SnapshotFormat.FlagFinal) != 0;
        var parsed = new Parsed(engine, engine.Clock.NowNanoseconds, downtime, liberal: !final);
        try
        {
            var reader = new SnapshotReader(stream, header.BodyLength);
            for (int i = 0; i < header.Connections; i++)
            {
                parsed.ReadConnection(reader);
            }

            for (int i = 0; i < header.Expectations; i++)
            {
                parsed.ReadExpectation(reader);
            }

            if (reader.Left != 0)
            {
                throw new SnapshotException(SnapshotRefusal.Corrupt, $"{reader.Left} bytes after the last record");
            }

            parsed.Commit();
        }
        finally
        {
            parsed.ReleaseLeftovers();
        }

        return new SnapshotLoadResult
        {
            Connections = parsed.Connections.Count,
            Expectations = parsed.Expectations.Count,
            HelperStatesRestored = parsed.StatesRestored,
            HelperStatesReset = parsed.StatesReset,
            HelpersMissing = parsed.HelpersMissing,
            ExpiredWhileDown = parsed.Expired,
            Downtime = TimeSpan.FromTicks(downtime / 100),
            Bytes = SnapshotFormat.HeaderLength + header.BodyLength,
            Duration = Stopwatch.GetElapsedTime(started),
            FromCheckpoint = !final,
        };
    }

    private static void VerifyChecksum(Stream stream, in SnapshotFormat.Header header)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            long left = header.BodyLength;
            while (left > 0)
            {
                int n = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
                if (n <= 0)
                {
                    throw new SnapshotException(SnapshotRefusal.Truncated, "the file ends before its body");
                }

                sha.AppendData(buffer, 0, n);
                left -= n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        if (!sha.GetHashAndReset().AsSpan().SequenceEqual(header.Sha256))
        {
            throw new SnapshotException(SnapshotRefusal.Corrupt, "the body's checksum does not match its header");
        }
    }

    /// <summary>
    /// What a snapshot holds, read but not yet in the engine. Replication reads its records with it too, one record
    /// at a time, resolving masters it has not read itself through <paramref name="outside"/>.
    /// </summary>
    internal sealed class Parsed(ConntrackEngine engine, long now, long downtime, bool liberal, Func<int, Connection?>? outside = null)
    {
        public readonly List<Connection> Connections = [];
        public readonly List<Expectation> Expectations = [];
        private readonly Dictionary<int, Connection> _bySlot = [];
        private readonly List<(Connection Child, int Master)> _masters = [];

        // Every connection read, in the table's slots from the start: what Commit does not insert goes back.
        private readonly List<Connection> _created = [];

        /// <summary>Connections read that name a master, with the master's slot.</summary>
        public IReadOnlyList<(Connection Child, int Master)> Masters => _masters;
        public int StatesRestored;
        public int StatesReset;
        public int HelpersMissing;
        public int Expired;

        private long Remaining(long remaining) => remaining - downtime;

        public void ReadConnection(SnapshotReader reader)
        {
            byte kind = reader.ReadByte();
            if ((kind & ~(SnapshotFormat.RecordTcp | SnapshotFormat.RecordExtras)) != 0)
            {
                throw new SnapshotException(SnapshotRefusal.Corrupt, $"a connection record of kind {kind}");
            }

            var table = engine.Connections;
            if (!table.CanCreate)
            {
                throw new SnapshotException(SnapshotRefusal.TooLarge, $"more than {_created.Count} connections, the table holds {table.Capacity}");
            }

            var original = reader.ReadTuple();
            var reply = reader.ReadTuple();
            if (original.Family != reply.Family || original.Protocol != reply.Protocol
                || ((kind & SnapshotFormat.RecordTcp) != 0) != (original.Protocol == IpProtocol.Tcp))
            {
                throw new SnapshotException(SnapshotRefusal.Corrupt, $"a connection record whose parts disagree ({original}, {reply}, kind {kind})");
            }

            var conn = table.Create(original, reply);
            _created.Add(conn);
            conn.StatusBits = (ConnStatus)reader.ReadUInt32() & ~ConnStatus.Dying;
            conn.MarkValue = reader.ReadUInt32();
            long remaining = Remaining(reader.ReadInt64());
            conn.ExpiresAt = now + remaining;
            long streamAt = now + Remaining(reader.ReadInt64());
            conn.MasqueradeInterface = reader.ReadInt32();
            if (conn.Protocol != IpProtocol.Tcp)
            {
                conn.StreamAt = streamAt;
            }

            if ((kind & SnapshotFormat.RecordTcp) != 0)
            {
                conn.Tcp = ReadTcp(reader);
                if (liberal)
                {
                    conn.Tcp.Original.Flags |= TcpTrackFlags.BeLiberal;
                    conn.Tcp.Reply.Flags |= TcpTrackFlags.BeLiberal;
                }
            }

            if ((kind & SnapshotFormat.RecordExtras) != 0)
            {
                ReadExtras(reader, conn);
            }

            if (remaining <= 0)
            {
                Expired++;
                return;
            }

            Connections.Add(conn);
        }

        private void ReadExtras(SnapshotReader reader, Connection conn)
        {
            int slot = reader.ReadInt32();
            int master = reader.ReadInt32();
            var extras = conn.EnsureExtras();
            extras.ExpectedAtTranslatedAddress = reader.ReadByte() != 0;
            extras.SeqAdjOriginal = ReadSeqAdj(reader);
            extras.SeqAdjReply = ReadSeqAdj(reader);
            string? name = reader.ReadName();
            int version = reader.ReadInt32();
            ReadOnlySpan<byte> state = version == SnapshotFormat.NoState ? default : reader.ReadBytes(reader.ReadInt32());
            if (!_bySlot.TryAdd(slot, conn))
            {
                throw new SnapshotException(SnapshotRefusal.Corrupt, $"two connections with slot {slot}");
            }

            if (master >= 0)
            {
                _masters.Add((conn, master));
            }

            if (name is null)
            {
                return;
            }

            var helper = engine.FindHelper(name);
            if (helper is null)
            {
                HelpersMissing++;
                conn.StatusBits &= ~ConnStatus.Helper;
                return;
            }

            extras.Helper = helper;
            if (version == SnapshotFormat.NoState)
            {
                return;
            }

            try
            {
                extras.HelperState = helper.RestoreState(state, version);
            }
            catch (Exception)
            {
                extras.HelperState = null; // the helper's own fault: its connection starts afresh
            }

            if (extras.HelperState is null)
            {
                StatesReset++;
            }
            else
            {
                StatesRestored++;
            }
        }

        public void ReadExpectation(SnapshotReader reader)
        {
            int master = reader.ReadInt32();
            string? name = reader.ReadName();
            var tuple = reader.ReadTuple();
            int prefix = reader.ReadInt32();
            bool matchSourcePort = reader.ReadByte() != 0;
            var flags = (ExpectationFlags)reader.ReadByte();
            int expectationClass = reader.ReadInt32();
            long remaining = Remaining(reader.ReadInt64());
            bool follow = reader.ReadByte() != 0;
            var direction = (ConnDirection)reader.ReadByte();
            bool atTranslated = reader.ReadByte() != 0;
            ushort savedPort = reader.ReadUInt16();
            var nat = (ExpectationNat)reader.ReadByte();
            var natAddress = reader.ReadAddress();
            ushort natPort = reader.ReadUInt16();
            if (prefix > (tuple.Family == 4 ? 32 : 128) || direction > ConnDirection.Reply || nat > ExpectationNat.OnArrival)
            {
                throw new SnapshotException(SnapshotRefusal.Corrupt, "an expectation's fields are out of range");
            }

            if (remaining <= 0 || !TryMaster(master, out var owner) || owner.ExpiresAt <= now)
            {
                Expired++;
                return;
            }

            var helper = name is null ? null : engine.FindHelper(name);
            Expectations.Add(new Expectation(owner, helper)
            {
                Tuple = tuple,
                SourcePrefixLength = prefix,
                MatchSourcePort = matchSourcePort,
                Flags = flags,
                Class = expectationClass,
                ExpiresAt = now + remaining,
                FollowMasterNat = follow,
                NatDirection = direction,
                AtTranslatedAddress = atTranslated,
                SavedPort = savedPort,
                Nat = nat,
                NatAddress = natAddress,
                NatPort = natPort,
            });
        }

        private bool TryMaster(int slot, out Connection master)
        {
            if (_bySlot.TryGetValue(slot, out master))
            {
                return true;
            }

            if (outside?.Invoke(slot) is { } found)
            {
                master = found;
                return true;
            }

            return false;
        }

        /// <summary>Gives back the slots of the connections read that are not in the table (expired, refused, or all of them after an error).</summary>
        public void ReleaseLeftovers()
        {
            foreach (var conn in _created)
            {
                if (!conn.IsInTable)
                {
                    engine.Connections.Release(conn);
                }
            }

            _created.Clear();
        }

        /// <summary>Puts everything into the engine, or, when something does not fit, nothing.</summary>
        public void Commit()
        {
            var table = engine.Connections;
            if (Connections.Count > table.Capacity - table.Count)
            {
                throw new SnapshotException(SnapshotRefusal.TooLarge, $"{Connections.Count} connections, the table holds {table.Capacity}");
            }

            if (Expectations.Count > engine.Expectations.MaxExpectations)
            {
                throw new SnapshotException(SnapshotRefusal.TooLarge, $"{Expectations.Count} expectations, the engine holds {engine.Expectations.MaxExpectations}");
            }

            foreach (var (child, master) in _masters)
            {
                // A master that ran out while the daemon was down leaves its expected connection on its own.
                child.Extras!.Master = _bySlot.TryGetValue(master, out var m) && m.ExpiresAt > now ? m : null;
            }

            for (int i = 0; i < Connections.Count; i++)
            {
                var conn = Connections[i];
                if (table.IsTaken(conn.OriginalTuple, null) || table.IsTaken(conn.ReplyTuple, null))
                {
                    for (int j = 0; j < i; j++)
                    {
                        table.Remove(Connections[j]);
                    }

                    throw new SnapshotException(SnapshotRefusal.Corrupt, $"two connections with the tuple {conn.OriginalTuple}");
                }

                table.Insert(conn);
            }

            foreach (var e in Expectations)
            {
                engine.Expectations.Restore(e);
            }
        }

        private static TcpTrackState ReadTcp(SnapshotReader reader)
        {
            var tcp = new TcpTrackState
            {
                Original = ReadWindow(reader),
                Reply = ReadWindow(reader),
                LastSeq = reader.ReadUInt32(),
                LastAck = reader.ReadUInt32(),
                LastEnd = reader.ReadUInt32(),
                LastWindow = reader.ReadUInt16(),
                State = (TcpConntrackState)reader.ReadByte(),
                LastDir = (TcpDirection)reader.ReadByte(),
                Retrans = reader.ReadByte(),
                LastIndex = (TcpSegmentKind)reader.ReadByte(),
                LastWindowScale = reader.ReadByte(),
                LastFlags = (TcpTrackFlags)reader.ReadByte(),
                Status = (TcpTrackStatus)reader.ReadByte(),
            };
            if (!Enum.IsDefined(tcp.State) || !Enum.IsDefined(tcp.LastDir) || !Enum.IsDefined(tcp.LastIndex))
            {
                throw new SnapshotException(SnapshotRefusal.Corrupt, "a TCP state out of range");
            }

            return tcp;
        }

        private static TcpDirectionWindow ReadWindow(SnapshotReader reader) => new()
        {
            End = reader.ReadUInt32(),
            MaxEnd = reader.ReadUInt32(),
            MaxWindow = reader.ReadUInt32(),
            MaxAck = reader.ReadUInt32(),
            Scale = reader.ReadByte(),
            Flags = (TcpTrackFlags)reader.ReadByte(),
        };

        private static SeqAdjustment ReadSeqAdj(SnapshotReader reader) => new()
        {
            CorrectionPosition = reader.ReadUInt32(),
            OffsetBefore = reader.ReadInt32(),
            OffsetAfter = reader.ReadInt32(),
        };
    }
}

/// <summary>What a snapshot load restored, for the log and <c>offloadctl stats</c>.</summary>
public sealed record SnapshotLoadResult
{
    /// <summary>Connections restored.</summary>
    public int Connections { get; init; }

    /// <summary>Expectations restored.</summary>
    public int Expectations { get; init; }

    /// <summary>Connections whose helper state was restored.</summary>
    public int HelperStatesRestored { get; init; }

    /// <summary>Connections whose helper state was saved but could not be restored: they start with fresh state.</summary>
    public int HelperStatesReset { get; init; }

    /// <summary>Connections whose helper is no longer configured: they go on without one.</summary>
    public int HelpersMissing { get; init; }

    /// <summary>Connections and expectations whose time ran out while the daemon was down.</summary>
    public int ExpiredWhileDown { get; init; }

    /// <summary>From the capture to the load, by the wall clock.</summary>
    public TimeSpan Downtime { get; init; }

    /// <summary>The file's size.</summary>
    public long Bytes { get; init; }

    /// <summary>The snapshot was a checkpoint (the daemon did not stop cleanly): its TCP connections are tracked liberally.</summary>
    public bool FromCheckpoint { get; init; }

    /// <summary>How long the load took.</summary>
    public TimeSpan Duration { get; init; }
}
