using System.Runtime.Versioning;

// offloadd speaks netlink and NFQUEUE: it exists only on Linux.
[assembly: SupportedOSPlatform("linux")]
