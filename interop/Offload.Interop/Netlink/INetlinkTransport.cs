namespace Offload.Interop.Netlink;

/// <summary>
/// What a protocol layer (NfQueue) needs from its socket. <see cref="NetlinkSocket"/> is the only real one; the
/// seam exists so the protocol logic (acknowledgements, malformed input, verdict merging) can be tested by
/// replaying recorded kernel datagrams, without root.
/// </summary>
internal interface INetlinkTransport : IDisposable
{
    uint PortId { get; }

    TimeSpan ReceiveTimeout { get; set; }

    uint NextSequence();

    void SendBatch(ReadOnlySpan<byte> messages);

    /// <summary>As <see cref="NetlinkSocket.Receive"/>.</summary>
    int Receive(Span<byte> buffer);

    /// <summary>As <see cref="NetlinkSocket.ReceiveMany"/>.</summary>
    int ReceiveMany(ReceiveSlots slots, int count);
}
