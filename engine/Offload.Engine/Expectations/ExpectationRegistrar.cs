using Offload.Engine.Conntrack;
using Offload.Engine.Nat;

namespace Offload.Engine.Expectations;

/// <summary>
/// Turns a helper's <see cref="ExpectationRequest"/> into an expectation in the table (the kernel's
/// nf_ct_expect_init and nf_ct_expect_related, with the limit and timeout of the request's class), and for a translated
/// master searches the port the expected connection will arrive at (the port search of the kernel's NAT helpers,
/// nf_nat_exp_find_port; for a pair, nf_nat_sdp_media's search two ports at a time).
/// </summary>
internal sealed class ExpectationRegistrar(EngineOptions options, ExpectationTable expectations, EngineCounters counters)
{
    /// <summary>The policy of a master without a helper (never asked in practice: only helpers expect).</summary>
    private static readonly ExpectationPolicy NoHelperPolicy = new(1, TimeSpan.FromMinutes(5));

    /// <summary>
    /// Registers an expectation for a helper (see <see cref="HelperContext.Expect"/>); <c>added</c> is the expectation
    /// entered in the table when the result is <see cref="ExpectResult.Added"/>, null otherwise.
    /// </summary>
    public ExpectResult Expect(Connection master, ConnDirection direction, ref ExpectationRequest request, long now, out Expectation? added)
    {
        var policy = PolicyOf(master, in request);
        var expectation = Build(master, direction, in request, out bool movable);
        ExpectResult result;
        if (movable)
        {
            // The expected connection arrives at the master's translated address: it must be translated the
            // same way, on a port nobody else expects, starting with the announced one. The search then goes up
            // one port at a time, as the kernel's helpers did until 6.x (today's kernel tries random ports above the
            // announced one instead): predictable, and identical in a replay.
            result = ExpectResult.NoFreePort;
            var (first, min, size) = PortSearch(request.DestinationPort, expectation.AtTranslatedAddress);
            for (int attempt = 0; attempt < Math.Min(NatCore.MaxAttempts, size); attempt++)
            {
                ushort port = (ushort)(min + ((first - min + attempt) % size));
                if (port == 0)
                {
                    continue;
                }

                // Announcing the same port again replaces the master's earlier expectation (a repeated PORT); a port
                // the search moved to is a new one, and one the master already expects there is taken.
                result = AddAt(expectation, port, policy, now, replaceSame: attempt == 0);
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

        added = Counted(expectation, result);
        if (added is not null)
        {
            request.DestinationPort = expectation.Tuple.DestinationPort;
        }

        return result;
    }

    /// <summary>
    /// Registers two expectations on consecutive ports, both or neither (see <see cref="HelperContext.ExpectPair"/>): a
    /// movable pair is searched two ports at a time from the announced one (or inside the configured range), and a
    /// second that cannot be registered takes the first back, as the kernel's nf_nat_sdp_media does.
    /// </summary>
    public ExpectResult ExpectPair(Connection master, ConnDirection direction, ref ExpectationRequest request, long now, out Expectation? firstAdded, out Expectation? secondAdded)
    {
        firstAdded = secondAdded = null;
        var policy = PolicyOf(master, in request);
        var second = request;
        second.DestinationPort++;
        if (second.Nat is ExpectationNat.Redirect or ExpectationNat.Source)
        {
            second.NatPort++;
        }

        if (second.MatchSourcePort)
        {
            second.SourcePort++;
        }

        var one = Build(master, direction, in request, out bool movable);
        var two = Build(master, direction, in second, out _);
        ExpectResult result;
        if (!movable && request.DestinationPort == ushort.MaxValue)
        {
            result = ExpectResult.NoFreePort; // no port above it for the second
        }
        else if (!movable)
        {
            result = AddBoth(one, two, request.DestinationPort, policy, now, replaceSame: true);
        }
        else
        {
            // Pairs start at the announced port and go up two at a time (nf_nat_sdp_media); inside a configured range
            // they stay whole in it.
            var (first, min, size) = PortSearch(request.DestinationPort, one.AtTranslatedAddress);
            int pairs = Math.Min(NatCore.MaxAttempts, size / 2);
            result = ExpectResult.NoFreePort;
            for (int attempt = 0; attempt < pairs; attempt++)
            {
                int port = min + ((first - min + (2 * attempt)) % size);
                if (port == 0 || port + 1 > min + size - 1)
                {
                    continue;
                }

                result = AddBoth(one, two, (ushort)port, policy, now, replaceSame: attempt == 0);
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

        if (result != ExpectResult.Added)
        {
            if (result is ExpectResult.Clash or ExpectResult.NoFreePort)
            {
                counters.Count(EngineCounter.ExpectationsFailed); // the others were counted where they failed
            }

            return result;
        }

        firstAdded = one;
        secondAdded = two;
        request.DestinationPort = one.Tuple.DestinationPort;
        return result;
    }

    /// <summary>
    /// One pair at <paramref name="port"/> and the next; the first is taken back when the second fails. A clash is not
    /// counted (the search may go on); any other failure is.
    /// </summary>
    private ExpectResult AddBoth(Expectation one, Expectation two, ushort port, in ExpectationPolicy policy, long now, bool replaceSame)
    {
        var result = AddAt(one, port, policy, now, replaceSame);
        if (result == ExpectResult.Added)
        {
            result = AddAt(two, (ushort)(port + 1), policy, now, replaceSame);
            if (result != ExpectResult.Added)
            {
                expectations.Remove(one);
            }
        }

        if (result == ExpectResult.Added)
        {
            counters.Count(EngineCounter.ExpectationsCreated);
            counters.Count(EngineCounter.ExpectationsCreated);
        }
        else if (result != ExpectResult.Clash)
        {
            counters.Count(EngineCounter.ExpectationsFailed);
        }

        return result;
    }

    private ExpectResult AddAt(Expectation expectation, ushort port, in ExpectationPolicy policy, long now, bool replaceSame)
    {
        var tuple = expectation.Tuple;
        tuple.DestinationPort = port;
        expectation.Tuple = tuple;
        return expectations.Add(expectation, policy, now, replaceSame);
    }

    /// <summary>Counts the outcome of one expectation; returns it when it was added.</summary>
    private Expectation? Counted(Expectation expectation, ExpectResult result)
    {
        if (result == ExpectResult.Added)
        {
            counters.Count(EngineCounter.ExpectationsCreated);
            return expectation;
        }

        counters.Count(EngineCounter.ExpectationsFailed);
        return null;
    }

    /// <summary>The limit and timeout of the request's class, from the master's helper (the kernel's helper->expect_policy[class]); the request's own timeout when it gives one.</summary>
    private static ExpectationPolicy PolicyOf(Connection master, in ExpectationRequest request)
    {
        var policy = master.Extras?.Helper?.PolicyOf(request.Class) ?? NoHelperPolicy;
        return request.Timeout > TimeSpan.Zero ? policy with { Timeout = request.Timeout < MaxTimeout ? request.Timeout : MaxTimeout } : policy;
    }

    /// <summary>The longest a request may ask an expectation to wait (<see cref="ExpectationRequest.Timeout"/>).</summary>
    private static readonly TimeSpan MaxTimeout = TimeSpan.FromDays(1);

    /// <summary>
    /// The expectation a request describes. <paramref name="movable"/>: it follows a translated master, so the engine
    /// places its port at the master's translated address.
    /// </summary>
    private static Expectation Build(Connection master, ConnDirection direction, in ExpectationRequest request, out bool movable)
    {
        var expectation = new Expectation(master, request.Helper)
        {
            SourcePrefixLength = request.SourcePrefixLength,
            MatchSourcePort = request.MatchSourcePort,
            Flags = request.Flags,
            Class = request.Class,
            Nat = request.Nat,
            NatAddress = request.NatAddress,
            NatPort = request.NatPort,
        };

        var tuple = master.OriginalTuple;
        tuple.Protocol = request.Protocol;
        tuple.Source = request.Source;
        tuple.SourcePort = request.MatchSourcePort ? request.SourcePort : (ushort)0;
        tuple.Destination = request.Destination;
        tuple.DestinationPort = request.DestinationPort;
        expectation.Tuple = tuple;

        movable = master.IsNatted && request.Nat == ExpectationNat.FollowMaster;
        if (movable)
        {
            expectation.FollowMasterNat = true;
            expectation.NatDirection = direction.Opposite();
            expectation.SavedPort = request.DestinationPort;
            // Only an endpoint the helper re-announces at a translated address is ours to place: the peer's own
            // endpoint (a server's passive port) must stay where the peer listens.
            expectation.AtTranslatedAddress = request.Destination != master.TupleOf(direction).Source;
        }

        return expectation;
    }

    /// <summary>
    /// Where the port search for a translated expectation starts, and the range it stays in: upwards from the
    /// announced port (as the kernel), or, with a configured expectation port range, inside that range, starting at
    /// the announced port when it lies in it.
    /// </summary>
    private (int First, int Min, int Size) PortSearch(ushort announced, bool atTranslatedAddress)
    {
        // A shard's own slice: the connection will arrive where the steering rules queue that slice, at its master's shard.
        var (min, max) = options.SliceOf(options.NatPortMin, options.NatPortMax);
        if (!options.HasNatPortRange || !atTranslatedAddress)
        {
            return (announced, announced, 65536 - announced);
        }

        int size = max - min + 1;
        int first = announced >= min && announced <= max ? announced : min + (int)(announced * 2654435761u % (uint)size);
        return (first, min, size);
    }
}
