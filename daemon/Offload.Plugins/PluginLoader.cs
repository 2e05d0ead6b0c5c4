using System.Globalization;
using System.Reflection;
using System.Runtime;
using System.Security.Cryptography;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Text;

namespace Offload.Plugins;

/// <summary>
/// Loads a plugin file: a helper assembly (<c>*.dll</c>) or a single C# file (<c>*.cs</c>) compiled in memory, each
/// into its own collectible load context. Every public, non-abstract <see cref="ConntrackHelper"/> subclass with a
/// public parameterless constructor in it is a helper.
/// </summary>
public static class PluginLoader
{
    /// <summary>The file kinds a plugin directory holds.</summary>
    public static bool IsPluginFile(string path) =>
        path.EndsWith(".dll", StringComparison.Ordinal) || path.EndsWith(".cs", StringComparison.Ordinal);

    /// <summary>How long a plugin's constructors may run when it is loaded.</summary>
    public static TimeSpan ConstructorBudget { get; set; } = TimeSpan.FromSeconds(2);

    private const int MaxErrorsShown = 20;

    /// <summary>
    /// The namespaces a <c>.cs</c> plugin may use without a using directive (as an SDK project's implicit usings do),
    /// compiled as a file of their own so that the plugin's line numbers are its own.
    /// </summary>
    private const string ImplicitUsings =
        "global using System;\nglobal using System.Buffers.Binary;\nglobal using System.Collections.Generic;\nglobal using System.Text;\nglobal using Offload.Sdk;\n";

    // What a .cs plugin compiles against: the framework the daemon runs on, and the SDK. Not the daemon's other
    // assemblies: a plugin sees the helper contract and nothing of the engine. Made on the first compilation only.
    private static readonly Lazy<MetadataReference[]> References = new(MakeReferences);

    /// <summary>
    /// Loads a plugin file; throws <see cref="PluginException"/> with the file's name and what is wrong, or
    /// <see cref="PluginRefusedException"/> when <paramref name="modes"/> refuse it (someone other than root could
    /// change it). The bytes compiled or loaded are the ones read from the descriptor that was checked.
    /// </summary>
    /// <param name="path">An absolute path to a .dll or a .cs file.</param>
    /// <param name="modes">Who may own the file and its directories: <see cref="StrictModes.Default"/> unless given.</param>
    public static Plugin Load(string path, StrictModes? modes = null)
    {
        if (!IsPluginFile(path))
        {
            throw new PluginException($"{path}: a plugin is a .dll assembly or a .cs file");
        }

        byte[] bytes = (modes ?? StrictModes.Default).Read(path);

        string hash = Convert.ToHexStringLower(SHA256.HashData(bytes));
        bool source = path.EndsWith(".cs", StringComparison.Ordinal);
        // A .dll is read into memory first: the file can then be replaced in place for a reload, and is not mapped.
        byte[] image = source ? Compile(path, bytes) : bytes;
        var context = new PluginLoadContext("plugin " + System.IO.Path.GetFileName(path));
        try
        {
            Assembly assembly;
            try
            {
                assembly = context.LoadFromStream(new MemoryStream(image, writable: false));
            }
            catch (BadImageFormatException e)
            {
                throw new PluginException($"{path}: not a .NET assembly ({e.Message})");
            }

            string version = source ? "sha256:" + hash[..12] : AssemblyVersion(assembly);
            var helpers = CreateHelpers(assembly, path);
            return new Plugin(path, version, hash, context, helpers);
        }
        catch
        {
            context.Unload();
            throw;
        }
    }

    private static string AssemblyVersion(Assembly assembly)
    {
        string version = assembly.GetName().Version?.ToString() ?? "0.0.0.0";
        string? informational = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        return informational is null || informational == version ? version : $"{version} ({informational})";
    }

    /// <summary>Finds the helper types and makes one instance of each, under <see cref="ConstructorBudget"/>.</summary>
    private static List<ConntrackHelper> CreateHelpers(Assembly assembly, string path)
    {
        var helpers = new List<ConntrackHelper>();
        Type[] types;
        try
        {
            types = assembly.GetExportedTypes();
        }
        catch (Exception e) when (e is ReflectionTypeLoadException or FileNotFoundException or FileLoadException or TypeLoadException)
        {
            throw new PluginException($"{path}: its types cannot be loaded (it may reference something other than Offload.Sdk and the framework, or a newer Offload.Sdk): {e.Message}");
        }

        foreach (var type in types)
        {
            if (!type.IsSubclassOf(typeof(ConntrackHelper)) || type.IsAbstract || type.GetConstructor(Type.EmptyTypes) is null)
            {
                continue;
            }

            helpers.Add(Construct(type, path));
        }

        if (helpers.Count == 0)
        {
            throw new PluginException($"{path}: no helper in it (a public, non-abstract ConntrackHelper subclass with a public parameterless constructor)");
        }

        var duplicate = helpers.GroupBy(h => h.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new PluginException($"{path}: two helpers are named '{duplicate.Key}'");
        }

        return helpers;
    }

    /// <summary>
    /// A constructor is plugin code too: it may throw or loop, and must not take the control thread with it. It runs on
    /// a thread of its own, because the runtime cannot abort a thread twice (the second abort never lands), and the
    /// thread that loads plugins is the control socket's, or a pool thread for a reload.
    /// </summary>
    private static ConntrackHelper Construct(Type type, string path)
    {
        ConntrackHelper? helper = null;
        Exception? failure = null;
        bool aborted = false;
        using var budget = new CancellationTokenSource(ConstructorBudget);
        var thread = new Thread(() =>
        {
            try
            {
#pragma warning disable SYSLIB0046 // ControlledExecution is the only way to stop a call that loops in .NET; see ContainedHelperInvoker.
                ControlledExecution.Run(
                    () =>
                    {
                        try
                        {
                            helper = (ConntrackHelper)Activator.CreateInstance(type)!;
                        }
                        catch (TargetInvocationException e)
                        {
                            failure = e.InnerException ?? e;
                        }
                    },
                    budget.Token);
#pragma warning restore SYSLIB0046
            }
            catch (OperationCanceledException)
            {
                aborted = true;
            }
        })
        {
            IsBackground = true,
            Name = "plugin-constructor",
        };
        thread.Start();
        thread.Join();
        if (aborted)
        {
            throw new PluginException($"{path}: the constructor of {type.FullName} ran past {ConstructorBudget.TotalSeconds:0.#} s and was aborted");
        }

        if (failure is not null || helper is null)
        {
            throw new PluginException($"{path}: the constructor of {type.FullName} failed: {failure?.GetType().Name}: {failure?.Message}");
        }

        return helper;
    }

    /// <summary>Compiles a single-file helper; errors are reported as <c>file:line:col: CSnnnn: message</c>.</summary>
    internal static byte[] Compile(string path, byte[] text)
    {
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        var source = SourceText.From(text, text.Length, Encoding.UTF8, canBeEmbedded: true);
        var trees = new[]
        {
            CSharpSyntaxTree.ParseText(ImplicitUsings, parse, path: "<implicit usings>"),
            CSharpSyntaxTree.ParseText(source, parse, path),
        };
        var options = new CSharpCompilationOptions(
            OutputKind.DynamicallyLinkedLibrary,
            optimizationLevel: OptimizationLevel.Release,
            nullableContextOptions: NullableContextOptions.Enable,
            allowUnsafe: false);
        var compilation = CSharpCompilation.Create(System.IO.Path.GetFileNameWithoutExtension(path), trees, References.Value, options);
        using var image = new MemoryStream();
        var result = compilation.Emit(image);
        if (!result.Success)
        {
            var errors = result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
            var text2 = new StringBuilder();
            foreach (var error in errors.Take(MaxErrorsShown))
            {
                var span = error.Location.GetLineSpan();
                text2.Append(CultureInfo.InvariantCulture, $"{span.Path}:{span.StartLinePosition.Line + 1}:{span.StartLinePosition.Character + 1}: {error.Id}: {error.GetMessage(CultureInfo.InvariantCulture)}\n");
            }

            if (errors.Count > MaxErrorsShown)
            {
                text2.Append(CultureInfo.InvariantCulture, $"... and {errors.Count - MaxErrorsShown} more errors\n");
            }

            throw new PluginException(text2.ToString().TrimEnd('\n'));
        }

        return image.ToArray();
    }

    private static MetadataReference[] MakeReferences()
    {
        string runtime = System.IO.Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        string trusted = AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES") as string ?? string.Empty;
        var references = trusted.Split(System.IO.Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Where(p => string.Equals(System.IO.Path.GetDirectoryName(p), runtime, StringComparison.Ordinal))
            .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p))
            .ToList();
        references.Add(MetadataReference.CreateFromFile(typeof(ConntrackHelper).Assembly.Location));
        return [.. references];
    }
}
