/// Why a promote or demote did not happen (nothing was changed).
public struct RoleError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case notPrimary, notCandidate, noCandidate, unreachable, conflict, notReady, failed
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
