namespace Offload.Interop.Ipset;

/// <summary>The set types Offload creates.</summary>
public enum IpsetType
{
    /// <summary>hash:ip,port,ip: address, protocol and port, second address (an expected flow with its source).</summary>
    HashIpPortIp,

    /// <summary>hash:ip,port: address, protocol and port.</summary>
    HashIpPort,
}

/// <summary>What an <see cref="IpsetOperation"/> does.</summary>
public enum IpsetOperationKind
{
    /// <summary>Add the entry, or refresh it (timeout included) when present.</summary>
    Add,

    /// <summary>Delete the entry; an absent entry is not an error.</summary>
    Delete,
}

/// <summary>
/// One add or delete for <see cref="IpsetClient.Apply"/>. A plain value: a batch of them is a span the caller
/// reuses, so building one allocates nothing (the set name is a string the caller keeps).
/// </summary>
public readonly struct IpsetOperation
{
    private IpsetOperation(IpsetOperationKind kind, string setName, in IpsetEntry entry, uint? timeoutSeconds)
    {
        ArgumentNullException.ThrowIfNull(setName);
        Kind = kind;
        SetName = setName;
        Entry = entry;
        TimeoutSeconds = timeoutSeconds;
    }

    /// <summary>Add or delete.</summary>
    public IpsetOperationKind Kind { get; }

    /// <summary>The set's name.</summary>
    public string SetName { get; }

    /// <summary>The entry.</summary>
    public IpsetEntry Entry { get; }

    /// <summary>For an add: the entry's timeout; null takes the set's default, 0 makes the entry permanent.</summary>
    public uint? TimeoutSeconds { get; }

    /// <summary>
    /// Adds <paramref name="entry"/> to <paramref name="setName"/>, or refreshes it when present.
    /// </summary>
    /// <param name="setName">The set.</param>
    /// <param name="entry">The entry; its kind must suit the set (a second address for hash:ip,port,ip, the set's family).</param>
    /// <param name="timeoutSeconds">
    /// Seconds until the kernel removes the entry by itself; null for the set's default; 0 for never. Only sets
    /// created with a timeout accept one (others answer IPSET_ERR_TIMEOUT).
    /// </param>
    public static IpsetOperation Add(string setName, in IpsetEntry entry, uint? timeoutSeconds = null) =>
        new(IpsetOperationKind.Add, setName, entry, timeoutSeconds);

    /// <summary>Deletes <paramref name="entry"/> from <paramref name="setName"/>; an absent entry is not an error.</summary>
    public static IpsetOperation Delete(string setName, in IpsetEntry entry) =>
        new(IpsetOperationKind.Delete, setName, entry, null);
}

/// <summary>
/// What an <see cref="IpsetClient"/> did so far. Individual failures never throw out of a batch: they are
/// counted here (and reported per operation), so a daemon can export them.
/// </summary>
public struct IpsetCounters
{
    /// <summary>Add and delete messages sent by batches (single Add/Delete calls included).</summary>
    public long Operations { readonly get; internal set; }

    /// <summary>Operations the kernel refused, or that got no answer.</summary>
    public long Failed { readonly get; internal set; }

    /// <summary>Sends (one sendto each) that carried add and delete messages.</summary>
    public long Sends { readonly get; internal set; }

    /// <summary>Operations whose answer never came (lost to ENOBUFS or a timeout); counted in <see cref="Failed"/> too.</summary>
    public long Unanswered { readonly get; internal set; }

    /// <summary>ENOBUFS reports: the socket's receive buffer overflowed and answers were lost.</summary>
    public long NoBufferEvents { readonly get; internal set; }

    /// <summary>Answers to requests no longer waited for (late answers after a timeout), ignored.</summary>
    public long StaleAnswers { readonly get; internal set; }

    /// <summary>Datagrams or messages that could not be read (truncated, malformed, from another port), ignored.</summary>
    public long Malformed { readonly get; internal set; }

    /// <summary>The error of the last failed operation: an errno, or an ipset code (4096 and up, see <see cref="IpsetErrors"/>).</summary>
    public Errno LastError { readonly get; internal set; }
}
