#if canImport(Glibc)
import Glibc
#endif
import Logging

/// The mount's side of ``MountAccess``: kernel cache invalidation through
/// the FUSE session, and SQLite's locks taken through the mount itself.
///
/// ReplFS lets the kernel serve POSIX locks (docs/decisions.md §1), so the
/// daemon takes exactly the locks a SQLite writer would, on files it opens
/// through its own mount: the kernel's lock table is per inode of the mount,
/// shared with every application. Only threads registered with
/// ``Store/registerDaemonThread()`` may do so on a replica.
public final class MountAccessor: MountAccess {
    private let mountPoint: String
    private let session: FUSESession
    private let fileSystem: FileSystem
    private let logger: Logger

    public init(mountPoint: String, session: FUSESession, fileSystem: FileSystem, logger: Logger) {
        self.mountPoint = mountPoint
        self.session = session
        self.fileSystem = fileSystem
        self.logger = logger
    }

    public func invalidateContent(path: String, _ what: CacheInvalidation) {
        guard let id = fileSystem.inodes.id(of: path) else { return }
        switch what {
        case .wholeFile:
            session.invalidateInode(id)
        case .byteRanges(let ranges) where ranges.isEmpty:
            // Attributes only (a negative offset leaves the pages alone).
            session.invalidateInode(id, offset: -1)
        case .byteRanges(let ranges):
            for range in ranges {
                // Length 0: to the end of the file.
                session.invalidateInode(id, offset: range.lowerBound, length: range.upperBound == Int64.max ? 0 : Int64(range.count))
            }
        }
    }

    public func invalidateName(path: String) {
        let (parent, name) = MountAccessor.split(path)
        guard let parentID = fileSystem.inodes.id(of: parent) else { return }
        if let id = fileSystem.inodes.id(of: path) { session.invalidateInode(id) }
        session.invalidateEntry(parent: parentID, name: name)
    }

    static func split(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[..<slash]), String(path[path.index(after: slash)...]))
    }

    public func excludeReaders(database path: String, walMode: Bool) -> any ReaderGate {
        MountReaderGate(mountPoint: mountPoint, database: path, walMode: walMode, until: nil, logger: logger)
    }

    public func tryExcludeReaders(database path: String, walMode: Bool, patience: Duration) -> (any ReaderGate)? {
        let gate = MountReaderGate(mountPoint: mountPoint, database: path, walMode: walMode, until: .now + patience, logger: logger)
        return gate.isHeld ? gate : nil
    }

    public func openSharedMemory(database path: String) -> Int32? {
        try? Syscall.open(at: AT_FDCWD, mountPoint + "/" + path + "-shm", flags: O_RDWR).get()
    }
}

/// Holds the locks that keep SQLite's readers out of one database.
///
/// - Rollback-journal databases: PENDING, RESERVED and the whole SHARED
///   range of the database file, exclusively (lockingv3.html: PENDING stops
///   new readers, then existing ones drain).
/// - WAL databases: the WRITE, CHECKPOINT, RECOVER and all five READ locks of
///   `-shm` (bytes 120-127): no read transaction can start, and a running
///   one delays the apply until it ends, never the other way round.
/// - A rollback-journal database that connections still have open in WAL
///   mode (opened before the primary switched it out of WAL; SQLite does not
///   let that happen on one machine): such a connection holds SHARED on the
///   database file for as long as it is open, idle or not, so the rollback
///   locks would wait for it forever. While any connection holds the `-shm`
///   open (its DMS byte, 128, is read-locked) the WAL locks keep readers out
///   instead: those connections read in WAL mode, and new ones open in WAL
///   mode too while the `-wal` is there (``readersUseWAL``).
final class MountReaderGate: ReaderGate, @unchecked Sendable {
    private var databaseFD: Int32 = -1
    private var sharedMemoryFD: Int32 = -1
    private let path: String
    private let logger: Logger
    /// Whether the locks are held (always, once `init` returns without a
    /// deadline).
    private(set) var isHeld = true
    /// Whether readers are held off through the `-shm` (WAL-mode
    /// connections), not the database file's rollback locks.
    private(set) var readersUseWAL = false

    /// Takes the locks, waiting for readers to finish; with a deadline,
    /// gives up there (``isHeld`` false, no lock kept).
    init(mountPoint: String, database: String, walMode: Bool, until deadline: ContinuousClock.Instant?, logger: Logger) {
        self.path = database
        self.logger = logger
        let absolute = mountPoint + "/" + database
        if walMode {
            if case .success(let fd) = Syscall.open(at: AT_FDCWD, absolute + "-shm", flags: O_RDWR) {
                sharedMemoryFD = fd
                readersUseWAL = true
                isHeld = lock(fd, from: LockBytes.walWrite, length: Self.walLockLength, until: deadline)
            }
            // No -shm: no connection has the database open in WAL mode.
        } else if case .success(let fd) = Syscall.open(at: AT_FDCWD, absolute, flags: O_RDWR) {
            databaseFD = fd
            isHeld = lockRollback(absolute, until: deadline)
        }
        if !isHeld { release() }
    }

    static let walLockLength = LockBytes.walReadFirst + LockBytes.walReadCount - LockBytes.walWrite

    /// The rollback locks, or the WAL locks if connections have the
    /// database open in WAL mode, rechecked at every retry: a connection can
    /// open it in WAL mode (and so hold SHARED for good) while the gate waits.
    private func lockRollback(_ absolute: String, until deadline: ContinuousClock.Instant?) -> Bool {
        let started = ContinuousClock.now
        var pendingHeld = false
        var noticed = false
        var checkedAt: ContinuousClock.Instant?
        while true {
            // Every 10 ms while waiting (an open through the mount each time).
            let checkDue = checkedAt.map { ContinuousClock.now - $0 >= .milliseconds(10) } ?? true
            if checkDue { checkedAt = .now }
            if checkDue, case .success(let shm) = Syscall.open(at: AT_FDCWD, absolute + "-shm", flags: O_RDWR) {
                if Syscall.rangeLockConflicts(shm, F_WRLCK, start: LockBytes.walDMS, length: 1) {
                    Syscall.close(databaseFD)
                    databaseFD = -1
                    sharedMemoryFD = shm
                    readersUseWAL = true
                    return lock(shm, from: LockBytes.walWrite, length: Self.walLockLength, until: deadline)
                }
                Syscall.close(shm)
            }
            if !pendingHeld { pendingHeld = Syscall.setRangeLock(databaseFD, F_WRLCK, start: LockBytes.pending, length: 2) }
            if pendingHeld, Syscall.setRangeLock(databaseFD, F_WRLCK, start: LockBytes.sharedFirst, length: LockBytes.sharedSize) { return true }
            let waited = ContinuousClock.now - started
            if let deadline, started + waited >= deadline { return false }
            usleep(waited < .milliseconds(5) ? 100 : 1000)
            if !noticed && waited > .seconds(5) {
                noticed = true
                logger.notice("waiting for readers to finish before applying", metadata: ["database": "\(path)"])
            }
        }
    }

    deinit { release() }

    /// Takes an exclusive lock, retrying until readers let go (or false
    /// once `deadline` passes).
    ///
    /// A reader that runs short transactions back to back holds the lock
    /// nearly all the time and releases it for microseconds between them,
    /// so the first retries are 100 µs apart (at 1 ms most attempts fell
    /// inside a transaction); past a few milliseconds the reader is a long
    /// one, and the retries slow to 1 ms so waiting it out costs no CPU.
    private func lock(_ fd: Int32, from start: Int64, length: Int64, until deadline: ContinuousClock.Instant?) -> Bool {
        let started = ContinuousClock.now
        var noticed = false
        while !Syscall.setRangeLock(fd, F_WRLCK, start: start, length: length) {
            let waited = ContinuousClock.now - started
            if let deadline, started + waited >= deadline { return false }
            // A reader is in a transaction: it finishes first.
            usleep(waited < .milliseconds(5) ? 100 : 1000)
            if !noticed && waited > .seconds(5) {
                noticed = true
                logger.notice("waiting for readers to finish before applying", metadata: ["database": "\(path)"])
            }
        }
        return true
    }

    func resetWALIndex(pageSize: Int, pageCount: UInt32) {
        guard sharedMemoryFD >= 0 else { return }
        var current = [UInt8](repeating: 0, count: WALIndexHeader.size)
        guard case .success(WALIndexHeader.size) = current.withUnsafeMutableBytes({ Syscall.pread(sharedMemoryFD, into: $0, at: 0) }),
            let header = current.withUnsafeBytes({ WALIndexHeader($0) })
        else {
            // Not initialized: the next reader rebuilds it from the files.
            return
        }
        let bytes = header.afterDatabaseChange(pageSize: pageSize, pageCount: pageCount).encoded()
        bytes.withUnsafeBytes { raw in
            _ = Syscall.pwrite(sharedMemoryFD, UnsafeRawBufferPointer(rebasing: raw[96..<136]), at: 96)
            _ = Syscall.pwrite(sharedMemoryFD, UnsafeRawBufferPointer(rebasing: raw[48..<96]), at: 48)
            _ = Syscall.pwrite(sharedMemoryFD, UnsafeRawBufferPointer(rebasing: raw[0..<48]), at: 0)
        }
    }

    func release() {
        // Closing the descriptors drops the locks.
        if databaseFD >= 0 { Syscall.close(databaseFD) }
        if sharedMemoryFD >= 0 { Syscall.close(sharedMemoryFD) }
        databaseFD = -1
        sharedMemoryFD = -1
    }
}
