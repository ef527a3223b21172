/// Why the archive could not be written or read: what was being done, the
/// path, and the underlying cause, in one line for the log and `status`.
public struct ArchiveError: Error, CustomStringConvertible, Sendable {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    init(_ what: String, path: String, _ errno: Errno) {
        message = "\(what) \(path): \(errno)"
    }

    init(_ what: String, _ error: LTXError) {
        message = "\(what): \(error)"
    }

    public var description: String { message }
}
