/// A configuration problem, naming the key (dotted path) it is about.
///
/// Printed as one line, e.g. `/etc/replfs/replfsd.yml: lease.etcd.ttl: "2x" is
/// not a duration (use 500ms, 2s, 10m, 1h)`; the daemon exits with code 2.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    public var file: String?
    public var key: String?
    public var message: String

    public init(file: String? = nil, key: String?, _ message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    public var description: String {
        var parts: [String] = []
        if let file { parts.append(file) }
        if let key { parts.append(key) }
        parts.append(message)
        return parts.joined(separator: ": ")
    }
}
