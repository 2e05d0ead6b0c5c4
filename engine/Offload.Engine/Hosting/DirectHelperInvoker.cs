namespace Offload.Engine.Hosting;

/// <summary>
/// Calls a helper's code directly: the engine's invoker when its options name none (replays, built-in helpers in
/// tests). With it, every call to a helper takes one path, whoever runs it.
/// </summary>
internal sealed class DirectHelperInvoker : IHelperInvoker
{
    public static readonly DirectHelperInvoker Instance = new();

    private DirectHelperInvoker()
    {
    }

    public HelperVerdict Help(ConntrackHelper helper, ref HelperContext context) => helper.Help(ref context);

    public HelperVerdict OnExpectedConnection(ConntrackHelper helper, in ExpectedConnection connection) => helper.OnExpectedConnection(connection);

    public void OnDestroy(ConntrackHelper helper, object? state) => helper.OnDestroy(state);
}
