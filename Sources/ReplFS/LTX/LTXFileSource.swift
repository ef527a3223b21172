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
        switch Syscall.open(at: AT_FDCWD, path, flags: O_RDONLY) {
        case .success(let fd): self.init(fileDescriptor: fd, path: path)
        case .failure(let error): throw .io(operation: "open", path: path, errno: error.rawValue)
        }
    }

    /// Reads with `read(2)`, retrying on `EINTR`.
    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(LTXError) -> Int {
        switch Syscall.read(fileDescriptor, into: buffer) {
        case .success(let count): return count
        case .failure(let error): throw .io(operation: "read", path: path, errno: error.rawValue)
        }
    }

    /// Closes the descriptor.
    public func close() {
        Syscall.close(fileDescriptor)
    }
}
