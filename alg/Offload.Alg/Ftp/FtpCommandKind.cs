namespace Offload.Alg.Ftp;

/// <summary>The FTP control-channel lines that announce a data connection.</summary>
public enum FtpCommandKind : byte
{
    /// <summary>Client command <c>PORT h1,h2,h3,h4,p1,p2</c> (RFC 959): the client listens.</summary>
    Port,

    /// <summary>Client command <c>EPRT |proto|address|port|</c> (RFC 2428): the client listens, IPv4 or IPv6.</summary>
    Eprt,

    /// <summary>Server reply <c>227</c> to PASV: the server listens at <c>h1,h2,h3,h4,p1,p2</c>.</summary>
    Pasv,

    /// <summary>Server reply <c>229</c> to EPSV: the server listens at <c>(|||port|)</c>, on its own address.</summary>
    Epsv,
}
