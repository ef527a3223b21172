/// Where an ``HTTPServer`` listens: a Unix socket (the admin API, guarded by
/// file permissions) or a TCP host and port (the metrics endpoint, scraped
/// over the network).
public enum HTTPServerAddress: Sendable, Equatable, CustomStringConvertible {
    case unixSocket(path: String)
    case tcp(host: String, port: Int)

    /// Parses "host:port" for a TCP listener ("127.0.0.1:9090", "[::1]:9090", "0.0.0.0:0").
    /// `key` names the configuration key in the error.
    public static func parse(hostPort: String, key: String) throws(HTTPServerError) -> HTTPServerAddress {
        guard let colon = hostPort.lastIndex(of: ":"), colon != hostPort.startIndex,
            let port = Int(hostPort[hostPort.index(after: colon)...]), (0...65535).contains(port)
        else {
            throw HTTPServerError(.invalidAddress, key: key, address: hostPort, "is not host:port")
        }
        var host = String(hostPort[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .unixSocket(let path): return path
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}
