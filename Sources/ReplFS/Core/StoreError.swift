/// An error from the store, with a stable code, a message, the path it is
/// about and the underlying errno if there is one.
///
/// ``errno`` is what the FUSE boundary returns to the application: the real
/// system error when there is one, `EIO` otherwise.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case io
        case corruptLog = "corrupt-log"
        case busy
        case foreignDataDirectory = "foreign-data-directory"
        case recovery
    }

    public var code: Code
    public var message: String
    public var path: String?
    public var underlying: Errno?

    public init(_ code: Code, _ message: String, path: String? = nil, errno: Errno? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.underlying = errno
    }

    /// The errno to hand to the kernel for this error.
    public var errno: Errno { underlying ?? .io }

    public var description: String {
        var text = message
        if let path { text = "\(path): \(text)" }
        if let underlying { text += " (\(underlying))" }
        return text
    }
}
