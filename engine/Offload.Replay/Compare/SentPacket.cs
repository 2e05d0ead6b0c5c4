namespace Offload.Replay.Compare;

/// <summary>One IP packet that left the router: by which interface, when, and its bytes from the IP header on.</summary>
public sealed record SentPacket(string Interface, long TimestampNanoseconds, byte[] Packet);
