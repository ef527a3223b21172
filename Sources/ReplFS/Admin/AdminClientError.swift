/// Why an admin call did not succeed, as the CLI reports it.
///
/// ``Code/refused`` carries the daemon's own ``AdminError`` (its code and
/// message); the other codes mean the daemon could not be asked or did not
/// answer properly. Printed as one line naming the socket.
public struct AdminClientError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable {
        /// Nothing answers on the socket (missing, stale, permission denied).
        case unreachable
        /// The daemon answered with an ``AdminError``.
        case refused
        /// The daemon took longer than the client's deadline (the action may still complete).
        case timedOut = "timed-out"
        /// The answer was not what the admin API sends (wrong program on the socket, version skew).
        case badResponse = "bad-response"
    }

    public var code: Code
    /// The admin socket that was asked.
    public var socket: String
    public var message: String
    /// The daemon's refusal, for ``Code/refused``.
    public var refusal: AdminError?

    public init(_ code: Code, socket: String, _ message: String, refusal: AdminError? = nil) {
        self.code = code
        self.socket = socket
        self.message = message
        self.refusal = refusal
    }

    /// The daemon's refusal as an error of this type.
    public static func refused(_ error: AdminError, socket: String) -> AdminClientError {
        AdminClientError(.refused, socket: socket, error.message, refusal: error)
    }

    public var description: String {
        switch code {
        case .unreachable: return "cannot reach replfsd at \(socket): \(message)"
        case .refused: return "replfsd refused (\(refusal?.code.rawValue ?? "error")): \(message)"
        case .timedOut: return "replfsd at \(socket) \(message)"
        case .badResponse: return "unexpected answer from \(socket): \(message)"
        }
    }
}
