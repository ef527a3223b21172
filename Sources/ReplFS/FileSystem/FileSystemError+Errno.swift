/// The one place a ``FileSystemError`` becomes the errno the kernel hands
/// the application: every FUSE reply of an error goes through ``errno``
/// (``FUSEOperations``), nothing below the boundary makes an errno of its
/// own.
extension FileSystemError {
    /// The errno the application gets for this error.
    public var errno: Errno {
        switch code {
        case .system:
            return cause ?? .io
        case .readOnly:
            return .readOnlyFileSystem
        case .notLogged:
            // A full disk under the log is the application's full disk:
            // SQLite reports SQLITE_FULL and the application can retry once
            // space is freed. Anything else is an I/O error to it.
            if let cause, cause == .noSpace || cause == .quotaExceeded { return cause }
            return .io
        case .notReplicated:
            // SQLITE_IOERR: the application reports the commit as failed.
            return .io
        case .noSuchNode:
            return .noEntry
        case .stale:
            return .stale
        case .badHandle:
            return .badFileDescriptor
        case .invalid:
            return .invalid
        }
    }
}
