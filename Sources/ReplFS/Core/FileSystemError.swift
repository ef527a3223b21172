/// Why a file operation of the mount failed: what the ``Store``, the
/// captures of its databases and ``FileSystem`` return instead of an errno.
///
/// The code says what kind of failure it is, so the store can act on it
/// (log a full disk) and tests can check it without knowing errnos; the
/// message and the cause say what happened, for the log. The errno the
/// application gets is made from it in one place, at the FUSE boundary
/// (``errno``, in FileSystem/), as LiteFS's `ToError` and swift-nio's
/// `FileSystemError` do.
public struct FileSystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is; stable, for code and tests to match on.
    public enum Code: String, Sendable {
        /// The system call on the real file under `DATA/files` failed. The
        /// mount is a pass-through: the application gets that errno
        /// unchanged (ENOENT, EEXIST, EACCES, ENOSPC, ...), so SQLite
        /// reacts as it would on the file system itself.
        case system
        /// This node does not take writes now (a replica, a handoff, a lease
        /// that ran out); nothing was done. EROFS makes SQLite open the
        /// database read-only ("attempt to write a readonly database").
        case readOnly = "read-only"
        /// The commit this write, truncate, unlink or sync completes could
        /// not be captured (a page could not be read back) or logged (the
        /// log could not be written or flushed). The operation did not reach
        /// the file or its sync failed, so the application was told nothing
        /// the log does not hold (invariant 2: log before commit).
        case notLogged = "not-logged"
        /// The commit reached this node's file and log, but the replicas
        /// `replication.sync-replicas` asks for did not confirm it before
        /// this node stopped being the primary: it is not acknowledged (it
        /// survives only if a replica that got it takes over; otherwise it
        /// is kept aside when this node rejoins).
        case notReplicated = "not-replicated"
        /// The kernel named an inode the mount no longer knows: as if the
        /// file did not exist.
        case noSuchNode = "no-such-node"
        /// The node's name now leads to another file (a replica's apply
        /// replaced it underneath): the kernel looks the name up again and
        /// retries, instead of pairing the old node's pages with the new file.
        case stale
        /// The request names no open file of this mount.
        case badHandle = "bad-handle"
        /// The request lacks what the operation needs (no file information).
        case invalid
    }

    public var code: Code
    /// What failed, in words, for the log.
    public var message: String
    /// The errno of the system call underneath, if one failed.
    public var cause: Errno?

    public init(_ code: Code, _ message: String, cause: Errno? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// The system call on the real file failed with `errno` (the way every
    /// `Syscall` result on a file of the mount enters this type).
    public static func system(_ errno: Errno) -> FileSystemError {
        FileSystemError(.system, "the system call on the file failed", cause: errno)
    }

    /// The commit could not be captured or logged; `cause` is the errno of
    /// the log's or the read-back's system call, if one failed.
    public static func notLogged(_ message: String, cause: Errno? = nil) -> FileSystemError {
        FileSystemError(.notLogged, message, cause: cause)
    }

    /// For example `not-logged: cannot write the transaction to the log (No space left on device)`.
    public var description: String {
        var text = "\(code.rawValue): \(message)"
        if let cause { text += " (\(cause))" }
        return text
    }
}
