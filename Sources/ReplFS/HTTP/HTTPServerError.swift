/// Why ``HTTPServer`` could not start, naming the configuration key and the
/// address, so the daemon can print it as its one-line startup error.
///
/// Printed as e.g. `admin.socket: /run/replfs/replfsd.sock is in use by another replfsd`.
public struct HTTPServerError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable {
        /// Another process answers on the Unix socket.
        case inUse = "in-use"
        /// The socket path exists and is something else (never removed).
        case notASocket = "not-a-socket"
        /// The socket's directory is missing and cannot be created, or is not a directory.
        case directory
        /// The address is not "host:port" or a socket path.
        case invalidAddress = "invalid-address"
        /// bind(2), listen(2) or chmod(2) failed.
        case bind
    }

    public var code: Code
    /// The configuration key the address came from ("admin.socket", "metrics.listen").
    public var key: String
    /// The address as configured.
    public var address: String
    /// What went wrong, phrased to follow the address.
    public var message: String

    public init(_ code: Code, key: String, address: String, _ message: String) {
        self.code = code
        self.key = key
        self.address = address
        self.message = message
    }

    public var description: String { "\(key): \(address) \(message)" }
}
