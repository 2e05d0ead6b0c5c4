using System.Runtime.Versioning;

// Netlink, file modes and SO_PEERCRED: Linux only.
[assembly: SupportedOSPlatform("linux")]
