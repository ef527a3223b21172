#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import Synchronization

/// What every ``Database`` of a store shares.
struct DatabaseEnvironment: Sendable {
    /// Descriptor of `DATA/files`, the real tree behind the mount.
    let filesFD: Int32
    /// Its path (for SQLite, which opens files by name).
    let filesPath: String
    /// `DATA/ltx`, one directory per database below it.
    let ltxRoot: String
    /// Written into every LTX header.
    let nodeID: UInt64
    let logger: Logger
    /// Records LTX files at commit points.
    let spool: LTXSpool
    /// The spool and the real files are on one file system, so an fsync of
    /// a real file also flushes the device cache for the spool.
    let spoolSharesDevice: Bool
    /// Writes spooled LTX records as files, off the commit path.
    let materializer: LTXMaterializer
    /// Who hears about committed transactions (replication).
    let observers: ObserverSlot
    /// Totals for the metrics.
    let counters: StoreCounters
    /// The epoch new transactions are committed in.
    let commitEpoch: CommitEpoch
    /// What a commit waits for before it returns (synchronous replication).
    let barrier: CommitBarrierSlot

    /// The LTX directory of the database at `path` (relative to the mount):
    /// the path with `%` and `/` escaped, so every database gets one flat,
    /// readable directory name.
    func logDirectory(for path: String) -> String {
        ltxRoot + "/" + DatabaseKey.escape(path)
    }
}

/// One SQLite database in the mount, and the capture of its transactions.
///
/// The store routes every write, truncate, sync and unlink of the database,
/// its `-journal` and its `-wal` here. From them this type recognises SQLite's
/// commit points (see ``JournalHeader`` and ``WALTracker``) and, at each one,
/// writes the transaction as an LTX file *before* letting the operation that
/// completes the commit reach the real file (invariant 2: log before commit).
///
/// It keeps the checksum of every page in memory (8 bytes per page), so the
/// position's checksum is maintained in O(pages changed) per transaction and
/// always equals the checksum of the content (invariant 1).
final class Database: Sendable {
    /// Path relative to the mount root.
    let path: String

    let environment: DatabaseEnvironment

    let state: Mutex<State>

    /// The position and apply failure as last set, readable without the
    /// state lock: an apply waiting for SQLite's readers holds that lock,
    /// and `status`, handshakes and the lease's standing must not wait.
    final class Published: Sendable {
        let value = Mutex<(position: Position, failure: ApplyFailure?)>((.empty, nil))
        /// The last summary taken under the state lock.
        let summary = Mutex<DatabaseSummary?>(nil)
    }

    let published = Published()

    struct State: ~Copyable {
        let published: Published
        var log: LTXLog?
        var position = Position.empty {
            didSet { published.value.withLock { $0.position = position } }
        }
        /// The committed content's shape and page checksums.
        var pages = PageTable()

        // Rollback-journal transaction in progress.
        var journalActive = false
        var dirty = DirtyRanges()
        /// Database-file writes outside any journal (journal_mode=OFF or
        /// MEMORY, or a copied-in file): captured at the next sync or close.
        var unjournaledWrites = false

        /// In which epoch each transaction was committed, as recorded in the log.
        var epochs = EpochHistory()
        /// The primary's history, as it last sent it (replica): adopted, up
        /// to the position reached, once a batch of its files is applied.
        var primaryEpochs: EpochHistory?

        var wal = WALTracker()
        /// A program other than SQLite writes the WAL (a copy): its writes
        /// pass through untracked, and what it holds is captured when the
        /// writer syncs or closes it.
        var walWrittenByOtherProgram = false
        /// Positions of the last transactions (to confirm a replica's history).
        var recent = RecentPositions()
        /// SQLite synced the WAL after the last commit (synchronous=FULL):
        /// expect the same after the next one.
        var walSyncsCommits = false
        var walCommittedSinceSync = false
        /// Read-only descriptor on the database file, for reading committed pages.
        var readFD: Int32 = -1
        /// The transaction the current capture entry point committed, if
        /// any: it waits for the commit barrier once the lock is released.
        var committedInCall: TXID?
        /// A replicated batch in this node's log whose pages could not all be
        /// written (replica; see ``UnappliedBatch``).
        var unapplied: UnappliedBatch?
        /// Replicated transactions could not be recorded or written (replica).
        var applyFailure: ApplyFailure? {
            didSet { published.value.withLock { $0.failure = applyFailure } }
        }

        deinit {
            if readFD >= 0 { Syscall.close(readFD) }
        }
    }

    init(path: String, environment: DatabaseEnvironment) {
        self.path = path
        self.environment = environment
        self.state = Mutex(State(published: published))
    }

    var logger: Logger { environment.logger }

    /// The database's current position.
    var position: Position { published.value.withLock { $0.position } }

    /// In which epoch each transaction was committed, as this node's log records it.
    var epochHistory: EpochHistory {
        state.withLock { $0.epochs }
    }

    func notePrimaryEpochs(_ history: EpochHistory) {
        state.withLock { $0.primaryEpochs = history }
    }

    /// The checksum right after `txid`, if it is among the recent positions.
    func recentChecksum(at txid: TXID) -> Checksum? {
        state.withLock { $0.recent.checksum(at: txid) }
    }

    /// What `status` shows; while an apply holds the state lock (waiting
    /// for readers), the last one taken, at the current position.
    var summary: DatabaseSummary {
        if let current = state.withLockIfAvailable({ DatabaseSummary(path: path, position: $0.position, pageSize: $0.pages.pageSize, pageCount: $0.pages.pageCount, isWAL: $0.pages.isWAL) }) {
            published.summary.withLock { $0 = current }
            return current
        }
        var last = published.summary.withLock { $0 } ?? DatabaseSummary(path: path, position: .empty, pageSize: 0, pageCount: 0, isWAL: false)
        last.position = position
        return last
    }

    /// Runs `perform` (an fsync SQLite asked for) while the spool is
    /// flushed on another thread, so the LTX records of every transaction
    /// SQLite makes durable are durable by the time it returns, at the cost
    /// of one concurrent flush rather than a second sequential one.
    ///
    /// This is the only place the commit path waits for the disk: a commit
    /// point itself only appends to the spool. Rollback-journal modes sync
    /// after invalidating the journal (TRUNCATE, PERSIST, or the directory
    /// under EXTRA) only when they promise durability; WAL syncs the WAL at
    /// commit under FULL and before each checkpoint under NORMAL.
    ///
    /// A failure of `perform` is the file's own (``FileSystemError/Code/system``);
    /// a failure to flush the log is ``FileSystemError/Code/notLogged``.
    func flushingLog<T>(perform: () -> Result<T, Errno>) -> Result<T, FileSystemError> {
        let spool = environment.spool
        guard spool.hasPending else { return perform().mapError(FileSystemError.system) }
        if environment.spoolSharesDevice {
            // Same file system: write the records out, and let SQLite's own
            // fsync flush the device cache for both (one flush, not two).
            switch spool.writeOutPending() {
            case .failure(let error): return .failure(.notLogged("cannot write the log out before the sync", cause: error))
            case .success(let range):
                let result = perform()
                if case .success = result, let range { spool.markSynced(range) }
                return result.mapError(FileSystemError.system)
            }
        }
        let flush = FlushResult()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global(qos: .userInitiated).async {
            flush.set(spool.syncPending())
            group.leave()
        }
        let result = perform()
        group.wait()
        if case .failure(let error) = flush.get() { return .failure(.notLogged("cannot flush the log", cause: error)) }
        return result.mapError(FileSystemError.system)
    }

    /// Reads page `pgno` of a database file; zeros past its end.
    static func readPage(_ fd: Int32, _ pgno: PageNumber, into buffer: UnsafeMutableRawBufferPointer) -> Result<Void, Errno> {
        Syscall.pread(fd, into: buffer, at: Int64(pgno.fileOffset(pageSize: buffer.count))).map { n in
            if n < buffer.count { (buffer.baseAddress! + n).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - n) }
        }
    }

    func openReadFD(_ state: inout State) -> Result<Int32, Errno> {
        if state.readFD >= 0 { return .success(state.readFD) }
        return Syscall.open(at: environment.filesFD, path, flags: O_RDONLY).map { fd in
            state.readFD = fd
            return fd
        }
    }

    func closeReadFD(_ state: inout State) {
        if state.readFD >= 0 {
            Syscall.close(state.readFD)
            state.readFD = -1
        }
    }

    /// A transaction whose LTX file is written but whose effect on the
    /// position waits until the operation completing the commit succeeds.
    struct Prepared: Sendable {
        var txid: TXID
        var checksum: Checksum
        var pageSize: Int
        var commitSize: UInt32
        var allPages: Bool
        var updates: [(PageNumber, Checksum)]
        /// WAL mode according to page 1, when page 1 changed.
        var isWAL: Bool?
        /// The epoch the transaction was committed in (0: not known).
        var epoch: Epoch = .unknown
        /// The LTX file, for replication.
        var ltx: LTXContent = .bytes([])
    }

    /// Runs `perform` (the operation that completes a commit) after the LTX
    /// file is written; moves the position if it succeeds, removes the file if
    /// it fails, so the log never claims what SQLite did not commit.
    ///
    /// A transaction that could not be prepared fails the commit before
    /// `perform` runs (``FileSystemError/Code/notLogged``); a failure of
    /// `perform` is the file's own (``FileSystemError/Code/system``).
    func complete<T>(_ state: inout State, _ prepared: Result<Prepared?, FileSystemError>, perform: () -> Result<T, Errno>) -> Result<T, FileSystemError> {
        let transaction: Prepared?
        switch prepared {
        case .success(let value): transaction = value
        case .failure(let error):
            logger.error("cannot log transaction; the commit fails", metadata: ["database": "\(path)", "error": "\(error)"])
            return .failure(error)
        }
        let result = perform()
        guard let transaction else { return result.mapError(FileSystemError.system) }
        switch result {
        case .success:
            apply(transaction, to: &state)
            state.committedInCall = transaction.txid
        case .failure: state.log?.abandon(transaction.txid)
        }
        return result.mapError(FileSystemError.system)
    }

    /// Runs a capture entry point under the database's lock and, if it
    /// committed a transaction, waits for the store's ``CommitBarrier``
    /// after the lock is released: readers and checkpoints of this
    /// database, and every other database, go on while replicas confirm.
    func capturing<T>(_ body: (inout State) -> Result<T, FileSystemError>) -> Result<T, FileSystemError> {
        let (result, committed) = state.withLock { state -> (Result<T, FileSystemError>, TXID?) in
            state.committedInCall = nil
            let result = body(&state)
            return (result, state.committedInCall)
        }
        guard case .success = result, let committed, let barrier = environment.barrier.current else { return result }
        return barrier.committed(database: path, txid: committed).flatMap { result }
    }

    /// Moves the state to after `transaction` and tells replication.
    func apply(_ transaction: Prepared, to state: inout State) {
        state.pages.apply(transaction)
        state.position = Position(txid: transaction.txid, checksum: transaction.checksum, epoch: transaction.epoch)
        if transaction.allPages { state.recent.removeAll() }
        state.recent.record(state.position)
        environment.counters.record(transaction.ltx)
        environment.observers.publish(.transaction(database: path, txid: transaction.txid, epoch: transaction.epoch, ltx: transaction.ltx))
    }
}

extension Database {
    /// Waits until every logged transaction is in its segment or file.
    func waitForLogFiles() {
        let log = state.withLock { $0.log }
        log?.waitForFiles()
    }

    /// The database's log, if it has one (without creating it).
    var existingLog: LTXLog? { state.withLock { $0.log } }

    /// Retention of this database's log (see ``LogRetention``).
    func pruneLog(modifiedBefore cutoff: Int, sealBefore: UInt64) -> Int {
        existingLog?.prune(modifiedBefore: cutoff, sealBefore: sealBefore) ?? 0
    }
}

/// What a node knows about one database, for status output and tests.
public struct DatabaseSummary: Sendable, Equatable {
    public var path: String
    public var position: Position
    public var pageSize: Int
    public var pageCount: UInt32
    public var isWAL: Bool
}

/// The result of a flush run on another thread.
final class FlushResult: @unchecked Sendable {
    private let lock = Mutex<Result<Void, Errno>>(.success(()))
    func set(_ value: Result<Void, Errno>) { lock.withLock { $0 = value } }
    func get() -> Result<Void, Errno> { lock.withLock { $0 } }
}
