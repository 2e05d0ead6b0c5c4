using Offload.Engine.Conntrack;
using Offload.Engine.Nat;

namespace Offload.Engine.Expectations;

/// <summary>
/// Turns a helper's <see cref="ExpectationRequest"/> into an expectation in the table (the kernel's
/// nf_ct_expect_init and nf_ct_expect_related), and for a translated master searches the port the expected
/// connection will arrive at (the port search of the kernel's NAT helpers, nf_nat_exp_find_port).
/// </summary>
internal sealed class ExpectationRegistrar(EngineOptions options, ExpectationTable expectations, EngineCounters counters)
{
    /// <summary>
    /// Registers an expectation for a helper (see <see cref="HelperContext.Expect"/>); <c>added</c> is the expectation
    /// entered in the table when the result is <see cref="ExpectResult.Added"/>, null otherwise.
    /// </summary>
    public ExpectResult Expect(Connection master, ConnDirection direction, ref ExpectationRequest request, long now, out Expectation? added)
    {
        var helper = master.Extras?.Helper;
        var policy = helper?.Policy ?? new ExpectationPolicy(1, TimeSpan.FromMinutes(5));
        var expectation = new Expectation(master, request.Helper)
        {
            SourcePrefixLength = request.SourcePrefixLength,
            MatchSourcePort = request.MatchSourcePort,
            Flags = request.Flags,
            Class = request.Class,
        };

        var tuple = master.OriginalTuple;
        tuple.Protocol = request.Protocol;
        tuple.Source = request.Source;
        tuple.SourcePort = request.MatchSourcePort ? request.SourcePort : (ushort)0;
        tuple.Destination = request.Destination;
        tuple.DestinationPort = request.DestinationPort;
        expectation.Tuple = tuple;

        expectation.Nat = request.Nat;
        expectation.NatAddress = request.NatAddress;
        expectation.NatPort = request.NatPort;

        ExpectResult result;
        if (master.IsNatted && request.Nat == ExpectationNat.FollowMaster)
        {
            // The expected connection arrives at the master's translated address: it must be translated the
            // same way, on a port nobody else expects, starting with the announced one. The search then goes up
            // one port at a time, as the kernel's helpers did until 6.x (today's kernel tries random ports above the
            // announced one instead): predictable, and identical in a replay.
            expectation.FollowMasterNat = true;
            expectation.NatDirection = direction.Opposite();
            expectation.SavedPort = request.DestinationPort;
            result = ExpectResult.NoFreePort;
            // Only an endpoint the helper re-announces at a translated address is ours to place: the peer's own
            // endpoint (a server's passive port) must stay where the peer listens.
            bool atTranslatedAddress = request.Destination != master.TupleOf(direction).Source;
            expectation.AtTranslatedAddress = atTranslatedAddress;
            var (first, min, size) = PortSearch(request.DestinationPort, atTranslatedAddress);
            for (int attempt = 0; attempt < Math.Min(NatCore.MaxAttempts, size); attempt++)
            {
                ushort port = (ushort)(min + ((first - min + attempt) % size));
                if (port == 0)
                {
                    continue;
                }

                tuple.DestinationPort = port;
                expectation.Tuple = tuple;
                // Announcing the same port again replaces the master's earlier expectation (a repeated PORT); a port
                // the search moved to is a new one, and one the master already expects there is taken.
                result = expectations.Add(expectation, policy, now, replaceSame: attempt == 0);
                if (result != ExpectResult.Clash)
                {
                    break;
                }
            }

            if (result == ExpectResult.Clash)
            {
                result = ExpectResult.NoFreePort;
            }
        }
        else
        {
            result = expectations.Add(expectation, policy, now);
        }

        if (result == ExpectResult.Added)
        {
            added = expectation;
            request.DestinationPort = expectation.Tuple.DestinationPort;
            counters.Count(EngineCounter.ExpectationsCreated);
        }
        else
        {
            added = null;
            counters.Count(EngineCounter.ExpectationsFailed);
        }

        return result;
    }

    /// <summary>
    /// Where the port search for a translated expectation starts, and the range it stays in: upwards from the
    /// announced port (as the kernel), or, with a configured expectation port range, inside that range, starting at
    /// the announced port when it lies in it.
    /// </summary>
    private (int First, int Min, int Size) PortSearch(ushort announced, bool atTranslatedAddress)
    {
        int min = options.NatPortMin;
        int max = options.NatPortMax;
        if (!options.HasNatPortRange || !atTranslatedAddress)
        {
            return (announced, announced, 65536 - announced);
        }

        int size = max - min + 1;
        int first = announced >= min && announced <= max ? announced : min + (int)(announced * 2654435761u % (uint)size);
        return (first, min, size);
    }
}
