namespace Offload.Plugins;

/// <summary>A plugin could not be loaded, replaced or removed; the message says which file and why (compile errors as file:line:col).</summary>
public class PluginException : Exception
{
    public PluginException()
    {
    }

    public PluginException(string message)
        : base(message)
    {
    }

    public PluginException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
