#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An `LTXByteSource` that reads a file descriptor with `read(2)`.
///
/// The decoder buffers internally, so reads arrive in large chunks. This is a
/// plain value holding a descriptor, not an owner: whoever opened the file
/// calls `close()` exactly once (typically in a `defer`), which keeps the type
/// copyable and `Sendable`.
public struct LTXFileSource: LTXByteSource, Sendable {
    /// The descriptor read from.
    public let fileDescriptor: Int32
    /// The path, used only in error messages.
    public let path: String

    /// Wraps an already-open descriptor; reading starts at its current offset.
    public init(fileDescriptor: Int32, path: String) {
        self.fileDescriptor = fileDescriptor
        self.path = path
    }

    /// Opens `path` read-only. The caller must `close()` the result.
    public init(path: String) throws(LTXError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw .io(operation: "open", path: path, errno: errno)
        }
        self.init(fileDescriptor: fd, path: path)
    }

    /// Reads with `read(2)`, retrying on `EINTR`.
    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(LTXError) -> Int {
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return 0 }
        while true {
            #if canImport(Glibc)
            let n = Glibc.read(fileDescriptor, base, buffer.count)
            #else
            let n = Darwin.read(fileDescriptor, base, buffer.count)
            #endif
            if n >= 0 { return n }
            if errno != EINTR {
                throw .io(operation: "read", path: path, errno: errno)
            }
        }
    }

    /// Closes the descriptor.
    public func close() {
        #if canImport(Glibc)
        _ = Glibc.close(fileDescriptor)
        #else
        _ = Darwin.close(fileDescriptor)
        #endif
    }
}
