using System.Runtime.Versioning;

// offloadd runs on Linux only, and so do the tests of its pieces (file modes, Unix sockets, SO_PEERCRED).
[assembly: SupportedOSPlatform("linux")]
