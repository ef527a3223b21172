/// What the store needs from the mount to change files underneath
/// applications (on a replica), without knowing FUSE: the file-system layer
/// implements it (`MountAccessor`), the store only calls it.
public protocol MountAccess: Sendable {
    /// Drops the kernel's cached attributes of the file at `path`, and the
    /// cached pages `what` names.
    func invalidateContent(path: String, _ what: CacheInvalidation)
    /// Drops the kernel's cached name `path` (created, removed or replaced).
    func invalidateName(path: String)
    /// Keeps SQLite's readers out of the database at `path` (taking the
    /// locks a writer takes, waiting for readers in a transaction to finish)
    /// until the gate is released.
    func excludeReaders(database path: String, walMode: Bool) -> any ReaderGate
    /// The same, waiting at most `patience` for a moment with no reader in
    /// a transaction (back-to-back short reads leave gaps of microseconds):
    /// nil if readers held on throughout.
    func tryExcludeReaders(database path: String, walMode: Bool, patience: Duration) -> (any ReaderGate)?
    /// The database's `-shm` opened read-write through the mount (so
    /// readers' shared mappings see what is written), to publish frames
    /// appended to its WAL (``WALIndexAppender``); nil if there is none.
    func openSharedMemory(database path: String) -> Int32?
}

/// SQLite's readers are held off one database while this is open.
public protocol ReaderGate: Sendable {
    /// Whether the readers held off are WAL-mode connections (held through
    /// the `-shm`): then they must be told of the change through the
    /// WAL-index header, and the `-wal` they read through must stay.
    var readersUseWAL: Bool { get }
    /// Rewrites the WAL-index header in `-shm` (through the mount, so the
    /// readers' shared mappings see it). Does nothing if there is no `-shm`.
    func resetWALIndex(pageSize: Int, pageCount: UInt32)
    /// Lets readers back in.
    func release()
}

/// No mount (tests, tools): nothing to invalidate or exclude.
public struct NoMountAccess: MountAccess {
    public init() {}
    public func invalidateContent(path: String, _ what: CacheInvalidation) {}
    public func invalidateName(path: String) {}
    public func excludeReaders(database path: String, walMode: Bool) -> any ReaderGate { NoReaderGate() }
    public func tryExcludeReaders(database path: String, walMode: Bool, patience: Duration) -> (any ReaderGate)? { NoReaderGate() }
    public func openSharedMemory(database path: String) -> Int32? { nil }

    struct NoReaderGate: ReaderGate {
        var readersUseWAL: Bool { false }
        func resetWALIndex(pageSize: Int, pageCount: UInt32) {}
        func release() {}
    }
}
