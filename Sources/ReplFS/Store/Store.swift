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
        try? FileManager.default.removeItem(atPath: directory.root + "/recycle")
        spool = try LTXSpool(directory: directory.spool, materializer: materializer)
        let sameDevice = (try? Syscall.stat(directory.spool).get().st_dev) == (try? Syscall.stat(directory.files).get().st_dev)
        observers = ObserverSlot()
        environment = DatabaseEnvironment(
            filesFD: filesFD, ltxRoot: directory.ltx, nodeID: nodeID, logger: logger, spool: spool, spoolSharesDevice: sameDevice,
            materializer: materializer, observers: observers, counters: counters, commitEpoch: commitEpoch)
        databases = Mutex([:])
        gate = WriteGate(open: true)
        // Where the application's watchdog reads the lease deadline; no
        // deadline until a lease keeper opens writes.
        deadlineFD = (try? Syscall.open(at: AT_FDCWD, directory.root + "/" + LeaseDeadlineFile.name, flags: O_RDWR | O_CREAT, mode: 0o644).get()) ?? -1
        if deadlineFD >= 0 { LeaseDeadlineFile.write(0, fd: deadlineFD) }
        try replaySpool()
        try spool.start()
        // Snapshots and files in transit from an earlier run are stale.
        try? FileManager.default.removeItem(atPath: directory.root + "/tmp")
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

    // MARK: - Databases

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
    private func findDatabases(in directoryPath: String, into paths: inout Set<String>) {
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

    // MARK: - Role

    /// Whether writes are accepted now (the node is primary and its lease,
    /// if any, has not run out). On a replica every mutating operation fails
    /// with `EROFS` before touching anything.
    public var isWritable: Bool { gate.admits }

    /// Starts accepting writes, until `deadline` (``MonotonicClock``
    /// nanoseconds) if the lease sets one. With `epoch`, transactions from
    /// now on are recorded as committed in it (the primary's term).
    public func startWrites(epoch: UInt64? = nil, until deadline: UInt64? = nil) {
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
    private let daemonThreads = Mutex<Set<Int32>>([])
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
    private func permitted<T>(
        _ path: String, _ caller: Caller, also other: String? = nil, opening: Bool = false, exempt: Bool = false,
        _ operation: () -> Result<T, Errno>
    ) -> Result<T, Errno> {
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
    /// `EROFS` (SQLite then opens read-only and reports "attempt to write a
    /// readonly database"), except for what SQLite's readers need: the
    /// `-shm` file (WAL readers take locks and marks in it) and creating or
    /// opening (never writing) a `-wal`. Logged once per file.
    private func permitReadOnly(_ path: String, _ caller: Caller, opening: Bool) -> Result<Void, Errno> {
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
        return .failure(.readOnlyFileSystem)
    }

    /// Who asks: FUSE gives the thread ID of the process making the request.
    public struct Caller: Sendable {
        public var pid: Int32
        public init(pid: Int32) { self.pid = pid }
        /// For calls that do not come from the mount.
        public static let daemon = Caller(pid: -1)
    }

    // MARK: - Files

    /// `*at` calls name the root ".".
    @inline(__always)
    private func at(_ path: String) -> String { path.isEmpty ? "." : path }

    public func attributes(_ path: String) -> Result<stat, Errno> {
        Syscall.lstat(at: filesFD, at(path))
    }

    public func attributes(of file: StoreFile) -> Result<stat, Errno> {
        Syscall.fstat(file.fd)
    }

    /// Opens an existing file. `O_APPEND` and `O_TRUNC` are handled by the
    /// kernel before the request (offsets and SETATTR), so they are dropped.
    public func open(_ path: String, flags: Int32, caller: Caller) -> Result<StoreFile, Errno> {
        let accessMode = flags & O_ACCMODE
        return permitted(path, caller, opening: true, exempt: accessMode == O_RDONLY) {
            let realFlags = flags & ~(O_APPEND | O_TRUNC | O_CREAT | O_EXCL | O_NOCTTY)
            return Syscall.open(at: filesFD, at(path), flags: realFlags).map { fd in
                makeFile(fd: fd, path: path, writable: accessMode != O_RDONLY, byDaemon: isDaemon(caller))
            }
        }
    }

    private func isDaemon(_ caller: Caller) -> Bool {
        daemonThreads.withLock { $0.contains(caller.pid) }
    }

    /// Creates and opens a file.
    public func create(_ path: String, flags: Int32, mode: mode_t, caller: Caller) -> Result<(StoreFile, stat), Errno> {
        return permitted(path, caller, opening: true) {
            let realFlags = (flags & ~(O_APPEND | O_TRUNC | O_NOCTTY)) | O_CREAT
            return Syscall.open(at: filesFD, path, flags: realFlags, mode: mode).flatMap { fd in
                Syscall.fstat(fd).map { st in
                    let file = makeFile(fd: fd, path: path, writable: true, byDaemon: isDaemon(caller))
                    if case .main = file.role { file.markModified() }
                    return (file, st)
                }.mapError { error in
                    Syscall.close(fd)
                    return error
                }
            }
        }
    }

    private func makeFile(fd: Int32, path: String, writable: Bool, byDaemon: Bool) -> StoreFile {
        let role = SQLiteFileRole.classify(path)
        if writable, role == .main { openWriters.withLock { $0[path, default: 0] += 1 } }
        let database: Database?
        switch role {
        case .journal(let base), .wal(let base): database = self.database(at: base, create: true)
        case .sharedMemory: database = nil
        case .main: database = self.database(at: path, create: false)
        }
        return StoreFile(fd: fd, path: path, role: role, database: database, writable: writable, byDaemon: byDaemon)
    }

    public func read(_ file: StoreFile, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Result<Int, Errno> {
        Syscall.pread(file.fd, into: buffer, at: offset)
    }

    /// Writes through to the real file, capturing a commit it completes.
    public func write(_ file: StoreFile, _ data: UnsafeRawBufferPointer, at offset: Int64) -> Result<Int, Errno> {
        let result = routeWrite(file, data, at: offset)
        if case .failure(let error) = result { noteFailedWrite(error, path: file.path) }
        return result
    }

    private func routeWrite(_ file: StoreFile, _ data: UnsafeRawBufferPointer, at offset: Int64) -> Result<Int, Errno> {
        return permitted(file.path, .daemon, exempt: file.byDaemon) {
            switch file.role {
            case .wal:
                guard let database = file.attachedDatabase else { return Syscall.pwrite(file.fd, data, at: offset) }
                return database.walWrite(data, at: offset, walFD: file.fd) { Syscall.pwrite(file.fd, data, at: offset) }
            case .journal:
                guard let database = file.attachedDatabase else { return Syscall.pwrite(file.fd, data, at: offset) }
                return database.journalWrite(data, at: offset) { Syscall.pwrite(file.fd, data, at: offset) }
            case .sharedMemory:
                return Syscall.pwrite(file.fd, data, at: offset)
            case .main:
                var database = file.attachedDatabase
                if database == nil {
                    database = self.database(at: file.path, create: offset == 0 && DatabaseHeader.hasMagic(data))
                    if let database { file.attach(database) }
                }
                let result = Syscall.pwrite(file.fd, data, at: offset)
                if case .success(let count) = result {
                    if let database {
                        database.mainFileWritten(offset: offset, count: count)
                    } else {
                        file.markModified()
                    }
                }
                return result
            }
        }
    }

    /// Truncates (or extends) a file, by open file when the kernel gives one.
    public func truncate(_ path: String, file: StoreFile?, size: Int64, caller: Caller) -> Result<Void, Errno> {
        return permitted(path, caller, exempt: file?.byDaemon == true) {
            let perform: () -> Result<Void, Errno> = { [self] in
                if let file { return Syscall.ftruncate(file.fd, size) }
                return Syscall.open(at: filesFD, path, flags: O_WRONLY).flatMap { fd in
                    defer { Syscall.close(fd) }
                    return Syscall.ftruncate(fd, size)
                }
            }
            switch SQLiteFileRole.classify(path) {
            case .journal(let base):
                guard let database = database(at: base, create: false) else { return perform() }
                return database.journalTruncate(to: size, perform: perform)
            case .wal(let base):
                let result = perform()
                if case .success = result { database(at: base, create: false)?.walResized(size: size) }
                return result
            case .sharedMemory:
                return perform()
            case .main:
                let result = perform()
                if case .success = result {
                    if let database = database(at: path, create: false) {
                        database.mainFileResized(size: size)
                    } else if let file {
                        file.markModified()
                    } else if openWriters.withLock({ $0[path] == nil }) {
                        publishFile(path)
                    }
                }
                return result
            }
        }
    }

    /// `fsync`: also the moment to make the LTX files of what SQLite syncs durable.
    public func sync(_ file: StoreFile, dataOnly: Bool) -> Result<Void, Errno> {
        let result = routeSync(file, dataOnly: dataOnly)
        if case .failure(let error) = result { noteFailedWrite(error, path: file.path) }
        return result
    }

    private func routeSync(_ file: StoreFile, dataOnly: Bool) -> Result<Void, Errno> {
        let perform = { Syscall.fsync(file.fd, dataOnly: dataOnly) }
        switch file.role {
        case .wal:
            guard let database = file.attachedDatabase else { return perform() }
            return database.walSync(perform: perform)
        case .journal:
            guard let database = file.attachedDatabase else { return perform() }
            return database.flushingLog(perform: perform)
        case .sharedMemory:
            return perform()
        case .main:
            guard let database = file.attachedDatabase ?? self.database(at: file.path, create: false) else { return perform() }
            if case .failure(let error) = database.mainFileSynced(closing: false) { return .failure(error) }
            return database.flushingLog(perform: perform)
        }
    }

    /// `close(2)` of one descriptor of the file.
    ///
    /// Only while this node writes: on a replica nothing in the mount can
    /// have changed, and waiting for a database here could wait forever (a
    /// reader that exits closes its files while the apply thread holds the
    /// database and waits for that reader's SQLite locks).
    public func flush(_ file: StoreFile) -> Result<Void, Errno> {
        guard file.writable, !file.byDaemon, isWritable else { return .success(()) }
        if case .wal = file.role, let database = file.attachedDatabase { return database.walClosed() }
        guard case .main = file.role else { return .success(()) }
        if let database = file.attachedDatabase ?? self.database(at: file.path, create: false) {
            return database.mainFileSynced(closing: true)
        }
        // A plain file is replicated whole when it is closed after a change.
        if file.takeModified() { publishFile(file.path) }
        return .success(())
    }

    /// The kernel released the last reference to an open file.
    public func release(_ file: StoreFile) {
        guard file.writable, file.role == .main else { return }
        openWriters.withLock { writers in
            let count = (writers[file.path] ?? 1) - 1
            writers[file.path] = count > 0 ? count : nil
        }
        // Written but never flushed (no close(2) reached us): report it now.
        if file.takeModified(), isPlain(file.path) { publishFile(file.path) }
    }

    /// Whether the kernel should bypass its page cache for this file.
    ///
    /// Journals and WALs are written at offsets that are not page aligned
    /// (frames are page size + 24 bytes); through the page cache the kernel
    /// splits such a write at the page boundary into two requests. Direct I/O
    /// sends each write whole: one round trip per write(2). They are read back
    /// rarely (rollback, WAL readers), so the cache buys little.
    public func prefersDirectIO(_ file: StoreFile) -> Bool {
        switch file.role {
        case .journal, .wal: return true
        case .main, .sharedMemory: return false
        }
    }

    /// Whether closing a descriptor of this file needs a FLUSH request:
    /// main files, where it may end writes no journal covered, and WALs,
    /// which another program may have written (a copy).
    public func needsFlush(_ file: StoreFile) -> Bool {
        switch file.role {
        case .main, .wal: return file.writable && !file.byDaemon && isWritable
        case .journal, .sharedMemory: return false
        }
    }

    public func unlink(_ path: String, caller: Caller) -> Result<Void, Errno> {
        return permitted(path, caller) {
            let perform = { [self] in Syscall.unlink(at: filesFD, path) }
            switch SQLiteFileRole.classify(path) {
            case .journal(let base):
                guard let database = database(at: base, create: false) else { return perform() }
                return database.journalUnlink(perform: perform)
            case .wal(let base):
                let result = perform()
                if case .success = result { database(at: base, create: false)?.walUnlinked() }
                return result
            case .sharedMemory:
                return perform()
            case .main:
                guard let database = database(at: path, create: false) else {
                    return perform().map { observers.publish(.removed(path: path)) }
                }
                return database.drop(perform: perform)
            }
        }
    }

    public func mkdir(_ path: String, mode: mode_t, caller: Caller) -> Result<stat, Errno> {
        return permitted(path, caller) {
            return Syscall.mkdir(at: filesFD, path, mode: mode).flatMap { attributes(path) }.map { st in
                observers.publish(.directory(path: path, mode: UInt32(st.st_mode & 0o7777)))
                return st
            }
        }
    }

    public func rmdir(_ path: String, caller: Caller) -> Result<Void, Errno> {
        return permitted(path, caller) {
            return Syscall.unlink(at: filesFD, path, isDirectory: true).map { observers.publish(.removed(path: path)) }
        }
    }

    public func mknod(_ path: String, mode: mode_t, device: dev_t, caller: Caller) -> Result<stat, Errno> {
        return permitted(path, caller) {
            return Syscall.mknod(at: filesFD, path, mode: mode, device: device).flatMap { attributes(path) }
        }
    }

    public func symlink(_ target: String, at path: String, caller: Caller) -> Result<stat, Errno> {
        return permitted(path, caller) {
            return Syscall.symlink(target, at: filesFD, path).flatMap { attributes(path) }.map { st in
                observers.publish(.symlink(path: path, target: target))
                return st
            }
        }
    }

    public func readlink(_ path: String) -> Result<String, Errno> {
        Syscall.readlink(at: filesFD, path)
    }

    public func link(_ from: String, to: String, caller: Caller) -> Result<stat, Errno> {
        return permitted(to, caller) {
            return Syscall.link(at: filesFD, from, to: to).flatMap { attributes(to) }.map { st in
                if isPlain(to) { publishFile(to) }
                return st
            }
        }
    }

    /// Renames a file or directory. Databases moved away are logged as
    /// deleted; databases appearing at a new path are logged with every page.
    /// (SQLite itself never renames; this keeps the log true when people do.)
    public func rename(_ from: String, to: String, flags: UInt32, caller: Caller) -> Result<Void, Errno> {
        return permitted(from, caller, also: to) {
            let fromIsDirectory = (try? attributes(from).get()).map { ($0.st_mode & S_IFMT) == S_IFDIR } ?? false
            let plain = fromIsDirectory || (isPlain(from) && SQLiteFileRole.classify(to) == .main && database(at: to, create: false) == nil)
            if case .failure(let error) = Syscall.rename(at: filesFD, from, to: to, flags: flags) { return .failure(error) }
            if plain {
                if flags & Syscall.renameExchange != 0 {
                    publishFile(from)
                    publishFile(to)
                } else {
                    observers.publish(.renamed(from: from, to: to))
                }
            }
            let affected: [String] = databases.withLock { databases in
                databases.keys.filter { key in
                    key == from || key == to || key.hasPrefix(from + "/") || key.hasPrefix(to + "/")
                }
            }
            var appeared = Set<String>()
            if fromIsDirectory {
                findDatabases(in: to, into: &appeared)
                if flags & Syscall.renameExchange != 0 { findDatabases(in: from, into: &appeared) }
            } else if SQLiteFileRole.classify(to) == .main, isDatabaseFile(to) {
                appeared.insert(to)
                if flags & Syscall.renameExchange != 0, isDatabaseFile(from) { appeared.insert(from) }
            }
            for path in Set(affected).union(appeared).sorted() {
                guard let database = database(at: path, create: true) else { continue }
                if case .failure(let error) = database.contentReplaced() {
                    logger.error("cannot log renamed database", metadata: ["database": "\(path)", "error": "\(error)"])
                }
            }
            // A WAL renamed into place (rsync writes a temporary file first).
            if case .wal(let base) = SQLiteFileRole.classify(to), let database = database(at: base, create: false),
                case .failure(let error) = database.walReplaced()
            {
                logger.error("cannot log a WAL renamed into place", metadata: ["database": "\(base)", "error": "\(error)"])
            }
            return .success(())
        }
    }

    public func chmod(_ path: String, file: StoreFile?, mode: mode_t, caller: Caller) -> Result<Void, Errno> {
        return permitted(path, caller) {
            let result = file.map { Syscall.fchmod($0.fd, mode: mode) } ?? Syscall.chmod(at: filesFD, at(path), mode: mode)
            if case .success = result, !path.isEmpty, isPlain(path) { publishFile(path) }
            return result
        }
    }

    // MARK: - Plain files

    /// A file replicated whole: not a database and not SQLite's own.
    func isPlain(_ path: String) -> Bool {
        SQLiteFileRole.classify(path) == .main && database(at: path, create: false) == nil
    }

    /// Reports the current content of a plain file, directory or link.
    func publishFile(_ path: String) {
        guard !observers.isEmpty, case .success(let st) = attributes(path) else { return }
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            observers.publish(.directory(path: path, mode: UInt32(st.st_mode & 0o7777)))
        case S_IFLNK:
            if case .success(let target) = readlink(path) { observers.publish(.symlink(path: path, target: target)) }
        case S_IFREG:
            guard case .success(let content) = readWholeFile(path) else { return }
            observers.publish(.file(path: path, mode: UInt32(st.st_mode & 0o7777), content: content))
        default:
            return
        }
    }

    func readWholeFile(_ path: String) -> Result<[UInt8], Errno> {
        Syscall.open(at: filesFD, path, flags: O_RDONLY).flatMap { fd in
            defer { Syscall.close(fd) }
            return Syscall.fstat(fd).flatMap { st in
                var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
                return bytes.withUnsafeMutableBytes { Syscall.pread(fd, into: $0, at: 0) }.map { Array(bytes.prefix($0)) }
            }
        }
    }

    public func chown(_ path: String, uid: uid_t, gid: gid_t, caller: Caller) -> Result<Void, Errno> {
        return permitted(path, caller) {
            return Syscall.chown(at: filesFD, at(path), uid: uid, gid: gid)
        }
    }

    public func setTimes(_ path: String, file: StoreFile?, _ times: (timespec, timespec), caller: Caller) -> Result<Void, Errno> {
        return permitted(path, caller) {
            if let file { return Syscall.futimens(file.fd, times) }
            return Syscall.utimens(at: filesFD, at(path), times)
        }
    }

    public func fallocate(_ file: StoreFile, mode: Int32, offset: Int64, length: Int64) -> Result<Void, Errno> {
        return permitted(file.path, .daemon, exempt: file.byDaemon) {
            return Syscall.fallocate(file.fd, mode: mode, offset: offset, length: length)
        }
    }

    public func statistics() -> Result<statvfs, Errno> {
        Syscall.fstatvfs(filesFD)
    }

    /// Opens a directory for listing.
    public func openDirectory(_ path: String) -> Result<Int32, Errno> {
        Syscall.open(at: filesFD, at(path), flags: O_RDONLY | O_DIRECTORY)
    }

    /// Syncs a directory. SQLite does so after creating a journal, and under
    /// `synchronous=EXTRA` after deleting one (making a DELETE-mode commit
    /// durable), so the LTX records of the databases are flushed with it.
    public func syncDirectory(_ fd: Int32) -> Result<Void, Errno> {
        if spool.hasPending, case .failure(let error) = spool.syncPending() { return .failure(error) }
        return Syscall.fsync(fd)
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
    /// space or with an I/O error: the application sees SQLITE_FULL or
    /// SQLITE_IOERR, and the operator should see why.
    private func noteFailedWrite(_ error: Errno, path: String) {
        guard error.rawValue == ENOSPC || error.rawValue == EDQUOT || error == .io, failedWrites.isDue() else { return }
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
