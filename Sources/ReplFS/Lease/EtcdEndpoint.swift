/// One etcd client URL, checked once at startup so a typo in the
/// configuration fails there, not at the first election.
struct EtcdEndpoint: Sendable, Equatable, CustomStringConvertible {
    /// The URL as configured, without a trailing slash: requests go to `url + path`.
    let url: String

    /// Accepts `http://host:port` and `https://host:port` (a trailing `/` is
    /// dropped); the port is required because etcd has no standard HTTP one.
    /// IPv6 hosts go in brackets: `http://[::1]:2379`.
    init(_ text: String) throws(EtcdError) {
        func invalid(_ reason: String) -> EtcdError {
            EtcdError(.invalidEndpoint, operation: "init", endpoint: text, "\"\(text)\" is not an etcd endpoint: \(reason) (expected http://host:port)")
        }
        var rest = Substring(text)
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        let trimmed = String(rest)
        if rest.hasPrefix("http://") {
            rest = rest.dropFirst("http://".count)
        } else if rest.hasPrefix("https://") {
            rest = rest.dropFirst("https://".count)
        } else {
            throw invalid("the scheme must be http or https")
        }
        guard !rest.contains(where: { "/?#@ ".contains($0) }) else { throw invalid("a path, query, user or space is not allowed") }
        let host: Substring
        let portText: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw invalid("unclosed [ in the IPv6 host") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            guard after.hasPrefix(":") else { throw invalid("no port") }
            portText = after.dropFirst()
        } else {
            guard let colon = rest.lastIndex(of: ":") else { throw invalid("no port") }
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        }
        guard !host.isEmpty else { throw invalid("no host") }
        guard let port = Int(portText), (1...65535).contains(port) else { throw invalid("\"\(portText)\" is not a port") }
        url = trimmed
    }

    var description: String { url }
}
