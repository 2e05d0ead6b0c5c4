namespace Offload.Daemon.Tests;

/// <summary>The plugins the tests load, as C# text (a .cs plugin as is, or compiled to a .dll first).</summary>
internal static class PluginSources
{
    public const ushort Port = 7777;

    /// <summary>
    /// A helper for TCP port 7777: "PORT n" from the client announces a connection from the server to the client's
    /// port n. It keeps a per-connection count of the packets it saw and logs "VERSION seen=N" for each payload.
    /// </summary>
    public static string Announce(string name = "announce", string version = "v1", string assemblyVersion = "1.0.0.0") => $$"""
        using System.Reflection;
        [assembly: AssemblyVersion("{{assemblyVersion}}")]

        public sealed class AnnounceHelper : ConntrackHelper
        {
            public AnnounceHelper() : base("{{name}}", new ExpectationPolicy(4, TimeSpan.FromSeconds(60)))
            {
                Ports = [{{Port}}];
            }

            public sealed class Seen { public int Count; }

            public override HelperVerdict Help(ref HelperContext context)
            {
                var payload = context.Payload;
                if (payload.IsEmpty)
                {
                    return HelperVerdict.Accept;
                }

                var seen = context.GetState<Seen>();
                seen.Count++;
                context.Log(HelperLogLevel.Information, "{{version}} seen=" + seen.Count);
                if (payload.Length > 5 && payload[0] == (byte)'P' && payload[1] == (byte)'O' && payload[2] == (byte)'R' && payload[3] == (byte)'T' && payload[4] == (byte)' ')
                {
                    ushort port = ushort.Parse(Encoding.ASCII.GetString(payload.Slice(5)).Trim());
                    var request = new ExpectationRequest
                    {
                        Protocol = IpProtocol.Tcp,
                        Source = context.OtherTuple.Source,
                        SourcePrefixLength = context.Family == 4 ? 32 : 128,
                        Destination = context.OtherTuple.Destination,
                        DestinationPort = port,
                    };
                    context.Expect(ref request);
                }

                return HelperVerdict.Accept;
            }
        }
        """;

    /// <summary>A helper on port 7777 whose calls fail in the way given: throw, loop for ever, or allocate without bound.</summary>
    public static string Faulty(string name, string fault) => $$"""
        public sealed class FaultyHelper : ConntrackHelper
        {
            public static List<byte[]> Hoard = new();

            public FaultyHelper() : base("{{name}}", new ExpectationPolicy(1, TimeSpan.FromSeconds(10)))
            {
                Ports = [{{Port}}];
            }

            public override HelperVerdict Help(ref HelperContext context)
            {
                if (context.Payload.IsEmpty)
                {
                    return HelperVerdict.Accept;
                }

                {{fault switch
                {
                    "throw" => "throw new InvalidOperationException(\"broken on purpose\");",
                    "loop" => "long spins = 0; while (true) { spins++; }",
                    "allocate" => "for (int i = 0; i < 64; i++) { Hoard.Add(new byte[1024 * 1024]); } return HelperVerdict.Accept;",
                    _ => throw new ArgumentException(fault),
                }}}
            }
        }
        """;
}
