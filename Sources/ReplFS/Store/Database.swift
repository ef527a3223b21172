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
        var pageSize = 0
        var pageCount: UInt32 = 0
        /// Checksum of page n at index n-1; the lock page's entry is `.zero`.
        var pageChecksums: [Checksum] = []
        /// The committed header says WAL mode: writes to the database file
        /// outside a rollback-journal transaction are checkpoints.
        var isWAL = false
        /// The last committed content is a database (not dropped, not empty).
        var exists: Bool { pageCount > 0 }

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
        if let current = state.withLockIfAvailable({ DatabaseSummary(path: path, position: $0.position, pageSize: $0.pageSize, pageCount: $0.pageCount, isWAL: $0.isWAL) }) {
            published.summary.withLock { $0 = current }
            return current
        }
        var last = published.summary.withLock { $0 } ?? DatabaseSummary(path: path, position: .empty, pageSize: 0, pageCount: 0, isWAL: false)
        last.position = position
        return last
    }

    // MARK: - Database file

    /// A write reached the database file at `offset`.
    func mainFileWritten(offset: Int64, count: Int) {
        state.withLock { state in
            if state.journalActive {
                state.dirty.insert(offset: offset, count: count)
            } else if !state.isWAL {
                // No journal and not WAL: nothing marks a commit point, so
                // capture at the next sync or close.
                state.dirty.insert(offset: offset, count: count)
                state.unjournaledWrites = true
            }
            // Otherwise a WAL checkpoint: the logical content is unchanged.
        }
    }

    /// The database file was truncated or extended to `size` bytes.
    func mainFileResized(size: Int64) {
        state.withLock { state in
            if !state.journalActive && !state.isWAL {
                state.unjournaledWrites = true
            }
        }
    }

    /// SQLite synced the database file (or closed it): the moment to capture
    /// writes that no journal covers.
    func mainFileSynced(closing: Bool) -> Result<Void, Errno> {
        state.withLock { state in
            if state.journalActive { return .success(()) }
            guard state.unjournaledWrites else { return .success(()) }
            return captureUnjournaled(&state, sync: false).flatMap { captureBesideWAL(&state, sync: false) }
        }
    }

    // MARK: - Rollback journal

    /// Handles a write to `NAME-journal`. The journal becomes live when its
    /// header magic is written; overwriting a live header with anything else
    /// (PERSIST mode zeroes it) is the commit point.
    func journalWrite(_ buffer: UnsafeRawBufferPointer, at offset: Int64, perform: () -> Result<Int, Errno>) -> Result<Int, Errno> {
        guard offset == 0 else { return perform() }
        return state.withLock { state in
            if JournalHeader.hasMagic(buffer) {
                if !state.journalActive {
                    if state.unjournaledWrites, case .failure(let error) = captureUnjournaled(&state, sync: false) {
                        return .failure(error)
                    }
                    beginJournalTransaction(&state)
                }
                return perform()
            }
            guard state.journalActive else { return perform() }
            return commitJournalTransaction(&state, perform: perform)
        }
    }

    /// Handles truncation of `NAME-journal`; to zero length it is the commit
    /// point of TRUNCATE mode.
    func journalTruncate(to size: Int64, perform: () -> Result<Void, Errno>) -> Result<Void, Errno> {
        state.withLock { state in
            guard size == 0, state.journalActive else { return perform() }
            return commitJournalTransaction(&state, perform: perform)
        }
    }

    /// Handles deletion of `NAME-journal`: the commit point of DELETE mode.
    func journalUnlink(perform: () -> Result<Void, Errno>) -> Result<Void, Errno> {
        state.withLock { state in
            guard state.journalActive else { return perform() }
            return commitJournalTransaction(&state, perform: perform)
        }
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
    func flushingLog<T>(perform: () -> Result<T, Errno>) -> Result<T, Errno> {
        let spool = environment.spool
        guard spool.hasPending else { return perform() }
        if environment.spoolSharesDevice {
            // Same file system: write the records out, and let SQLite's own
            // fsync flush the device cache for both (one flush, not two).
            switch spool.writeOutPending() {
            case .failure(let error): return .failure(error)
            case .success(let range):
                let result = perform()
                if case .success = result, let range { spool.markSynced(range) }
                return result
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
        if case .failure(let error) = flush.get() { return .failure(error) }
        return result
    }

    private func beginJournalTransaction(_ state: inout State) {
        state.journalActive = true
        state.dirty.removeAll()
        state.unjournaledWrites = false
    }

    /// Logs the transaction the live journal covers, then lets `perform`
    /// invalidate the journal (SQLite's commit point).
    private func commitJournalTransaction<T>(_ state: inout State, perform: () -> Result<T, Errno>) -> Result<T, Errno> {
        let prepared = prepareFromDatabaseFile(&state, sync: false)
        let result = complete(&state, prepared, perform: perform)
        if case .success = result {
            state.journalActive = false
            state.dirty.removeAll()
            }
        return result
    }

    /// Captures database-file writes no journal covered.
    private func captureUnjournaled(_ state: inout State, sync: Bool) -> Result<Void, Errno> {
        let prepared = prepareFromDatabaseFile(&state, sync: sync)
        let result = complete(&state, prepared) { .success(()) }
        if case .success = result {
            state.dirty.removeAll()
            state.unjournaledWrites = false
        }
        return result
    }

    /// Prepares the database file's current content as a transaction: the
    /// pages written since the last capture, plus growth and truncation.
    private func prepareFromDatabaseFile(_ state: inout State, sync: Bool) -> Result<Prepared?, Errno> {
        let fd: Int32
        switch openReadFD(&state) {
        case .success(let value): fd = value
        case .failure(let error):
            return error == .noEntry ? .success(nil) : .failure(error)
        }
        var headerBytes = [UInt8](repeating: 0, count: DatabaseHeader.size)
        let read = headerBytes.withUnsafeMutableBytes { Syscall.pread(fd, into: $0, at: 0) }
        guard case .success(let count) = read else { return .failure(.io) }
        let fileSize: Int64
        switch Syscall.fstat(fd) {
        case .success(let st): fileSize = Int64(st.st_size)
        case .failure(let error): return .failure(error)
        }
        guard count == DatabaseHeader.size, let header = headerBytes.withUnsafeBytes({ DatabaseHeader($0) }) else {
            // Not (or no longer) a database: a rolled-back creation leaves an empty file.
            guard state.exists && fileSize == 0 else { return .success(nil) }
            return prepare(&state, pageSize: state.pageSize, commitSize: 0, candidates: [], allPages: false, sync: sync) { _, _ in .success(()) }
        }
        let pageSize = header.pageSize
        let commitSize = header.hasValidPageCount ? header.pageCountInHeader : UInt32(fileSize / Int64(pageSize))
        let candidates = state.dirty.pageNumbers(pageSize: pageSize)
        return prepare(&state, pageSize: pageSize, commitSize: commitSize, candidates: candidates, allPages: false, sync: sync) { pgno, buffer in
            Self.readPage(fd, pgno, into: buffer)
        }
    }

    /// Reads page `pgno` of a database file; zeros past its end.
    static func readPage(_ fd: Int32, _ pgno: UInt32, into buffer: UnsafeMutableRawBufferPointer) -> Result<Void, Errno> {
        Syscall.pread(fd, into: buffer, at: Int64(pgno - 1) * Int64(buffer.count)).map { n in
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

    // MARK: - WAL

    /// Handles a write to `NAME-wal`. When it completes a commit frame, the
    /// transaction is logged first and the write reaches the WAL after, so a
    /// crash in between leaves a log that recovery can redo (never a
    /// committed WAL transaction without its LTX file).
    func walWrite(_ buffer: UnsafeRawBufferPointer, at offset: Int64, walFD: Int32, perform: () -> Result<Int, Errno>) -> Result<Int, Errno> {
        state.withLock { state in
            if state.walWrittenByOtherProgram || !state.wal.isSQLiteShaped(offset: offset, count: buffer.count, pageSize: state.pageSize) {
                if !state.walWrittenByOtherProgram {
                    state.walWrittenByOtherProgram = true
                    state.wal.reset()
                    logger.info(
                        "a program other than SQLite is writing the WAL; what it holds is captured when the program syncs or closes it",
                        metadata: ["database": "\(path)", "offset": "\(offset)", "bytes": "\(buffer.count)"])
                }
                return perform()
            }
            guard let commit = state.wal.observe(buffer, at: offset) else { return perform() }
            if state.walCommittedSinceSync { state.walSyncsCommits = false }
            let prepared = prepareWALCommit(&state, commit, buffer: buffer, at: offset, walFD: walFD)
            let result = complete(&state, prepared, perform: perform)
            if case .success = result {
                state.wal.didCommit(commit)
                if !commit.isComplete {
                    state.wal.setCommittedPages(
                        scanCommittedFrames(walFD: walFD, through: commit.frames.upperBound, pageSize: commit.pageSize, salt1: commit.salt1, salt2: commit.salt2))
                }
                state.walCommittedSinceSync = true
            }
            return result
        }
    }

    /// The WAL was truncated (checkpoint with TRUNCATE, journal_size_limit).
    func walResized(size: Int64) {
        state.withLock { state in
            if size < Int64(WALHeader.size) { state.wal.reset() }
        }
    }

    /// The WAL was deleted (last connection closed after a checkpoint).
    func walUnlinked() {
        state.withLock { $0.wal.reset() }
    }

    /// SQLite syncs the WAL: at commit under `synchronous=FULL`, before a
    /// checkpoint under NORMAL. LTX files of the transactions it makes durable
    /// are flushed first.
    func walSync(perform: () -> Result<Void, Errno>) -> Result<Void, Errno> {
        let captured: Result<Void, Errno> = state.withLock { state in
            state.walSyncsCommits = state.walCommittedSinceSync
            state.walCommittedSinceSync = false
            return state.walWrittenByOtherProgram ? captureWAL(&state, sync: true) : .success(())
        }
        if case .failure(let error) = captured { return .failure(error) }
        return flushingLog(perform: perform)
    }

    /// A descriptor of the WAL was closed: what another program wrote to it
    /// is captured now.
    func walClosed() -> Result<Void, Errno> {
        state.withLock { state in
            state.walWrittenByOtherProgram ? captureWAL(&state, sync: true) : .success(())
        }
    }

    /// A file was renamed into place as the WAL (rsync, a restore): what it
    /// holds is captured.
    func walReplaced() -> Result<Void, Errno> {
        state.withLock { state in captureWAL(&state, sync: true) }
    }

    /// Records the content SQLite will see through a WAL that it did not
    /// write itself: the database file overlaid with the WAL's committed
    /// frames (validated as SQLite's recovery does, ``WALScanner``), as one
    /// transaction with every page, if it differs from the position. Then
    /// the tracker continues from the WAL's last commit, as SQLite will.
    func captureWAL(_ state: inout State, sync: Bool) -> Result<Void, Errno> {
        state.walWrittenByOtherProgram = false
        guard case .success(let walFD) = Syscall.open(at: environment.filesFD, path + "-wal", flags: O_RDONLY) else { return .success(()) }
        defer { Syscall.close(walFD) }
        guard let committed = WALScanner.committed(fd: walFD) else {
            state.wal.reset()
            return .success(())
        }
        closeReadFD(&state)
        let dbFD = openReadFD(&state)
        let pageSize = committed.header.pageSize
        let prepared = prepare(&state, pageSize: pageSize, commitSize: committed.commitSize, candidates: [], allPages: true, sync: sync) { pgno, page in
            if let frame = committed.pages[pgno] {
                return Syscall.pread(walFD, into: page, at: committed.header.frameOffset(frame) + Int64(WALFrameHeader.size)).flatMap { count in
                    count == pageSize ? .success(()) : .failure(.io)
                }
            }
            guard case .success(let fd) = dbFD else {
                page.initializeMemory(as: UInt8.self, repeating: 0)
                return .success(())
            }
            return Self.readPage(fd, pgno, into: page)
        }
        let result = complete(&state, prepared) { .success(()) }
        if case .success = result {
            state.wal.adopt(committed)
            logger.notice(
                "captured a WAL written by another program", metadata: ["database": "\(path)", "frames": "\(committed.lastCommit)", "txid": "\(state.position.txid)"])
        }
        return result
    }

    private func prepareWALCommit(
        _ state: inout State, _ commit: WALTracker.Commit, buffer: UnsafeRawBufferPointer, at offset: Int64, walFD: Int32
    ) -> Result<Prepared?, Errno> {
        // The last frame for each page wins.
        var frameOfPage: [UInt32: Int] = [:]
        frameOfPage.reserveCapacity(commit.pageNumbers.count)
        for (i, pgno) in commit.pageNumbers.enumerated() {
            frameOfPage[pgno] = commit.frames.lowerBound + i
        }
        let pageSize = commit.pageSize
        let frameSize = Int64(WALFrameHeader.size + pageSize)
        let firstFrameOffset = Int64(WALHeader.size)
        // A first capture needs the whole logical content: the database file
        // overlaid with every committed frame before this transaction.
        var earlier: [UInt32: Int] = [:]
        let allPages = state.position.txid.rawValue == 0 || state.pageSize != pageSize || !commit.isComplete
        if allPages {
            earlier = scanCommittedFrames(walFD: walFD, through: commit.frames.lowerBound - 1, pageSize: pageSize, salt1: commit.salt1, salt2: commit.salt2)
        }
        let dbFD = openReadFD(&state)
        return prepare(
            &state, pageSize: pageSize, commitSize: commit.commitSize, candidates: frameOfPage.keys.sorted(), allPages: allPages, sync: false,
            expectSync: state.walSyncsCommits
        ) { pgno, page in
            if let frame = frameOfPage[pgno] ?? earlier[pgno] {
                // The page as the WAL file holds it, overlaid with the part the
                // current write brings (it has not reached the file yet).
                let dataOffset = firstFrameOffset + Int64(frame - 1) * frameSize + Int64(WALFrameHeader.size)
                let writeEnd = offset + Int64(buffer.count)
                let covered = dataOffset >= offset && dataOffset + Int64(pageSize) <= writeEnd
                if !covered {
                    guard case .success(let n) = Syscall.pread(walFD, into: page, at: dataOffset) else { return .failure(.io) }
                    if n < page.count { (page.baseAddress! + n).initializeMemory(as: UInt8.self, repeating: 0, count: page.count - n) }
                }
                let overlapStart = max(dataOffset, offset)
                let overlapEnd = min(dataOffset + Int64(pageSize), writeEnd)
                if overlapStart < overlapEnd {
                    let source = UnsafeRawBufferPointer(rebasing: buffer[Int(overlapStart - offset)..<Int(overlapEnd - offset)])
                    UnsafeMutableRawBufferPointer(rebasing: page[Int(overlapStart - dataOffset)...]).copyMemory(from: source)
                }
                return .success(())
            }
            // Not in the WAL: the page as the database file holds it (zeros past its end).
            guard case .success(let fd) = dbFD else {
                page.initializeMemory(as: UInt8.self, repeating: 0)
                return .success(())
            }
            return Self.readPage(fd, pgno, into: page)
        }
    }

    /// Page → last frame index among the valid frames 1...`last` of the WAL.
    func scanCommittedFrames(walFD: Int32, through last: Int, pageSize: Int, salt1: UInt32, salt2: UInt32) -> [UInt32: Int] {
        var result: [UInt32: Int] = [:]
        guard last >= 1 else { return result }
        var header = [UInt8](repeating: 0, count: WALFrameHeader.size)
        let frameSize = Int64(WALFrameHeader.size + pageSize)
        for index in 1...last {
            let offset = Int64(WALHeader.size) + Int64(index - 1) * frameSize
            let read = header.withUnsafeMutableBytes { Syscall.pread(walFD, into: $0, at: offset) }
            guard case .success(WALFrameHeader.size) = read else { break }
            let frame = header.withUnsafeBytes { WALFrameHeader($0) }
            guard frame.salt1 == salt1, frame.salt2 == salt2 else { break }
            result[frame.pageNumber] = index
        }
        return result
    }

    // MARK: - Whole-file events

    /// The database file is being deleted: logged as an LTX file with
    /// `commit = 0` (upstream's deletion marker) before it goes.
    func drop(perform: () -> Result<Void, Errno>) -> Result<Void, Errno> {
        state.withLock { state in
            let prepared: Result<Prepared?, Errno> =
                state.exists
                ? prepare(&state, pageSize: state.pageSize, commitSize: 0, candidates: [], allPages: false, sync: true) { _, _ in .success(()) }
                : .success(nil)
            let result = complete(&state, prepared, perform: perform)
            if case .success = result {
                closeReadFD(&state)
                state.journalActive = false
                state.dirty.removeAll()
                state.unjournaledWrites = false
                state.wal.reset()
            }
            return result
        }
    }

    /// The file at this path was replaced (renamed over, or renamed away):
    /// capture whatever it holds now as one transaction with every page.
    func contentReplaced() -> Result<Void, Errno> {
        state.withLock { state in
            closeReadFD(&state)
            state.journalActive = false
            state.wal.reset()
            state.dirty.removeAll()
            state.unjournaledWrites = false
            let prepared = prepareFullCapture(&state, sync: true)
            return complete(&state, prepared) { .success(()) }.flatMap { captureBesideWAL(&state, sync: true) }
        }
    }

    /// After a database file written by another program is captured: if it
    /// is in WAL mode and a WAL with frames lies beside it (copied in first,
    /// or renamed into place), SQLite will read both, so both are captured.
    private func captureBesideWAL(_ state: inout State, sync: Bool) -> Result<Void, Errno> {
        guard state.isWAL, case .success(let wal) = Syscall.lstat(at: environment.filesFD, path + "-wal"), wal.st_size > WALHeader.size else {
            return .success(())
        }
        return captureWAL(&state, sync: sync)
    }

    /// Prepares the database file's whole content (deletion if it is gone
    /// or not a database) as one transaction.
    func prepareFullCapture(_ state: inout State, sync: Bool) -> Result<Prepared?, Errno> {
        func deletion() -> Result<Prepared?, Errno> {
            guard state.exists else { return .success(nil) }
            return prepare(&state, pageSize: state.pageSize, commitSize: 0, candidates: [], allPages: true, sync: sync) { _, _ in .success(()) }
        }
        guard case .success(let fd) = openReadFD(&state) else { return deletion() }
        var headerBytes = [UInt8](repeating: 0, count: DatabaseHeader.size)
        _ = headerBytes.withUnsafeMutableBytes { Syscall.pread(fd, into: $0, at: 0) }
        guard let header = headerBytes.withUnsafeBytes({ DatabaseHeader($0) }) else { return deletion() }
        let size: Int64
        switch Syscall.fstat(fd) {
        case .success(let st): size = Int64(st.st_size)
        case .failure(let error): return .failure(error)
        }
        let pageSize = header.pageSize
        let commitSize = header.hasValidPageCount ? header.pageCountInHeader : UInt32(size / Int64(pageSize))
        return prepare(&state, pageSize: pageSize, commitSize: commitSize, candidates: [], allPages: true, sync: sync) { pgno, page in
            Self.readPage(fd, pgno, into: page)
        }
    }

    // MARK: - Commit

    /// A transaction whose LTX file is written but whose effect on the
    /// position waits until the operation completing the commit succeeds.
    struct Prepared: Sendable {
        var txid: TXID
        var checksum: Checksum
        var pageSize: Int
        var commitSize: UInt32
        var allPages: Bool
        var updates: [(UInt32, Checksum)]
        /// WAL mode according to page 1, when page 1 changed.
        var isWAL: Bool?
        /// The epoch the transaction was committed in (0: not known).
        var epoch: UInt64 = 0
        /// The LTX file, for replication.
        var ltx: LTXContent = .bytes([])
    }

    /// Runs `perform` (the operation that completes a commit) after the LTX
    /// file is written; moves the position if it succeeds, removes the file if
    /// it fails, so the log never claims what SQLite did not commit.
    func complete<T>(_ state: inout State, _ prepared: Result<Prepared?, Errno>, perform: () -> Result<T, Errno>) -> Result<T, Errno> {
        let transaction: Prepared?
        switch prepared {
        case .success(let value): transaction = value
        case .failure(let error):
            logger.error("cannot log transaction; the commit fails", metadata: ["database": "\(path)", "errno": "\(error)"])
            return .failure(error)
        }
        let result = perform()
        guard let transaction else { return result }
        switch result {
        case .success: apply(transaction, to: &state)
        case .failure: state.log?.abandon(transaction.txid)
        }
        return result
    }

    func apply(_ transaction: Prepared, to state: inout State) {
        let commitSize = Int(transaction.commitSize)
        if transaction.allPages {
            state.pageChecksums = [Checksum](repeating: .zero, count: commitSize)
        } else if commitSize < state.pageChecksums.count {
            state.pageChecksums.removeLast(state.pageChecksums.count - commitSize)
        } else if commitSize > state.pageChecksums.count {
            state.pageChecksums.append(contentsOf: repeatElement(.zero, count: commitSize - state.pageChecksums.count))
        }
        for (pgno, value) in transaction.updates { state.pageChecksums[Int(pgno - 1)] = value }
        if let isWAL = transaction.isWAL { state.isWAL = isWAL }
        state.position = Position(txid: transaction.txid, checksum: transaction.checksum, epoch: transaction.epoch)
        if transaction.allPages { state.recent.removeAll() }
        state.recent.record(state.position)
        state.pageCount = transaction.commitSize
        if commitSize > 0 {
            state.pageSize = transaction.pageSize
        } else {
            state.isWAL = false
        }
        environment.counters.record(transaction.ltx)
        environment.observers.publish(.transaction(database: path, txid: transaction.txid, epoch: transaction.epoch, ltx: transaction.ltx))
    }

    /// Writes one transaction as the next LTX file.
    ///
    /// - Parameters:
    ///   - candidates: pages that may have changed (ascending). Pages past the
    ///     old size up to `commitSize` are added; pages past `commitSize` are
    ///     truncated away.
    ///   - allPages: read every page (first capture, page-size change, resync).
    ///     The first file of a database is a snapshot (TXID 1) and always
    ///     holds every page.
    ///   - read: fills the buffer with the committed content of a page.
    /// - Returns: `nil` without writing anything when the content did not
    ///   change (a rollback, or a write of identical bytes).
    private func prepare(
        _ state: inout State, pageSize: Int, commitSize: UInt32, candidates: [UInt32], allPages requestedAllPages: Bool, sync: Bool,
        expectSync: Bool = false, read: (UInt32, UnsafeMutableRawBufferPointer) -> Result<Void, Errno>
    ) -> Result<Prepared?, Errno> {
        let txid = TXID(state.position.txid.rawValue + 1)
        let isSnapshot = txid.rawValue == 1
        if isSnapshot && commitSize == 0 { return .success(nil) }
        // Whole-database files: the first (a snapshot), a page-size change, or
        // whenever the page table does not describe the old content (recovery).
        let tableKnown = state.pageChecksums.count == Int(state.pageCount)
        let allPages = requestedAllPages || isSnapshot || (pageSize != state.pageSize && commitSize > 0) || !tableKnown
        let pageSize = commitSize == 0 ? max(state.pageSize, 512) : pageSize
        let lockPage = PageNumber.lockPage(pageSize: pageSize).rawValue

        let log: LTXLog
        switch ensureLog(&state) {
        case .success(let value): log = value
        case .failure(let error): return .failure(error)
        }
        let epoch: UInt64
        switch recordEpoch(&state, log: log, txid: txid) {
        case .success(let value): epoch = value
        case .failure(let error): return .failure(error)
        }

        let header = LTXHeader(
            pageSize: UInt32(pageSize), commit: commitSize, minTXID: txid, maxTXID: txid,
            timestamp: Self.nowMilliseconds(), preApplyChecksum: isSnapshot ? .zero : state.position.checksum,
            nodeID: environment.nodeID)
        var encoder: LTXEncoder
        do { encoder = try LTXEncoder(header: header) } catch {
            logger.error("cannot encode transaction", metadata: ["database": "\(path)", "error": "\(error)"])
            return .failure(.io)
        }

        var transaction = Prepared(
            txid: txid, checksum: allPages ? .emptyDatabase : state.position.checksum, pageSize: pageSize,
            commitSize: commitSize, allPages: allPages, updates: [], isWAL: nil, epoch: epoch)
        var changed = false
        var pending: LTXLog.PendingFile? = nil
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
        defer { page.deallocate() }

        // Pages truncated away stop contributing.
        if !allPages && commitSize < state.pageCount {
            for pgno in (commitSize + 1)...state.pageCount where pgno != lockPage {
                transaction.checksum = transaction.checksum.replacingPage(old: state.pageChecksums[Int(pgno - 1)], new: .zero)
            }
            changed = true
        }

        func visit(_ pgno: UInt32) -> Result<Void, Errno> {
            if pgno == lockPage { return .success(()) }
            if case .failure(let error) = read(pgno, page) { return .failure(error) }
            let bytes = UnsafeRawBufferPointer(page)
            let new = Checksum.page(PageNumber(pgno), bytes)
            let old: Checksum = (!allPages && pgno <= state.pageCount) ? state.pageChecksums[Int(pgno - 1)] : .zero
            if !allPages && new == old { return .success(()) }
            transaction.checksum = transaction.checksum.replacingPage(old: old, new: new)
            transaction.updates.append((pgno, new))
            if pgno == 1, let header = DatabaseHeader(bytes) { transaction.isWAL = header.isWAL }
            changed = true
            do {
                try encoder.append(PageNumber(pgno), page: bytes)
            } catch {
                logger.error("cannot encode page", metadata: ["database": "\(path)", "page": "\(pgno)", "error": "\(error)"])
                return .failure(.io)
            }
            // Stream big transactions (snapshots) to disk in bounded memory.
            if encoder.bufferedByteCount >= 1 << 20 {
                if pending == nil {
                    switch log.begin(minTXID: txid, maxTXID: txid) {
                    case .success(let file): pending = file
                    case .failure(let error): return .failure(error)
                    }
                }
                if case .failure(let error) = pending!.append(encoder.takeBytes()) { return .failure(error) }
            }
            return .success(())
        }

        var failure: Errno?
        if allPages {
            var pgno: UInt32 = 1
            while pgno <= commitSize, failure == nil {
                if case .failure(let error) = visit(pgno) { failure = error }
                pgno += 1
            }
        } else {
            var pages = candidates.filter { $0 <= commitSize }
            let grownFrom = state.pageCount + 1
            if commitSize >= grownFrom {
                let known = Set(pages)
                pages.append(contentsOf: (grownFrom...commitSize).filter { !known.contains($0) })
                pages.sort()
            }
            for pgno in pages where failure == nil {
                if case .failure(let error) = visit(pgno) { failure = error }
            }
        }
        if let failure {
            pending?.abandon()
            return .failure(failure)
        }
        if !isSnapshot && commitSize == state.pageCount && pageSize == state.pageSize
            && (allPages ? transaction.checksum == state.position.checksum : !changed)
        {
            pending?.abandon()
            return .success(nil)
        }

        do {
            try encoder.finish(postApplyChecksum: transaction.checksum)
        } catch {
            pending?.abandon()
            logger.error("cannot finish transaction", metadata: ["database": "\(path)", "error": "\(error)"])
            return .failure(.io)
        }
        if let file = pending {
            if case .failure(let error) = file.append(encoder.takeBytes()) {
                file.abandon()
                return .failure(error)
            }
            if case .failure(let error) = file.commit(sync: sync) { return .failure(error) }
            transaction.ltx = .file(log.path(minTXID: txid, maxTXID: txid))
        } else {
            let bytes = encoder.takeBytes()
            if case .failure(let error) = log.append(bytes, txid: txid, sync: sync, expectSync: expectSync) { return .failure(error) }
            transaction.ltx = .bytes(bytes)
        }
        return .success(transaction)
    }

    /// Records, before the transaction `txid` is logged, that it is
    /// committed in this node's current epoch (the first of a term changes
    /// the history, durably; the others find it in place). Returns the epoch.
    func recordEpoch(_ state: inout State, log: LTXLog, txid: TXID) -> Result<UInt64, Errno> {
        let epoch = environment.commitEpoch.current
        guard epoch > 0 else { return .success(state.epochs.epoch(at: txid) ?? 0) }
        if let last = state.epochs.entries.last, last.epoch == epoch, last.firstTXID < txid { return .success(epoch) }
        var history = state.epochs
        history.begin(epoch: epoch, at: txid)
        if case .failure(let error) = log.saveEpochs(history) {
            logger.error("cannot record the epoch history; the commit fails", metadata: ["database": "\(path)", "errno": "\(error)"])
            return .failure(error)
        }
        state.epochs = history
        return .success(epoch)
    }

    func ensureLog(_ state: inout State) -> Result<LTXLog, Errno> {
        if let log = state.log { return .success(log) }
        do {
            let log = try LTXLog(
                directory: environment.logDirectory(for: path), key: DatabaseKey.escape(path), databasePath: path, spool: environment.spool,
                materializer: environment.materializer)
            state.log = log
            state.epochs = log.loadEpochs(logger: logger)
            return .success(log)
        } catch {
            logger.error("\(error)")
            return .failure(error.errno)
        }
    }

    static func nowMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
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
