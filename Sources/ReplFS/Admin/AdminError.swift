/// Why the daemon refused or failed an admin request.
///
/// The code is stable (scripts match on it) and decides the HTTP status; the
/// message is for the operator. On the wire: `{"error": code, "message": ...}`.
public struct AdminError: Error, Codable, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Codable, Sendable {
        /// The request is malformed (bad JSON, missing field, relative path). 400.
        case badRequest = "bad-request"
        /// Only the primary can do this (import). 409.
        case notPrimary = "not-primary"
        /// This node may not become primary (`lease.candidate: false`). 409.
        case notCandidate = "not-candidate"
        /// No replica can take over (demote with none connected and caught up). 409.
        case noCandidate = "no-candidate"
        /// Another action is under way, or the state does not allow this one. 409.
        case conflict
        /// No such database or route. 404.
        case notFound = "not-found"
        /// The route exists but not with this method. 405.
        case methodNotAllowed = "method-not-allowed"
        /// The action was tried and failed. 500.
        case failed
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The HTTP status this error is answered with.
    public var httpStatus: Int {
        switch code {
        case .badRequest: return 400
        case .notPrimary, .notCandidate, .noCandidate, .conflict: return 409
        case .notFound: return 404
        case .methodNotAllowed: return 405
        case .failed: return 500
        }
    }

    public var description: String { "\(code.rawValue): \(message)" }

    enum CodingKeys: String, CodingKey {
        case code = "error"
        case message
    }
}
