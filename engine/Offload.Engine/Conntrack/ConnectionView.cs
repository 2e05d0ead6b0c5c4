using Offload.Engine.Conntrack.Tcp;

namespace Offload.Engine.Conntrack;

/// <summary>
/// A copy of what a listing shows of one connection, taken under the engine's lock so that the formatting (strings,
/// allocations, the socket write) happens after the lock is released and holds up no packet.
/// </summary>
public readonly record struct ConnectionView(
    ConnTuple Original,
    ConnTuple Reply,
    long ExpiresAtNanoseconds,
    TcpConntrackState TcpState,
    ConnStatus Status,
    uint Mark,
    string? HelperName,
    ConnTuple? MasterOriginal)
{
    /// <summary>Copies a connection's listed fields (the helper's name is a reference: nothing is formatted here).</summary>
    public static ConnectionView Of(Connection connection) => new(
        connection.Original,
        connection.Reply,
        connection.ExpiresAtNanoseconds,
        connection.TcpState,
        connection.Status,
        connection.Mark,
        connection.Helper?.Name,
        connection.Master?.Original);

    public bool HasStatus(ConnStatus bits) => (Status & bits) == bits;
}
