/// A malformed stream: the connection is closed and nothing in the frame is used.
public struct ReplicationProtocolError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Code: String, Sendable {
        case frameTooLarge = "frame-too-large"
        case checksumMismatch = "checksum-mismatch"
        case unknownMessage = "unknown-message"
        case truncated
        case malformed
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
