#if canImport(Glibc)
import Glibc
#endif

/// A POSIX error number.
///
/// Every system call in ReplFS reports failure as an `Errno` (through
/// ``Syscall``). A file operation of the mount carries it as the cause of a
/// ``FileSystemError``, and the FUSE boundary hands it back to the kernel
/// unchanged, so SQLite sees exactly the error the real file system gave (or
/// `EROFS` on a replica).
public struct Errno: Error, RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current `errno`.
    public static var current: Errno { Errno(rawValue: errno) }

    public var description: String {
        guard let message = strerror(rawValue) else { return "errno \(rawValue)" }
        return String(cString: message)
    }

    public static let noEntry = Errno(rawValue: ENOENT)
    public static let exists = Errno(rawValue: EEXIST)
    public static let io = Errno(rawValue: EIO)
    public static let invalid = Errno(rawValue: EINVAL)
    public static let readOnlyFileSystem = Errno(rawValue: EROFS)
    public static let notSupported = Errno(rawValue: EOPNOTSUPP)
    public static let notImplemented = Errno(rawValue: ENOSYS)
    public static let badFileDescriptor = Errno(rawValue: EBADF)
    public static let permission = Errno(rawValue: EPERM)
    public static let isDirectory = Errno(rawValue: EISDIR)
    public static let notDirectory = Errno(rawValue: ENOTDIR)
    public static let interrupted = Errno(rawValue: EINTR)
    public static let wouldBlock = Errno(rawValue: EWOULDBLOCK)
    public static let noSpace = Errno(rawValue: ENOSPC)
    public static let quotaExceeded = Errno(rawValue: EDQUOT)
    public static let stale = Errno(rawValue: ESTALE)
    public static let notConnected = Errno(rawValue: ENOTCONN)
    public static let busy = Errno(rawValue: EBUSY)
    public static let crossDevice = Errno(rawValue: EXDEV)
}
