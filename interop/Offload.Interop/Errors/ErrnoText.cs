using System.Globalization;
using System.Runtime.InteropServices;

namespace Offload.Interop;

/// <summary>How an errno is written in messages: its name, its number and libc's text ("ENOENT (2, No such file or directory)").</summary>
internal static class ErrnoText
{
    internal static string Describe(Errno errno)
    {
        string name = Enum.IsDefined(errno) ? errno.ToString() : "errno " + ((int)errno).ToString(CultureInfo.InvariantCulture);
        return $"{name} ({(int)errno}, {Marshal.GetPInvokeErrorMessage((int)errno)})";
    }
}
