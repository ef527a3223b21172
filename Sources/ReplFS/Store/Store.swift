#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Foundation
import Logging
import Synchronization

/// The replicated directory: the real files under `DATA/files`, the
/// databases among them, and their LTX logs.
///
/// Every file operation of the mount arrives here as a path relative to the
/// mount root (or an open ``StoreFile``), is performed on the real file, and
/// is shown to the ``Database`` it concerns, which turns SQLite's commit
/// points into LTX files. The store knows nothing of FUSE: the file system
/// layer calls it, never the reverse.
public final class Store: Sendable {
    public let directory: DataDirectory

    /// Descriptor of `DATA/files`; every path is resolved relative to it.
    let filesFD: Int32

    let environment: DatabaseEnvironment

    let materializer: LTXMaterializer

    let spool: LTXSpool

    let observers: ObserverSlot
    /// What commits wait for before they return (synchronous replication).
    let barrier: CommitBarrierSlot

    /// What was logged, for the metrics.
    public let counters = StoreCounters()

    let commitEpoch = CommitEpoch()

    let mountAccess = Mutex<any MountAccess>(NoMountAccess())

    /// Plain files open for writing, by path: a truncation by path while one
    /// is open is reported when it closes, not half-written.
    let openWriters = Mutex<[String: Int]>([:])

    let asides = Mutex<[String]>([])

    let databases: Mutex<[String: Database]>

    private let gate: WriteGate

    /// `DATA/lease-deadline` (``LeaseDeadlineFile``), -1 if it cannot be opened.
    private let deadlineFD: Int32

    public let logger: Logger

    /// Paces the line about writes in the mount that failed.
    private let failedWrites = LogThrottle()

    /// Opens the store and runs recovery on every database found in the
    /// files or the logs. The directory must be prepared and locked.
    public init(directory: DataDirectory, nodeID: UInt64, logger: Logger) throws(StoreError) {
        self.directory = directory
        self.logger = logger
        switch Syscall.open(at: AT_FDCWD, directory.files, flags: O_RDONLY | O_DIRECTORY) {
        case .success(let fd): filesFD = fd
        case .failure(let error): throw StoreError(.io, "cannot open files directory", path: directory.files, errno: error)
        }
        materializer = LTXMaterializer()
        materializer.logger.withLock { $0 = logger }
        // Expired LTX files were once kept here for reuse.
        _ = Syscall.removeTree(directory.root + "/recycle")
        spool = try LTXSpool(directory: directory.spool, materializer: materializer)
        let sameDevice = (try? Syscall.stat(directory.spool).get().st_dev) == (try? Syscall.stat(directory.files).get().st_dev)
        observers = ObserverSlot()
        barrier = CommitBarrierSlot()
        environment = DatabaseEnvironment(
            filesFD: filesFD, filesPath: directory.files, ltxRoot: directory.ltx, nodeID: nodeID, logger: logger, spool: spool, spoolSharesDevice: sameDevice,
            materializer: materializer, observers: observers, counters: counters, commitEpoch: commitEpoch, barrier: barrier)
        databases = Mutex([:])
        gate = WriteGate(open: true)
        // Where the application's watchdog reads the lease deadline; no
        // deadline until a lease keeper opens writes.
        deadlineFD = (try? Syscall.open(at: AT_FDCWD, directory.root + "/" + LeaseDeadlineFile.name, flags: O_RDWR | O_CREAT, mode: 0o644).get()) ?? -1
        if deadlineFD >= 0 { LeaseDeadlineFile.write(0, fd: deadlineFD) }
        try replaySpool()
        try spool.start()
        // Snapshots and files in transit from an earlier run are stale.
        _ = Syscall.removeTree(directory.root + "/tmp")
        recoverAll()
    }

    deinit {
        materializer.stop()
        Syscall.close(filesFD)
    }

    /// Sets who hears about changes (replication on a primary).
    public func setObserver(_ observer: (any StoreObserver)?) {
        observers.set(observer)
    }

    /// Sets what every commit through the mount waits for before it
    /// returns (``CommitBarrier``; none: commits return once logged).
    public func setCommitBarrier(_ barrier: (any CommitBarrier)?) {
        self.barrier.set(barrier)
    }

    /// Every database the store tracks, by path.
    public var databaseSummaries: [DatabaseSummary] {
        databases.withLock { Array($0.values) }.map(\.summary).sorted { $0.path < $1.path }
    }

    /// The position of the database at `path`, if it is tracked.
    public func position(of path: String) -> Position? {
        databases.withLock { $0[path] }?.position
    }

    func database(at path: String, create: Bool) -> Database? {
        databases.withLock { databases in
            if let existing = databases[path] { return existing }
            guard create else { return nil }
            let database = Database(path: path, environment: environment)
            databases[path] = database
            return database
        }
    }

    /// Puts back into the logs what a crash left only in the spool.
    private func replaySpool() throws(StoreError) {
        let ltxRoot = directory.ltx
        try spool.replay(logger: logger) { replay in
            let logDirectory = ltxRoot + "/" + replay.key
            _ = Syscall.mkdir(at: AT_FDCWD, logDirectory, mode: 0o755)
            return Syscall.open(at: AT_FDCWD, logDirectory, flags: O_RDONLY | O_DIRECTORY).flatMap { fd in
                defer { Syscall.close(fd) }
                return Self.restore(replay, in: fd)
            }
        }
    }

    /// Makes one log hold what the spool says it must.
    private static func restore(_ replay: LTXSpool.Replay, in directoryFD: Int32) -> Result<Void, Errno> {
        for txid in replay.abandoned { _ = Syscall.unlink(at: directoryFD, LTXFileName(minTXID: txid, maxTXID: txid).description) }
        var files = LTXLogDirectory(directoryFD: directoryFD)
        if let base = replay.reset {
            files.removeAll(keeping: .init(minTXID: TXID(1), maxTXID: base, storage: .file))
        } else {
            files.truncateSegments(from: replay.firstTXID)
        }
        for record in replay.records {
            if case .failure(let error) = files.append(record.bytes, minTXID: record.minTXID, maxTXID: record.txid, now: MonotonicClock.nanoseconds()) {
                return .failure(error)
            }
        }
        return .success(())
    }

    private func recoverAll() {
        var paths = Set<String>()
        findDatabases(in: "", into: &paths)
        if case .success(let fd) = Syscall.open(at: AT_FDCWD, directory.ltx, flags: O_RDONLY | O_DIRECTORY) {
            if case .success(let entries) = Syscall.directoryEntries(fd) {
                for entry in entries {
                    paths.insert(LTXLog.recordedPath(ltxRoot: directory.ltx, key: entry.name) ?? DatabaseKey.unescape(entry.name))
                }
            }
            Syscall.close(fd)
        }
        for path in paths.sorted() {
            let database = Database(path: path, environment: environment)
            let outcomes = database.recover(absoluteFilesPath: directory.files)
            logger.info("database ready", metadata: ["database": "\(path)", "position": "\(database.position)", "recovery": "\(outcomes)"])
            databases.withLock { $0[path] = database }
        }
    }

    /// Adds the relative paths of SQLite databases below `directoryPath`.
    func findDatabases(in directoryPath: String, into paths: inout Set<String>) {
        guard case .success(let fd) = Syscall.open(at: filesFD, at(directoryPath), flags: O_RDONLY | O_DIRECTORY) else { return }
        defer { Syscall.close(fd) }
        guard case .success(let entries) = Syscall.directoryEntries(fd) else { return }
        for entry in entries {
            let path = directoryPath.isEmpty ? entry.name : directoryPath + "/" + entry.name
            if entry.type == UInt8(DT_DIR) {
                findDatabases(in: path, into: &paths)
            } else if entry.type == UInt8(DT_REG), SQLiteFileRole.classify(path) == .main, isDatabaseFile(path) {
                paths.insert(path)
            }
        }
    }

    func isDatabaseFile(_ path: String) -> Bool {
        guard case .success(let fd) = Syscall.open(at: filesFD, path, flags: O_RDONLY) else { return false }
        defer { Syscall.close(fd) }
        var header = [UInt8](repeating: 0, count: DatabaseHeader.size)
        guard case .success(DatabaseHeader.size) = header.withUnsafeMutableBytes({ Syscall.pread(fd, into: $0, at: 0) }) else { return false }
        return header.withUnsafeBytes { DatabaseHeader($0) } != nil
    }

    /// Whether writes are accepted now (the node is primary and its lease,
    /// if any, has not run out). On a replica every mutating operation fails
    /// (``FileSystemError/Code/readOnly``, `EROFS`) before touching anything.
    public var isWritable: Bool { gate.admits }

    /// Starts accepting writes, until `deadline` (``MonotonicClock``
    /// nanoseconds) if the lease sets one. With `epoch`, transactions from
    /// now on are recorded as committed in it (the primary's term).
    public func startWrites(epoch: Epoch? = nil, until deadline: UInt64? = nil) {
        refusalsLogged.withLock { $0.removeAll() }
        writesEnded.withLock { $0 = nil }
        if let epoch { commitEpoch.set(epoch) }
        gate.open(until: deadline)
        if deadlineFD >= 0 { LeaseDeadlineFile.write(deadline ?? 0, fd: deadlineFD) }
    }

    /// Moves the deadline of an accepted lease renewal.
    public func extendWrites(until deadline: UInt64) {
        gate.extend(until: deadline)
        if deadlineFD >= 0 { LeaseDeadlineFile.write(deadline, fd: deadlineFD) }
    }

    /// Stops accepting writes and returns once no write is in progress: every
    /// change this node made has been published to the observer by then.
    /// `reason` ("lost its lease: ...") is what refused writes are logged
    /// with; nil for a node that never wrote (a replica).
    public func stopWrites(reason: String? = nil) {
        if let reason, gate.isOpened {
            refusalsLogged.withLock { $0.removeAll() }
            writesEnded.withLock { $0 = (reason, Date()) }
        }
        gate.close()
        // An application still running past this point (this node lost its
        // lease) is killed by its watchdog.
        if reason != nil, deadlineFD >= 0 { LeaseDeadlineFile.write(1, fd: deadlineFD) }
    }

    /// Why and when this node stopped writing, if it wrote (for the log).
    private let writesEnded = Mutex<(reason: String, at: Date)?>(nil)

    /// What a refused write is logged as: why this node does not write now.
    private func refusalReason() -> String {
        let formatter = ISO8601DateFormatter()
        if let ended = writesEnded.withLock({ $0 }) {
            return "refused a write: this node \(ended.reason) at \(formatter.string(from: ended.at))"
        }
        if let passed = gate.deadlinePassedAgo {
            let at = Date().addingTimeInterval(-Double(passed) / 1e9)
            return "refused a write: this node's lease deadline passed at \(formatter.string(from: at)) without a renewal"
        }
        return "refused a write on a replica (read-only until promoted)"
    }

    /// Threads of this daemon that change files through the mount on a
    /// replica (taking SQLite's locks, writing the WAL-index): FUSE reports
    /// a request's thread ID, so these may write where applications may not.
    let daemonThreads = Mutex<Set<Int32>>([])

    /// Paths for which a refused write was already logged.
    private let refusalsLogged = Mutex<Set<String>>([])

    /// Lets the calling thread write through the mount on a replica.
    public func registerDaemonThread() {
        let tid = clinux_gettid()
        daemonThreads.withLock { _ = $0.insert(tid) }
    }

    /// Runs a mutating operation if `caller` may change `path` (and `other`)
    /// now. While the node writes, the operation is counted in flight (see
    /// ``WriteGate``); `exempt` operations (on files this daemon opened for
    /// replica apply, or opened read-only) are never refused.
    func permitted<T>(
        _ path: String, _ caller: Caller, also other: String? = nil, opening: Bool = false, exempt: Bool = false,
        _ operation: () -> Result<T, FileSystemError>
    ) -> Result<T, FileSystemError> {
        if exempt { return operation() }
        if gate.enter() {
            defer { gate.leave() }
            return operation()
        }
        if case .failure(let error) = permitReadOnly(path, caller, opening: opening) { return .failure(error) }
        if let other, case .failure(let error) = permitReadOnly(other, caller, opening: opening) { return .failure(error) }
        return operation()
    }

    /// What may change on a node that does not write: applications get
    /// ``FileSystemError/Code/readOnly`` (`EROFS`: SQLite then opens
    /// read-only and reports "attempt to write a readonly database"), except
    /// for what SQLite's readers need: the `-shm` file (WAL readers take
    /// locks and marks in it) and creating or opening (never writing) a
    /// `-wal`. Logged once per file.
    private func permitReadOnly(_ path: String, _ caller: Caller, opening: Bool) -> Result<Void, FileSystemError> {
        switch SQLiteFileRole.classify(path) {
        case .sharedMemory: return .success(())
        case .wal where opening: return .success(())
        default: break
        }
        if daemonThreads.withLock({ $0.contains(caller.pid) }) { return .success(()) }
        let first = refusalsLogged.withLock { $0.insert(path).inserted }
        if first {
            logger.notice("\(refusalReason())", metadata: ["path": "\(path)", "pid": "\(caller.pid)"])
        }
        return .failure(FileSystemError(.readOnly, "\(path): this node does not take writes now"))
    }

    /// Who asks: FUSE gives the thread ID of the process making the request.
    public struct Caller: Sendable {
        public var pid: Int32
        public init(pid: Int32) { self.pid = pid }
        /// For calls that do not come from the mount.
        public static let daemon = Caller(pid: -1)
    }
}

extension Store {
    /// Clean shutdown: every LTX file written and durable, spools removed.
    public func close() {
        for database in databases.withLock({ Array($0.values) }) { database.releaseStalledReaders() }
        spool.close(logger: logger)
        materializer.stop()
    }

    /// Logs, at most once a minute, a write or sync that failed for want of
    /// space or with an I/O error (the file's own, or a commit that could not
    /// be logged): the application sees SQLITE_FULL or SQLITE_IOERR, and the
    /// operator should see why.
    func noteFailedWrite(_ error: FileSystemError, path: String) {
        switch error.code {
        case .system:
            guard let cause = error.cause, cause == .noSpace || cause == .quotaExceeded || cause == .io else { return }
        case .notLogged:
            break
        case .readOnly, .noSuchNode, .stale, .badHandle, .invalid, .notReplicated:
            // A commit the replicas did not confirm is logged by the barrier.
            return
        }
        guard failedWrites.isDue() else { return }
        logger.error(
            "a write in the mount failed: the application gets SQLITE_FULL or SQLITE_IOERR (logged once a minute)",
            metadata: ["path": "\(path)", "error": "\(error)", "data": "\(directory.root)"])
    }

    /// Why the LTX log is held back (no space on DATA), if it is: shown by
    /// `status` and a metric; commits go on into the spool meanwhile.
    public var logStall: String? {
        materializer.stall?.summary
    }

    /// Why replicated transactions are logged but not yet in their
    /// database files (a full disk on a replica), if they are: shown by
    /// `status` and a metric; the node neither acknowledges them nor leads
    /// until they are written, which is retried by itself.
    public var applyStall: String? {
        let stalls = databases.withLock { Array($0.values) }.compactMap { database in database.applyStall.map { (database.path, $0) } }
        guard !stalls.isEmpty else { return nil }
        let formatter = ISO8601DateFormatter()
        return "apply stalled: "
            + stalls.sorted { $0.0 < $1.0 }.map { path, stall in
                "\(path): \(stall.failure.error) since \(formatter.string(from: stall.failure.since)), \(stall.failure.attempts) attempts (the database holds TXID \(stall.position.txid)"
                    + (stall.failure.loggedThrough.map { ", the log \($0)" } ?? "") + "; retrying)"
            }.joined(separator: "; ")
    }

    /// Waits until every transaction logged so far has its own LTX file
    /// (they are written just after the commit, off its path).
    public func waitForLogFiles() {
        let all = databases.withLock { Array($0.values) }
        for database in all { database.waitForLogFiles() }
    }
}
