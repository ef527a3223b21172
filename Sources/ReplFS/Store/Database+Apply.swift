#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Synchronization

/// Why a replicated LTX file was refused, or not applied yet.
public enum ApplyRefusal: Error, CustomStringConvertible, Sendable {
    /// The file does not follow the database's position. Nothing changed.
    case notNext(database: String, position: Position, minTXID: TXID, preApply: Checksum)
    /// The file does not decode or its checksums do not hold. Nothing changed.
    case corrupt(database: String, LTXError)
    /// Applying it would not give the post-apply checksum it claims: this
    /// replica's content is not what the primary thinks it is.
    case postApplyMismatch(database: String, expected: Checksum, computed: Checksum)
    /// The batch could not be recorded in this node's log (a full disk):
    /// nothing changed; the same batch can be tried again.
    case io(database: String, Errno)
    /// The batch is in this node's log but its pages could not all be
    /// written (``UnappliedBatch``): the position has not moved; applying
    /// nothing (an empty batch) tries the write again.
    case stalled(database: String, Errno)

    public var description: String {
        switch self {
        case .notNext(let database, let position, let minTXID, let preApply):
            return "\(database): LTX file starting at TXID \(minTXID) (pre-apply \(preApply)) does not follow position \(position)"
        case .corrupt(let database, let error):
            return "\(database): corrupt LTX file: \(error)"
        case .postApplyMismatch(let database, let expected, let computed):
            return "\(database): applying would give checksum \(computed), the file says \(expected)"
        case .io(let database, let errno):
            return "\(database): cannot record the transactions: \(errno)"
        case .stalled(let database, let errno):
            return "\(database): recorded, but the database file cannot be written: \(errno)"
        }
    }

    /// The same input may succeed later (space returns): not the primary's fault.
    public var isRetryable: Bool {
        switch self {
        case .io, .stalled: return true
        default: return false
        }
    }
}

/// A replicated batch that this node's log holds, durably, but whose pages
/// could not all be written to the database file (a full disk, an I/O
/// error). The file may hold part of the batch, so SQLite's readers are kept
/// out (`gate`) until the batch is written again from its log record; the
/// position stays where the file's last complete batch left it, so nothing
/// is acknowledged and the node does not lead meanwhile.
struct UnappliedBatch {
    /// What the log recorded for the batch, oldest first (the redo).
    var records: [LTXContent]
    /// The batch's transactions, moved into the state once the file holds them.
    var transactions: [Database.Prepared]
    /// This node's own WAL frames (it was primary until now), folded first.
    var ownFrames: [UInt32: Int]
    var ownPageSize: Int
    var gate: any ReaderGate
}

/// Replicated transactions this node could not record or write, since when
/// (for `status`, the metric, and the refusal to lead).
struct ApplyFailure: Sendable {
    var error: Errno
    /// Wall-clock time of the first failure.
    var since: Date
    var attempts: Int
    /// The log holds transactions through this TXID that the file does not.
    var loggedThrough: TXID?
}

/// What a replicated batch is checked against: the database's position and
/// page checksums with the batch's earlier files over them. The state itself
/// changes only once the batch is recorded and written.
private struct BatchView {
    var position: Position
    var pageSize: Int
    var pageCount: UInt32
    /// The state's checksums cover every page (false before the first full capture).
    var complete: Bool
    /// Pages past this read as zero (a file cut the database shorter).
    var keptBase: UInt32
    /// Checksums the batch's files set.
    var changed: [UInt32: Checksum] = [:]

    init(_ state: borrowing Database.State) {
        position = state.position
        pageSize = state.pageSize
        pageCount = state.pageCount
        complete = state.pageChecksums.count == Int(state.pageCount)
        keptBase = UInt32(state.pageChecksums.count)
    }

    func checksum(_ pgno: UInt32, base: borrowing [Checksum]) -> Checksum {
        if let value = changed[pgno] { return value }
        return pgno <= keptBase ? base[Int(pgno - 1)] : .zero
    }

    /// The view after `transaction`, as ``Database/apply(_:to:)`` will leave the state.
    mutating func advance(_ transaction: Database.Prepared) {
        if transaction.allPages {
            changed.removeAll()
            keptBase = 0
        } else if transaction.commitSize < pageCount {
            keptBase = min(keptBase, transaction.commitSize)
            changed = changed.filter { $0.key <= transaction.commitSize }
        }
        for (pgno, value) in transaction.updates { changed[pgno] = value }
        position = Position(txid: transaction.txid, checksum: transaction.checksum, epoch: transaction.epoch)
        pageCount = transaction.commitSize
        if transaction.commitSize > 0 { pageSize = transaction.pageSize }
        complete = true
    }
}

extension Database {
    /// Applies LTX files received from the primary (replica), as one batch.
    ///
    /// Pass 1 decodes and checks each file in full (file checksum, that it
    /// follows the position its predecessors reach, that the result has the
    /// post-apply checksum it claims); a refused file ends the batch there.
    /// The files accepted are recorded in this node's log, durably (so a
    /// crash before the pages land is redone at restart). Pass 2 holds
    /// readers off with SQLite's own locks, writes the pages, drops the
    /// kernel's cached pages and, in WAL mode, rewrites the WAL-index header
    /// so that readers notice. Only then does the position move.
    ///
    /// Nothing is half done: a batch that cannot be recorded changes
    /// nothing (``ApplyRefusal/io(database:_:)``); one whose pages cannot be
    /// written stays in the log as an ``UnappliedBatch``, written again at
    /// the next call (``ApplyRefusal/stalled(database:_:)`` until it is).
    ///
    /// A snapshot (minimum TXID 1) replaces the database whole; if the
    /// replica had a history the primary could not vouch for
    /// (`keepAside`), its database is first copied whole to the path
    /// `aside` names (``copyAside(to:_:)``) and named in the log
    /// (invariant 6); if it cannot be, nothing is replaced.
    func applyReplicated(
        _ sources: [LTXContent], mount: any MountAccess, aside: (String, Position) -> String, keepAside: Bool
    ) -> (position: Position?, refusal: ApplyRefusal?) {
        state.withLock { state in
            var finishedStall = false
            if state.unapplied != nil {
                if let error = finishUnapplied(&state, mount: mount) {
                    noteFailure(error, loggedThrough: state.unapplied?.transactions.last?.txid, &state)
                    return (nil, .stalled(database: path, error))
                }
                finishedStall = true
                state.applyFailure = nil
            }
            // Pass 1, file by file: verify against the view the batch's
            // earlier files reach; collect what to record and write.
            var view = BatchView(state)
            var pages: [UInt32: [UInt8]] = [:]
            var streamed: (LTXContent, LTXHeader)?
            var resetFile = false
            var wal = state.isWAL
            var transactions: [Prepared] = []
            var refusal: ApplyRefusal?
            // The in-memory files of the batch are recorded as one merged LTX
            // file (first TXID...last TXID): one record for the batch, not one
            // per transaction (the primary's log keeps those).
            var merged: (first: LTXHeader, preApply: Checksum, last: LTXHeader, whole: Bool)?
            var records: [LTXContent] = []
            let existed = state.exists || Self.fileExists(environment.filesFD, path)
            for source in sources {
                let verified: Verified
                switch verify(source, keepAside: keepAside, view: view, state: &state) {
                case .failure(let error):
                    refusal = error
                case .success(let value):
                    verified = value
                    if verified.header.isSnapshot, view.pageCount > 0, keepAside {
                        // Invariant 6: what this node holds and the primary does
                        // not is copied whole before it is replaced, or nothing is.
                        let copy = aside(path, view.position)
                        if case .failure(let error) = copyAside(to: copy, &state) {
                            logger.error("cannot keep this node's database aside; the primary's snapshot waits", metadata: ["database": "\(path)", "aside": "\(copy)", "error": "\(error)"])
                            noteFailure(error, loggedThrough: nil, &state)
                            refusal = .io(database: path, error)
                            break
                        }
                        logger.warning(
                            "moved this node's database aside before taking the primary's snapshot: it holds every transaction this node committed",
                            metadata: ["database": "\(path)", "position": "\(view.position)", "aside": "\(copy)"])
                    }
                    if verified.transaction.allPages {
                        pages.removeAll()
                        resetFile = true
                    }
                    if case .file = source {
                        if case .failure(let error) = record(source, header: verified.header, in: &state) {
                            noteFailure(error, loggedThrough: nil, &state)
                            refusal = .io(database: path, error)
                            break
                        }
                        records.append(.file(state.log!.path(minTXID: verified.header.minTXID, maxTXID: verified.header.maxTXID)))
                        streamed = (source, verified.header)
                    } else {
                        let whole = verified.header.isSnapshot || verified.transaction.allPages
                        if let first = merged {
                            merged = (first.first, first.preApply, verified.header, first.whole)
                        } else {
                            merged = (verified.header, view.position.checksum, verified.header, whole)
                        }
                        for (pgno, bytes) in verified.pages { pages[pgno] = bytes }
                    }
                    if let isWAL = verified.transaction.isWAL { wal = isWAL }
                    view.advance(verified.transaction)
                    transactions.append(verified.transaction)
                }
                if refusal != nil { break }
            }
            guard !transactions.isEmpty else { return (finishedStall ? state.position : nil, refusal) }
            if let merged {
                switch recordMerged(first: merged.first, preApply: merged.preApply, last: merged.last, whole: merged.whole, pages: pages, postApply: view.position.checksum, in: &state) {
                case .success(let bytes): records.append(.bytes(bytes))
                case .failure(let error):
                    noteFailure(error, loggedThrough: nil, &state)
                    return (finishedStall ? state.position : nil, .io(database: path, error))
                }
            }

            // Pass 2, once for the batch: readers held off, pages written.
            let ownFrames = state.wal.committedPages
            let ownPageSize = state.pageSize
            let startPageCount = state.pageCount
            // A WAL database that a reader is in a transaction on takes the
            // batch as frames appended to its WAL: the reader keeps its
            // snapshot and nothing waits for it (the frames are folded into
            // the file by the first batch that finds no reader).
            // (A snapshot too: it is a transaction that writes every page.)
            let appendable = wal && state.isWAL && streamed == nil && existed && view.pageSize == ownPageSize && !pages.isEmpty
            // A gap between short readers is waited for a moment first, so a
            // replica under back-to-back reads still writes in place (its
            // readers then read the file through the page cache, not frames
            // from the uncached -wal); only a reader holding a transaction
            // longer than that sends the batch to the WAL.
            var held = appendable ? mount.tryExcludeReaders(database: path, walMode: true, patience: Self.readerGapPatience) : nil
            if appendable {
                // A lock held for a moment (a connection opening, rebuilding
                // the index) is waited out; an index that cannot be continued
                // is not.
                let giveUp = ContinuousClock.now + .milliseconds(200)
                retry: while held == nil {
                    switch appendToWAL(pages, commit: view.pageCount, pageSize: view.pageSize, &state, mount: mount) {
                    case .appended:
                        logger.trace("batch appended to the WAL under a reader", metadata: ["database": "\(path)"])
                        closeReadFD(&state)
                        for transaction in transactions { apply(transaction, to: &state) }
                        state.applyFailure = nil
                        adoptPrimaryEpochs(&state)
                        return (state.position, refusal)
                    case .unusable:
                        break retry
                    case .busy:
                        // The wait is spent watching for a gap between readers.
                        guard ContinuousClock.now < giveUp else { break retry }
                        held = mount.tryExcludeReaders(database: path, walMode: true, patience: .milliseconds(2))
                    }
                }
            }
            let gate = held ?? mount.excludeReaders(database: path, walMode: wal || state.isWAL)
            let written = retireWAL(frames: resetFile ? [:] : ownFrames, pageSize: ownPageSize).flatMap {
                writePages(pages, streamed: streamed, reset: resetFile, commit: view.pageCount, pageSize: view.pageSize)
            }
            closeReadFD(&state)
            if case .failure(let error) = written {
                // The log holds the batch: keep readers out of the part-written
                // file until it is written again from there.
                state.unapplied = UnappliedBatch(
                    records: records, transactions: transactions, ownFrames: resetFile ? [:] : ownFrames, ownPageSize: ownPageSize, gate: gate)
                noteFailure(error, loggedThrough: view.position.txid, &state)
                return (finishedStall ? state.position : nil, .stalled(database: path, error))
            }
            state.wal.reset()
            for transaction in transactions { apply(transaction, to: &state) }
            state.applyFailure = nil
            // Folding this node's own WAL frames in changes their pages too:
            // those and the batch's are dropped from the kernel's cache, the
            // rest of the file stays cached for the readers.
            let changed = Set(pages.keys).union(ownFrames.keys)
            publishApplied(&state, gate: gate, mount: mount, existed: existed, wholeFile: resetFile || streamed != nil || view.pageSize != ownPageSize || !existed,
                pages: changed, startPageCount: startPageCount)
            return (state.position, refusal)
        }
    }

    /// How long a batch waits for a moment with no reader in a transaction
    /// before it goes to the WAL instead (decision 40): long against a point
    /// select (tens of microseconds), short against replication lag.
    static let readerGapPatience: Duration = .milliseconds(5)

    /// Appends a batch's pages to the WAL as one transaction and publishes
    /// it through the wal-index (``WALIndexAppender``), keeping the tracker
    /// in step as if SQLite had written the frames. Nothing visible changes
    /// unless it returns `.appended`.
    private enum AppendOutcome {
        case appended
        /// A lock SQLite's connections hold for a moment: try again.
        case busy
        /// The WAL or its index cannot be continued: wait for the readers.
        case unusable
    }

    private func appendToWAL(_ pages: [UInt32: [UInt8]], commit: UInt32, pageSize: Int, _ state: inout State, mount: any MountAccess) -> AppendOutcome {
        guard let sharedMemory = mount.openSharedMemory(database: path) else { return .unusable }
        defer { Syscall.close(sharedMemory) }
        guard case .success(let wal) = Syscall.open(at: environment.filesFD, path + "-wal", flags: O_RDWR | O_CREAT, mode: 0o644) else { return .unusable }
        defer { Syscall.close(wal) }
        let frames = pages.filter { $0.key <= commit }.sorted { $0.key < $1.key }
        guard !frames.isEmpty else { return .unusable }
        let appender = WALIndexAppender(wal: wal, sharedMemory: sharedMemory)
        let known = state.wal.header == nil ? 0 : state.wal.lastCommit
        let walPath = path + "-wal"
        let result = appender.append(pages: frames, commitSize: commit, pageSize: pageSize, expectedFrames: known) { ranges in
            mount.invalidateContent(path: walPath, .byteRanges(ranges))
        }
        switch result {
        case .failure(.busy):
            return .busy
        case .failure(let failure):
            logger.notice("a reader is in a transaction and the WAL cannot be continued; waiting for the readers", metadata: ["database": "\(path)", "reason": "\(failure)", "known-frames": "\(known)"])
            return .unusable
        case .success(let appended):
            for write in appended.writes {
                let commit = write.bytes.withUnsafeBytes { state.wal.observe($0, at: write.offset) }
                if let commit { state.wal.didCommit(commit) }
            }
            if state.wal.lastCommit != Int(appended.maxFrame) {
                logger.warning("the WAL tracker disagrees with the frames appended", metadata: ["database": "\(path)", "tracked": "\(state.wal.lastCommit)", "appended": "\(appended.maxFrame)"])
            }
            return .appended
        }
    }

    /// After the file holds a batch (the position has moved): the empty
    /// `-wal` and WAL-index header readers of a WAL database need, the
    /// kernel's caches of what changed, the primary's epochs, readers let in.
    private func publishApplied(
        _ state: inout State, gate: any ReaderGate, mount: any MountAccess, existed: Bool, wholeFile: Bool, pages: some Collection<UInt32>, startPageCount: UInt32
    ) {
        if state.isWAL || gate.readersUseWAL {
            // Readers of a WAL database need a -wal to open; here it stays
            // empty. (So do WAL-mode connections still open on a database
            // the primary switched to a rollback journal.)
            if case .success(let fd) = Syscall.open(at: environment.filesFD, path + "-wal", flags: O_WRONLY | O_CREAT, mode: 0o644) {
                Syscall.close(fd)
            }
            // It may have been truncated underneath: a size the kernel still
            // caches would send SQLite's WAL recovery past its end.
            mount.invalidateContent(path: path + "-wal", .byteRanges([]))
            gate.resetWALIndex(pageSize: state.pageSize, pageCount: state.pageCount)
        } else {
            // A rollback-journal database with no WAL-mode connection left
            // (the gate holds the database file exclusively): the files of
            // its WAL days go, as SQLite removes them when it leaves WAL
            // mode, so that connections opened from now on use the journal
            // (SQLite opens any database whose -wal exists in WAL mode).
            removeWALFiles(mount: mount)
        }
        if state.pageCount == 0 || !existed {
            mount.invalidateName(path: path)
        }
        // Readers keep the kernel's cached pages of everything the batch
        // did not change.
        mount.invalidateContent(
            path: path, wholeFile ? .wholeFile : .pages(pages, pageSize: state.pageSize, oldPageCount: startPageCount, newPageCount: state.pageCount))
        gate.release()
        adoptPrimaryEpochs(&state)
    }

    /// Removes an empty `-wal` and the `-shm` left from when the database
    /// was in WAL mode, if there are any. Only with no WAL-mode connection.
    private func removeWALFiles(mount: any MountAccess) {
        for suffix in ["-wal", "-shm"] {
            guard case .success(let info) = Syscall.lstat(at: environment.filesFD, path + suffix) else { continue }
            if suffix == "-wal", info.st_size > 0 { continue }  // frames nobody folded: left alone
            _ = Syscall.unlink(at: environment.filesFD, path + suffix)
            mount.invalidateName(path: path + suffix)
        }
    }

    /// Writes a stalled batch again from its log records; nil once the file
    /// holds it and the position has moved.
    private func finishUnapplied(_ state: inout State, mount: any MountAccess) -> Errno? {
        guard let batch = state.unapplied else { return nil }
        var result = retireWAL(frames: batch.ownFrames, pageSize: batch.ownPageSize)
        for record in batch.records {
            guard case .success = result else { break }
            result = redo(record)
        }
        if case .failure(let error) = result { return error }
        state.unapplied = nil
        state.wal.reset()
        for transaction in batch.transactions { apply(transaction, to: &state) }
        publishApplied(&state, gate: batch.gate, mount: mount, existed: false, wholeFile: true, pages: [], startPageCount: 0)
        logger.notice("the stalled batch is written from the log: the database holds it, readers are let back in", metadata: ["database": "\(path)", "position": "\(state.position)"])
        return nil
    }

    /// Records a failed attempt; logs the first of a run of them.
    private func noteFailure(_ error: Errno, loggedThrough: TXID?, _ state: inout State) {
        if var failure = state.applyFailure {
            failure.attempts += 1
            failure.error = error
            failure.loggedThrough = loggedThrough ?? failure.loggedThrough
            state.applyFailure = failure
            return
        }
        state.applyFailure = ApplyFailure(error: error, since: Date(), attempts: 1, loggedThrough: loggedThrough)
        logger.error(
            loggedThrough == nil
                ? "cannot record replicated transactions; nothing changed, retrying (the position does not move meanwhile)"
                : "cannot write replicated pages into the database; it is kept from readers and written again from the log, retrying",
            metadata: ["database": "\(path)", "error": "\(error)", "position": "\(state.position)", "logged-through": "\(loggedThrough.map { "\($0)" } ?? "-")", "data": "\(environment.ltxRoot)"])
    }

    /// Replicated transactions not yet applied, if any (``ApplyFailure``).
    var applyStall: (failure: ApplyFailure, position: Position)? {
        published.value.withLock { value in value.failure.map { ($0, value.position) } }
    }

    /// Lets readers back in if a stalled batch still holds them off (at
    /// shutdown: the log redoes the batch at the next start).
    func releaseStalledReaders() {
        state.withLock { state in
            state.unapplied?.gate.release()
        }
    }

    /// Takes the primary's epoch history, up to the position reached, as this
    /// database's own, once the batch's pages are in place. Never before: a
    /// crash in between must not leave this node's old content under the
    /// primary's epochs (it would pass for the primary's history). A crash
    /// after the pages and before this leaves the old epochs, which the next
    /// handshake finds contradicting the primary: a snapshot, never a loss.
    private func adoptPrimaryEpochs(_ state: inout State) {
        guard let primary = state.primaryEpochs, case .success(let log) = ensureLog(&state) else { return }
        let adopted = primary.through(state.position.txid)
        guard adopted != state.epochs else { return }
        state.epochs = adopted
        if case .failure(let error) = log.saveEpochs(adopted) {
            logger.error("cannot record the primary's epoch history", metadata: ["database": "\(path)", "errno": "\(error)"])
        }
    }

    private struct Verified {
        var header: LTXHeader
        var transaction: Prepared
        /// The pages, when the file is in memory.
        var pages: [(UInt32, [UInt8])]
    }

    /// Decodes and checks one file against the current position.
    private func verify(_ source: LTXContent, keepAside: Bool, view: BatchView, state: inout State) -> Result<Verified, ApplyRefusal> {
        do {
            var decoder = try Self.decoder(for: source)
            defer { decoder.source.closeIfFile() }
            let header = try decoder.decodeHeader()
            let pageSize = Int(header.pageSize)
            let wholeImage = header.isSnapshot || (header.commit > 0 && pageSize != view.pageSize) || !view.complete
            if header.isSnapshot {
                // A snapshot never takes a database back in time, unless the
                // primary found its history diverged (then a copy is kept).
                guard keepAside || header.maxTXID >= view.position.txid else {
                    return .failure(.notNext(database: path, position: view.position, minTXID: header.minTXID, preApply: header.preApplyChecksum))
                }
            } else {
                guard header.minTXID.rawValue == view.position.txid.rawValue + 1, !header.tracksChecksums || header.preApplyChecksum == view.position.checksum else {
                    return .failure(.notNext(database: path, position: view.position, minTXID: header.minTXID, preApply: header.preApplyChecksum))
                }
            }
            var checksum = wholeImage ? Checksum.emptyDatabase : view.position.checksum
            if !wholeImage && header.commit < view.pageCount {
                for pgno in (header.commit + 1)...view.pageCount {
                    checksum = checksum.replacingPage(old: view.checksum(pgno, base: state.pageChecksums), new: .zero)
                }
            }
            var updates: [(UInt32, Checksum)] = []
            var pages: [(UInt32, [UInt8])] = []
            var isWAL: Bool?
            let keep: Bool
            if case .bytes = source { keep = true } else { keep = false }
            var page = [UInt8](repeating: 0, count: pageSize)
            while let pgno = try decoder.nextPage(into: &page) {
                let new = page.withUnsafeBytes { Checksum.page(pgno, $0) }
                let old: Checksum = (!wholeImage && pgno.rawValue <= view.pageCount) ? view.checksum(pgno.rawValue, base: state.pageChecksums) : .zero
                checksum = checksum.replacingPage(old: old, new: new)
                updates.append((pgno.rawValue, new))
                if pgno.rawValue == 1, let databaseHeader = page.withUnsafeBytes({ DatabaseHeader($0) }) { isWAL = databaseHeader.isWAL }
                if keep { pages.append((pgno.rawValue, page)) }
            }
            let trailer = try decoder.finish()
            if header.tracksChecksums && trailer.postApplyChecksum != checksum {
                return .failure(.postApplyMismatch(database: path, expected: trailer.postApplyChecksum, computed: checksum))
            }
            let transaction = Prepared(
                txid: header.maxTXID, checksum: checksum, pageSize: pageSize, commitSize: header.commit, allPages: wholeImage,
                updates: updates, isWAL: isWAL, epoch: (state.primaryEpochs ?? state.epochs).epoch(at: header.maxTXID) ?? 0)
            return .success(Verified(header: header, transaction: transaction, pages: pages))
        } catch let error as LTXError {
            return .failure(.corrupt(database: path, error))
        } catch {
            return .failure(.io(database: path, .io))
        }
    }

    static func decoder(for source: LTXContent) throws(LTXError) -> LTXDecoder<AnyLTXSource> {
        switch source {
        case .bytes(let bytes): return LTXDecoder(source: .memory(LTXMemorySource(bytes)))
        case .file(let path): return LTXDecoder(source: .file(try LTXFileSource(path: path)))
        }
    }

    private static func fileExists(_ directory: Int32, _ path: String) -> Bool {
        if case .success = Syscall.lstat(at: directory, path) { return true }
        return false
    }

    /// Records a batch of in-memory files as one LTX file covering them all
    /// (the last version of each page, the first file's pre-apply checksum,
    /// the position reached after the last), on stable storage on return.
    private func recordMerged(
        first: LTXHeader, preApply: Checksum, last: LTXHeader, whole: Bool, pages: [UInt32: [UInt8]], postApply: Checksum, in state: inout State
    ) -> Result<[UInt8], Errno> {
        let log: LTXLog
        switch ensureLog(&state) {
        case .success(let value): log = value
        case .failure(let error): return .failure(error)
        }
        let minTXID = whole ? TXID(1) : first.minTXID
        if whole, case .failure(let error) = log.removeAll(resettingTo: last.maxTXID) { return .failure(error) }
        let header = LTXHeader(
            flags: last.flags, pageSize: last.pageSize, commit: last.commit, minTXID: minTXID, maxTXID: last.maxTXID, timestamp: last.timestamp,
            preApplyChecksum: whole ? .zero : (first.isSnapshot ? .zero : first.preApplyChecksum), nodeID: last.nodeID)
        do {
            var encoder = try LTXEncoder(header: header)
            let lockPage = PageNumber.lockPage(pageSize: Int(last.pageSize)).rawValue
            for pgno in pages.keys.sorted() where pgno <= last.commit && pgno != lockPage {
                try pages[pgno]!.withUnsafeBytes { try encoder.append(PageNumber(pgno), page: $0) }
            }
            try encoder.finish(postApplyChecksum: postApply)
            let bytes = encoder.takeBytes()
            // Durable before the position moves: what this replica
            // acknowledges survives its crash.
            return log.append(bytes, minTXID: minTXID, txid: last.maxTXID, sync: true).map { bytes }
        } catch {
            return .failure(.io)
        }
    }

    /// Appends the file to this node's log; a snapshot starts the log anew.
    private func record(_ source: LTXContent, header: LTXHeader, in state: inout State) -> Result<Void, Errno> {
        let log: LTXLog
        switch ensureLog(&state) {
        case .success(let value): log = value
        case .failure(let error): return .failure(error)
        }
        if header.isSnapshot, case .failure(let error) = log.removeAll(resettingTo: header.maxTXID) { return .failure(error) }
        switch source {
        case .bytes(let bytes):
            return log.append(bytes, minTXID: header.minTXID, txid: header.maxTXID, sync: false)
        case .file(let path):
            return log.adoptFile(at: path, minTXID: header.minTXID, maxTXID: header.maxTXID)
        }
    }

    /// Writes the batch's pages into the database file (deleting it for
    /// commit 0): the last version of each page, or a streamed file's pages.
    /// A replica keeps its WAL empty (applied pages go to the main file). A
    /// node that was primary until now may still have committed frames in
    /// its WAL: they are copied into the main file (a checkpoint, done here
    /// because SQLite cannot write through a read-only mount), made durable,
    /// and the WAL is emptied. Readers are held off by the caller.
    private func retireWAL(frames: [UInt32: Int], pageSize: Int) -> Result<Void, Errno> {
        let walPath = path + "-wal"
        guard case .success(let info) = Syscall.lstat(at: environment.filesFD, walPath), info.st_size > 0 else { return .success(()) }
        if !frames.isEmpty, pageSize > 0 {
            let folded = Syscall.open(at: environment.filesFD, path, flags: O_RDWR).flatMap { main in
                defer { Syscall.close(main) }
                return copyFrames(frames, pageSize: pageSize, into: main).flatMap { Syscall.fsync(main) }
            }
            if case .failure(let error) = folded { return .failure(error) }
            logger.notice("folded this node's WAL into the database before following the primary", metadata: ["database": "\(path)", "pages": "\(frames.count)"])
        }
        return Syscall.open(at: environment.filesFD, walPath, flags: O_WRONLY).flatMap { fd in
            defer { Syscall.close(fd) }
            return Syscall.ftruncate(fd, 0)
        }
    }

    /// Writes the pages of this node's committed WAL frames (`frames`: page
    /// number to frame index) into the database file open at `main`.
    private func copyFrames(_ frames: [UInt32: Int], pageSize: Int, into main: Int32) -> Result<Void, Errno> {
        let wal: Int32
        switch Syscall.open(at: environment.filesFD, path + "-wal", flags: O_RDONLY) {
        case .success(let value): wal = value
        case .failure(let error): return .failure(error)
        }
        defer { Syscall.close(wal) }
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
        defer { page.deallocate() }
        for (pgno, frame) in frames.sorted(by: { $0.key < $1.key }) {
            let offset = Int64(WALHeader.size) + Int64(frame - 1) * Int64(WALFrameHeader.size + pageSize) + Int64(WALFrameHeader.size)
            guard case .success(pageSize) = Syscall.pread(wal, into: page, at: offset) else { return .failure(.io) }
            if case .failure(let error) = Syscall.pwrite(main, UnsafeRawBufferPointer(page), at: Int64(pgno - 1) * Int64(pageSize)) {
                return .failure(error)
            }
        }
        return .success(())
    }

    /// Copies the database as this node last committed it to `destination`
    /// (a new file), durably: the main file with this node's own WAL frames
    /// folded in (it may have been primary until now, and SQLite cannot
    /// checkpoint through a read-only mount), cut to its committed size. The
    /// copy opens alone in SQLite with every transaction the node committed.
    /// A copy already at `destination` (an earlier attempt of the same
    /// batch) is complete: a failed copy is removed.
    func copyAside(to destination: String, _ state: inout State) -> Result<Void, Errno> {
        if case .success = Syscall.lstat(at: AT_FDCWD, destination) { return .success(()) }
        let pageSize = state.pageSize
        let size = Int64(state.pageCount) * Int64(pageSize)
        let frames = state.wal.committedPages
        let copied = Syscall.open(at: AT_FDCWD, destination, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600).flatMap { out in
            defer { Syscall.close(out) }
            return Syscall.open(at: environment.filesFD, path, flags: O_RDONLY).flatMap { source in
                defer { Syscall.close(source) }
                return Self.copyFile(from: source, to: out)
            }
            .flatMap { frames.isEmpty || pageSize == 0 ? .success(()) : copyFrames(frames, pageSize: pageSize, into: out) }
            .flatMap { Syscall.ftruncate(out, size) }
            .flatMap { Syscall.fsync(out) }
        }
        if case .failure = copied { _ = Syscall.unlink(at: AT_FDCWD, destination) }
        return copied
    }

    private static func copyFile(from source: Int32, to destination: Int32) -> Result<Void, Errno> {
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { chunk.deallocate() }
        var offset: Int64 = 0
        while true {
            switch Syscall.pread(source, into: chunk, at: offset) {
            case .failure(let error): return .failure(error)
            case .success(0): return .success(())
            case .success(let count):
                if case .failure(let error) = Syscall.pwrite(destination, UnsafeRawBufferPointer(rebasing: chunk[..<count]), at: offset) { return .failure(error) }
                offset += Int64(count)
            }
        }
    }

    private func writePages(_ pages: [UInt32: [UInt8]], streamed: (LTXContent, LTXHeader)?, reset: Bool, commit: UInt32, pageSize: Int) -> Result<Void, Errno> {
        if commit == 0 {
            switch Syscall.unlink(at: environment.filesFD, path) {
            case .success, .failure(.noEntry): return .success(())
            case .failure(let error): return .failure(error)
            }
        }
        let fd: Int32
        switch Syscall.open(at: environment.filesFD, path, flags: O_RDWR | O_CREAT, mode: 0o644) {
        case .success(let value): fd = value
        case .failure(let error): return .failure(error)
        }
        defer { Syscall.close(fd) }
        if reset, case .failure(let error) = Syscall.ftruncate(fd, 0) { return .failure(error) }
        if let (source, header) = streamed {
            do {
                var decoder = try Self.decoder(for: source)
                defer { decoder.source.closeIfFile() }
                _ = try decoder.decodeHeader()
                let size = Int(header.pageSize)
                let page = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
                defer { page.deallocate() }
                while let pgno = try decoder.nextPage(into: page) {
                    if case .failure(let error) = Syscall.pwrite(fd, UnsafeRawBufferPointer(page), at: Int64(pgno.rawValue - 1) * Int64(size)) {
                        return .failure(error)
                    }
                }
            } catch {
                return .failure(.io)
            }
        }
        for (pgno, bytes) in pages where pgno <= commit {
            let result = bytes.withUnsafeBytes { Syscall.pwrite(fd, $0, at: Int64(pgno - 1) * Int64(pageSize)) }
            if case .failure(let error) = result { return .failure(error) }
        }
        return Syscall.ftruncate(fd, Int64(commit) * Int64(pageSize))
    }
}

/// An LTX byte source that is either in memory or a file.
enum AnyLTXSource: LTXByteSource {
    case memory(LTXMemorySource)
    case file(LTXFileSource)

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(LTXError) -> Int {
        switch self {
        case .memory(var source):
            let n = try source.read(into: buffer)
            self = .memory(source)
            return n
        case .file(var source):
            let n = try source.read(into: buffer)
            self = .file(source)
            return n
        }
    }

    func closeIfFile() {
        if case .file(let source) = self { source.close() }
    }
}
