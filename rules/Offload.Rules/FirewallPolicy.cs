using System.Globalization;
using System.Text;

namespace Offload.Rules;

/// <summary>
/// The usual stateful FORWARD policy of a router (default DROP; established and related flows pass; new flows only from
/// the LAN, and to port forwards), written for flows offloadd tracks as well as those the kernel keeps: the daemon's
/// state is in the packet mark (<see cref="StateMarkBits"/>), the kernel's in conntrack. <c>offloadctl rules firewall</c>
/// prints it; the administrator loads it, since it is their firewall.
/// </summary>
public static class FirewallPolicy
{
    /// <summary>The policy for one family, in <c>iptables-restore</c> form.</summary>
    public static string Render(SteeringConfig steering, byte family)
    {
        string Mark(int bit)
        {
            string value = "0x" + SteeringRules.MarkBit(steering, bit).ToString("x", CultureInfo.InvariantCulture);
            return $"-m mark --mark {value}/{value}";
        }

        var text = new StringBuilder();
        text.Append("# A stateful FORWARD policy for flows offloadd tracks (state in the packet mark) and flows the kernel keeps\n")
            .Append("# (state in conntrack); load with ").Append(family == 4 ? "iptables" : "ip6tables").Append("-restore --noflush\n")
            .Append("*filter\n:FORWARD DROP [0:0]\n")
            .Append("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n")
            .Append("-A FORWARD ").Append(Mark(StateMarkBits.Established)).Append(" -j ACCEPT\n")
            .Append("-A FORWARD ").Append(Mark(StateMarkBits.Related)).Append(" -j ACCEPT\n");
        foreach (var from in steering.From)
        {
            foreach (var to in steering.To.Append(from))
            {
                text.Append($"-A FORWARD -i {from} -o {to} -j ACCEPT\n");
            }
        }

        foreach (var to in steering.To)
        {
            foreach (var from in steering.From)
            {
                // Port forwards: the daemon's (marked before FORWARD) and the kernel's (other protocols).
                text.Append($"-A FORWARD -i {to} -o {from} {Mark(StateMarkBits.DestinationNat)} -j ACCEPT\n");
                text.Append($"-A FORWARD -i {to} -o {from} -m conntrack --ctstate DNAT -j ACCEPT\n");
            }
        }

        return text.Append("COMMIT\n").ToString();
    }
}
