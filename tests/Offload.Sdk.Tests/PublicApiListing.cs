using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text;

namespace Offload.Sdk.Tests;

/// <summary>
/// Writes an assembly's public surface as text, one line per type and member, sorted, so that two versions compare
/// line by line: what a helper built against the SDK can see, and nothing else (protected members count: a helper
/// derives from <see cref="ConntrackHelper"/>).
/// </summary>
internal static class PublicApiListing
{
    private const BindingFlags Declared = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    public static string Of(Assembly assembly)
    {
        var text = new StringBuilder();
        foreach (var type in assembly.GetExportedTypes().OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            text.Append(TypeLine(type)).Append('\n');
            foreach (var line in MemberLines(type).Order(StringComparer.Ordinal))
            {
                text.Append("  ").Append(line).Append('\n');
            }
        }

        return text.ToString();
    }

    /// <summary>A listing's lines by type: each type's line, with the set of its member lines (indented as written).</summary>
    public static SortedDictionary<string, SortedSet<string>> Parse(string listing)
    {
        var types = new SortedDictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        SortedSet<string>? members = null;
        foreach (var line in listing.ReplaceLineEndings("\n").Split('\n'))
        {
            if (line.Length == 0)
            {
                continue;
            }

            if (line.StartsWith("  ", StringComparison.Ordinal))
            {
                (members ?? throw new FormatException($"member line before any type line: {line}")).Add(line);
            }
            else if (!types.TryGetValue(line, out members))
            {
                types[line] = members = new SortedSet<string>(StringComparer.Ordinal);
            }
        }

        return types;
    }

    /// <summary>Both listings' lines together (the unshipped one repeats a type's line to add members to it).</summary>
    public static SortedDictionary<string, SortedSet<string>> Merge(SortedDictionary<string, SortedSet<string>> a, SortedDictionary<string, SortedSet<string>> b)
    {
        var merged = new SortedDictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        foreach (var (type, members) in a.Concat(b))
        {
            if (!merged.TryGetValue(type, out var set))
            {
                merged[type] = set = new SortedSet<string>(StringComparer.Ordinal);
            }

            set.UnionWith(members);
        }

        return merged;
    }

    /// <summary>The lines of <paramref name="listed"/> that <paramref name="actual"/> lacks: a whole type, or "type  member".</summary>
    public static List<string> Missing(SortedDictionary<string, SortedSet<string>> listed, SortedDictionary<string, SortedSet<string>> actual)
    {
        var missing = new List<string>();
        foreach (var (type, members) in listed)
        {
            if (!actual.TryGetValue(type, out var present))
            {
                missing.Add(type);
                continue;
            }

            missing.AddRange(members.Where(m => !present.Contains(m)).Select(m => type + m));
        }

        return missing;
    }

    /// <summary>Writes parsed lines back in the order <see cref="Of"/> writes them.</summary>
    public static string Render(SortedDictionary<string, SortedSet<string>> types)
    {
        var text = new StringBuilder();
        foreach (var (type, members) in types.OrderBy(t => TypeName(t.Key), StringComparer.Ordinal))
        {
            text.Append(type).Append('\n');
            foreach (var member in members)
            {
                text.Append(member).Append('\n');
            }
        }

        return text.ToString();
    }

    // Of() sorts types by full name; a type line is "[Flags] kind Name : bases".
    private static string TypeName(string typeLine)
    {
        string rest = typeLine.StartsWith("[Flags] ", StringComparison.Ordinal) ? typeLine[8..] : typeLine;
        foreach (var kind in new[] { "static class ", "abstract class ", "sealed class ", "readonly struct ", "ref struct ", "class ", "struct ", "enum ", "interface " })
        {
            if (rest.StartsWith(kind, StringComparison.Ordinal))
            {
                rest = rest[kind.Length..];
                break;
            }
        }

        int colon = rest.IndexOf(" : ", StringComparison.Ordinal);
        return colon < 0 ? rest : rest[..colon];
    }

    private static string TypeLine(Type type)
    {
        string kind = type.IsEnum ? "enum" : type.IsInterface ? "interface" : type.IsValueType ? (type.IsByRefLike ? "ref struct" : IsReadOnly(type) ? "readonly struct" : "struct")
            : type.IsAbstract && type.IsSealed ? "static class" : type.IsAbstract ? "abstract class" : type.IsSealed ? "sealed class" : "class";
        var bases = new List<string>();
        if (type.IsEnum)
        {
            bases.Add(Name(Enum.GetUnderlyingType(type)));
        }
        else if (type.BaseType is { } b && b != typeof(object) && b != typeof(ValueType))
        {
            bases.Add(Name(b));
        }

        if (!type.IsEnum)
        {
            bases.AddRange(type.GetInterfaces().Where(i => i.IsPublic).Select(Name).Order(StringComparer.Ordinal));
        }
        string flags = type.GetCustomAttribute<FlagsAttribute>() is not null ? "[Flags] " : "";
        return $"{flags}{kind} {Name(type)}{(bases.Count > 0 ? " : " + string.Join(", ", bases) : "")}";
    }

    private static IEnumerable<string> MemberLines(Type type)
    {
        if (type.IsEnum)
        {
            foreach (var field in type.GetFields(BindingFlags.Public | BindingFlags.Static))
            {
                yield return $"{field.Name} = {Convert.ToInt64(field.GetRawConstantValue(), System.Globalization.CultureInfo.InvariantCulture)}";
            }

            yield break;
        }

        foreach (var member in type.GetMembers(Declared))
        {
            switch (member)
            {
                case ConstructorInfo c when Visible(c):
                    yield return $"{Access(c)}ctor({Parameters(c)})";
                    break;
                case MethodInfo m when Visible(m) && !m.IsSpecialName:
                    yield return $"{Access(m)}{Modifiers(m)}{Name(m.ReturnType)} {m.Name}{Generic(m)}({Parameters(m)})";
                    break;
                case MethodInfo m when Visible(m) && m.Name.StartsWith("op_", StringComparison.Ordinal):
                    yield return $"{Access(m)}static {Name(m.ReturnType)} {m.Name}({Parameters(m)})";
                    break;
                case PropertyInfo p when Visible(p.GetMethod) || Visible(p.SetMethod):
                    var accessors = new List<string>();
                    if (Visible(p.GetMethod))
                    {
                        accessors.Add("get;");
                    }

                    if (Visible(p.SetMethod))
                    {
                        bool init = p.SetMethod!.ReturnParameter.GetRequiredCustomModifiers().Contains(typeof(IsExternalInit));
                        accessors.Add((p.SetMethod.IsFamily ? "protected " : "") + (init ? "init;" : "set;"));
                    }

                    var accessor = (p.GetMethod is { } g && Visible(g) ? g : p.SetMethod)!;
                    string propertyType = Name(p.PropertyType);
                    if (p.PropertyType.IsByRef && p.GetMethod?.ReturnParameter.GetCustomAttributes().Any(a => a.GetType().Name == "IsReadOnlyAttribute") == true)
                    {
                        propertyType = "ref readonly " + propertyType[4..];
                    }

                    yield return $"{Access(accessor)}{Modifiers(accessor)}{propertyType} {p.Name} {{ {string.Join(" ", accessors)} }}";
                    break;
                case FieldInfo f when f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly:
                    string constant = f.IsLiteral ? $" = {f.GetRawConstantValue()}" : "";
                    yield return $"{(f.IsPublic ? "" : "protected ")}{(f.IsLiteral ? "const " : f.IsStatic ? "static " : "")}{(f.IsInitOnly ? "readonly " : "")}{Name(f.FieldType)} {f.Name}{constant}";
                    break;
                case EventInfo e when Visible(e.AddMethod):
                    yield return $"event {Name(e.EventHandlerType!)} {e.Name}";
                    break;
            }
        }
    }

    private static bool Visible(MethodBase? m) => m is not null && (m.IsPublic || m.IsFamily || m.IsFamilyOrAssembly);

    private static string Access(MethodBase m) => m.IsPublic ? "" : "protected ";

    private static string Modifiers(MethodInfo m) =>
        m.IsStatic ? "static " : m.IsAbstract ? "abstract " : m.IsVirtual && !m.IsFinal && m.GetBaseDefinition() == m ? "virtual " : m.GetBaseDefinition() != m ? "override " : "";

    private static string Generic(MethodInfo m) =>
        m.IsGenericMethodDefinition ? "<" + string.Join(", ", m.GetGenericArguments().Select(a => a.Name + Constraints(a))) + ">" : "";

    private static string Constraints(Type argument)
    {
        var attributes = argument.GenericParameterAttributes;
        var parts = new List<string>();
        if (attributes.HasFlag(GenericParameterAttributes.ReferenceTypeConstraint))
        {
            parts.Add("class");
        }

        if (attributes.HasFlag(GenericParameterAttributes.DefaultConstructorConstraint))
        {
            parts.Add("new()");
        }

        parts.AddRange(argument.GetGenericParameterConstraints().Select(Name));
        return parts.Count > 0 ? " : " + string.Join(", ", parts) : "";
    }

    private static string Parameters(MethodBase m) => string.Join(", ", m.GetParameters().Select(p =>
    {
        string modifier = p.ParameterType.IsByRef ? p.IsIn ? "in " : p.IsOut ? "out " : "ref " : "";
        var type = p.ParameterType.IsByRef ? p.ParameterType.GetElementType()! : p.ParameterType;
        string optional = p.HasDefaultValue ? $" = {p.DefaultValue ?? "null"}" : "";
        return $"{modifier}{Name(type)} {p.Name}{optional}";
    }));

    private static bool IsReadOnly(Type type) => type.GetCustomAttributes().Any(a => a.GetType().Name == "IsReadOnlyAttribute");

    private static string Name(Type type)
    {
        if (type.IsByRef)
        {
            return "ref " + Name(type.GetElementType()!);
        }

        if (type.IsArray)
        {
            return Name(type.GetElementType()!) + "[]";
        }

        if (type.IsGenericParameter)
        {
            return type.Name;
        }

        if (Nullable.GetUnderlyingType(type) is { } underlying)
        {
            return Name(underlying) + "?";
        }

        string name = type.IsNested ? Name(type.DeclaringType!) + "." + type.Name : type.Namespace + "." + type.Name;
        if (type.IsGenericType)
        {
            name = name[..name.IndexOf('`', StringComparison.Ordinal)] + "<" + string.Join(", ", type.GetGenericArguments().Select(Name)) + ">";
        }

        return name;
    }
}
