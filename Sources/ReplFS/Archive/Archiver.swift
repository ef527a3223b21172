#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Synchronization

/// The primary's continuous archive (`backup.path`): every committed
/// transaction, read back from the LTX log, written as Litestream 0.5 file
/// replicas (``BackupArchive``), compacted, snapshotted and pruned.
///
/// It never stands on the commit path: it runs on a thread of its own,
/// woken by the change feed (without being one of its readers, so the feed
/// keeps nothing for it), and reads what it archives from the log. A target
/// that is full, slow or gone only makes the archive fall behind: it says
/// so (``status``, a metric, the log once a minute) and catches up when the
/// target returns, from the log, or from a new snapshot once the log no
/// longer holds what it lacks. Only a writable primary archives; a node
/// that becomes primary reads where the archive stands and continues it.
public final class Archiver: @unchecked Sendable {
    public struct Settings: Sendable {
        public var path: String
        public var retention: Duration
        public var snapshotInterval: Duration
        /// Compaction of level n-1 into level n, at these wall-clock
        /// boundaries (Litestream's defaults).
        public var compaction: [Duration] = [.seconds(30), .seconds(300), .seconds(3600)]
        /// Level 0 files covered by level 1 are kept this long.
        public var levelZeroRetention: Duration = .seconds(300)
        /// At most one level-0 file per database this often (Litestream's
        /// sync interval): a commit after a quiet spell is archived at
        /// once, in a file of its own; under load, what commits meanwhile
        /// goes into one file. Each file costs three syncs on the target,
        /// which must not compete with the commits' own.
        public var levelZeroInterval: Duration = .seconds(1)

        public init(path: String, retention: Duration, snapshotInterval: Duration) {
            self.path = path
            self.retention = retention
            self.snapshotInterval = snapshotInterval
        }
    }

    let archive: BackupArchive
    let settings: Settings
    let store: Store
    private let feed: ChangeFeed
    let logger: Logger
    private let stopped = Atomic(false)
    private let ended = Semaphore()
    private let shared = Mutex(Shared())
    /// Throttles the "behind" report to once a minute.
    private let behindLog = LogThrottle(interval: .seconds(60))
    let plainFiles: PlainFileArchiver
    /// The file system `backup.path` was on at start: a target that is
    /// unmounted later leaves its empty mount point, which must not be
    /// written in its place (the archive would go on beside itself).
    private let targetDevice: UInt64?

    // Owned by the archiver's thread.
    /// Where the archive stands, per database read from the target
    /// (absent from `archived` but in `read`: no archive yet).
    /// (Mirrored into what `status` reads.)
    var archived: [String: Position] = [:] {
        didSet {
            let txids = archived.mapValues(\.txid.rawValue)
            shared.withLock { shared in
                for (database, txid) in txids { shared.databases[database, default: ArchiveStatus.Database(name: database)].archivedTXID = txid }
            }
        }
    }
    var read: Set<String> = []
    var lastCompaction: [String: [Int64]] = [:]
    var lastRetention: Int64 = 0
    /// When the next level-0 file may be written (monotonic ms).
    var levelZeroDue: Int64 = 0
    /// The newest file archived (or found) per database, to notice an
    /// archive wiped or replaced under the archiver.
    var newestFile: [String: String] = [:]

    /// What `status` and the metrics read.
    struct Shared {
        var databases: [String: ArchiveStatus.Database] = [:]
        var lastError: String?
        var errorSince: Int64?
        var errors = 0
        var filesWritten = 0
    }

    public init(settings: Settings, store: Store, feed: ChangeFeed, logger: Logger) {
        self.settings = settings
        self.archive = BackupArchive(root: settings.path)
        self.store = store
        self.feed = feed
        self.logger = logger
        self.plainFiles = PlainFileArchiver(archive: archive, store: store, retention: settings.retention)
        if case .success(let info) = Syscall.stat(settings.path) { targetDevice = UInt64(info.st_dev) } else { targetDevice = nil }
    }

    /// Fails unless `backup.path` is a directory on the file system it was
    /// on at start.
    func checkTarget() throws(ArchiveError) {
        guard case .success(let info) = Syscall.stat(archive.root), info.st_mode & S_IFMT == S_IFDIR else {
            throw ArchiveError("backup.path \(archive.root) is not a directory (not mounted?)")
        }
        if let targetDevice, UInt64(info.st_dev) != targetDevice {
            throw ArchiveError(
                "backup.path \(archive.root) is no longer on the file system it was on at start (unmounted, or mounted since): not archiving there; restart replfsd to use the file system mounted there now")
        }
    }

    public func start() {
        DetachedThread { [self] in
            run()
            ended.post()
        }.start()
    }

    public func stop() {
        stopped.store(true, ordering: .releasing)
        feed.wakeAll()
        _ = ended.wait(timeout: .seconds(30))
    }

    private var isRunning: Bool { !stopped.load(ordering: .acquiring) }

    private func run() {
        var seen: UInt64 = 0
        var retryAt: Int64 = 0
        /// Doubles with each failed pass in a row (1 s to 30 s): a
        /// target that keeps failing is not hammered with snapshot copies.
        var backoff: Int64 = 1000
        while isRunning {
            seen = feed.waitForChange(after: seen, timeout: 1)
            guard isRunning else { return }
            guard store.isWritable else {
                // Not the primary: whoever is reads the archive afresh,
                // and nothing is pending here.
                forgetAll()
                shared.withLock { $0.databases = [:] }
                continue
            }
            var now = Int64(MonotonicClock.nanoseconds() / 1_000_000)
            if now < retryAt { continue }
            if now < levelZeroDue {
                usleep(useconds_t(min(1000, levelZeroDue - now) * 1000))
                now = Int64(MonotonicClock.nanoseconds() / 1_000_000)
                guard isRunning else { return }
            }
            do throws(ArchiveError) {
                // A pass cut short (the role changed) proves nothing.
                guard try pass() else { continue }
                retryAt = 0
                backoff = 1000
                shared.withLock {
                    $0.lastError = nil
                    $0.errorSince = nil
                }
            } catch {
                retryAt = now + backoff
                backoff = min(backoff * 2, 30_000)
                let first = shared.withLock { shared -> Bool in
                    shared.errors += 1
                    defer { shared.lastError = error.message }
                    if shared.errorSince == nil { shared.errorSince = WallClock.milliseconds() }
                    return shared.lastError != error.message
                }
                if first { logger.error("backup: \(error.message)", metadata: ["backup": "\(settings.path)"]) }
                // What was not written is read again from the target.
                forgetAll()
            }
            reportIfBehind()
        }
    }

    /// One round: every database brought up to date, plain files, then
    /// compaction, snapshots and retention when due. Each database (and the
    /// plain files) on its own: one that fails does not hold up the
    /// others; the first failure is thrown at the end. False if the round
    /// was cut short because this node stopped being the primary.
    private func pass() throws(ArchiveError) -> Bool {
        try checkTarget()
        for database in read.sorted() where !archiveStillHolds(database) {
            logger.warning("backup: the archive changed under this node (wiped or replaced?): reading it again", metadata: ["database": "\(database)"])
            forget(database)
        }
        var failure: ArchiveError?
        func attempt(_ database: String?, _ body: () throws(ArchiveError) -> Void) {
            do throws(ArchiveError) {
                try body()
            } catch {
                failure = failure ?? error
                // What was not written is read again from the target.
                if let database { forget(database) } else { plainFiles.forget() }
            }
        }
        attempt(nil) { () throws(ArchiveError) in try plainFiles.archiveChanges() }
        for (database, position) in store.positions() {
            guard isRunning, store.isWritable else { return false }
            attempt(database) { () throws(ArchiveError) in try archiveDatabase(database, current: position) }
        }
        let now = WallClock.milliseconds()
        for database in archived.keys.sorted() {
            guard isRunning, store.isWritable else { return false }
            attempt(database) { () throws(ArchiveError) in
                try compactIfDue(database, now: now)
                try snapshotIfDue(database, now: now)
            }
        }
        // Retention runs even while something fails: on a full target it
        // is what frees space.
        if now - lastRetention >= min(60_000, max(1000, settings.retention.milliseconds / 10)) {
            lastRetention = now
            for database in archived.keys.sorted() { attempt(database) { () throws(ArchiveError) in try enforceRetention(database, now: now) } }
            attempt(nil) { () throws(ArchiveError) in try plainFiles.enforceRetention(now: now) }
        }
        // A round cut short by a role change is not a failure.
        guard isRunning, store.isWritable else { return false }
        if let failure { throw failure }
        return true
    }

    /// The archive of `database` is read again from the target next time.
    func forget(_ database: String) {
        read.remove(database)
        archived[database] = nil
        newestFile[database] = nil
    }

    func forgetAll() {
        read.removeAll()
        archived.removeAll()
        newestFile.removeAll()
        plainFiles.forget()
    }

    /// Fails unless this node may still write the archive: checked right
    /// before each file is renamed into place, so a node that stopped being
    /// primary does not add to what its successor continues.
    func checkStillPrimary() throws(ArchiveError) {
        guard isRunning, store.isWritable else { throw ArchiveError("stopped archiving: this node is no longer the writable primary") }
    }

    /// The archive now reaches `position`, whose newest commit is of `timestamp`.
    func noteArchived(_ database: String, _ position: Position, timestamp: Int64) {
        archived[database] = position
        shared.withLock { shared in
            shared.filesWritten += 1
            shared.databases[database, default: ArchiveStatus.Database(name: database)].archivedAt = timestamp
        }
    }

    /// The archive's state for `status` and the metrics, against the
    /// databases' positions now (not as the archiver last saw them: an
    /// archiver stuck on its target shows a lag that grows).
    public var status: ArchiveStatus {
        let now = WallClock.milliseconds()
        // Only the writable primary archives: elsewhere nothing is pending.
        let positions = store.isWritable ? store.positions() : []
        return shared.withLock { shared in
            for (database, position) in positions {
                var entry = shared.databases[database, default: ArchiveStatus.Database(name: database)]
                entry.txid = position.txid.rawValue
                if entry.archivedTXID >= entry.txid { entry.behindSince = nil } else if entry.behindSince == nil { entry.behindSince = now }
                shared.databases[database] = entry
            }
            return ArchiveStatus(
                path: settings.path, databases: shared.databases.values.sorted { $0.name < $1.name }.map { $0.withLag(now: now) },
                error: shared.lastError, errors: shared.errors, filesWritten: shared.filesWritten)
        }
    }

    /// Once a minute while the archive is behind or failing.
    private func reportIfBehind() {
        let status = self.status
        let behind = status.databases.filter { $0.lagTransactions > 0 && $0.lagSeconds >= 5 }
        guard status.error != nil || !behind.isEmpty, behindLog.isDue() else { return }
        let summary = behind.map { "\($0.name) \($0.lagTransactions) transactions (\(String(format: "%.1f", $0.lagSeconds)) s) behind" }
        logger.warning(
            "backup archive behind: \(summary.isEmpty ? "(retrying)" : summary.joined(separator: ", "))",
            metadata: ["backup": "\(settings.path)", "error": "\(status.error ?? "none")"])
    }
}
