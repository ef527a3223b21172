#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// Replica apply: what happens when a batch of the primary's transactions
/// arrives. Pass 1 (``Database/acceptBatch(_:aside:keepAside:_:)``) checks
/// and records; pass 2 (``Database/writeBatch(_:_:mount:)``) writes the
/// pages with SQLite's readers held off and moves the position.
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
    ///
    /// `logged` is told the last TXID of a batch of transactions once they
    /// are durable in the log, before their pages are written (a
    /// synchronous primary counts this replica from then on). Not for a
    /// batch that came as a file (a snapshot): that one counts once applied.
    func applyReplicated(
        _ sources: [LTXContent], mount: any MountAccess, aside: (String, Position) -> String, keepAside: Bool,
        logged: (TXID) -> Void = { _ in }
    ) -> (position: Position?, refusal: ApplyRefusal?) {
        state.withLock { state in
            if state.journalActive, let error = rollBackStaleJournal(&state, mount: mount) {
                noteFailure(error, loggedThrough: nil, &state)
                return (nil, .io(database: path, error))
            }
            var finishedStall = false
            if state.unapplied != nil {
                if let error = finishUnapplied(&state, mount: mount) {
                    noteFailure(error, loggedThrough: state.unapplied?.transactions.last?.txid, &state)
                    return (nil, .stalled(database: path, error))
                }
                finishedStall = true
                state.applyFailure = nil
            }
            var (batch, refusal) = acceptBatch(sources, aside: aside, keepAside: keepAside, &state)
            guard !batch.transactions.isEmpty else { return (finishedStall ? state.position : nil, refusal) }
            if let merged = batch.merged {
                let recorded = recordMerged(
                    first: merged.first, preApply: merged.preApply, last: merged.last, whole: merged.whole, pages: batch.pages,
                    postApply: batch.view.position.checksum, in: &state)
                switch recorded {
                case .success(let bytes):
                    batch.records.append(.bytes(bytes))
                    if batch.streamed == nil { logged(batch.view.position.txid) }
                case .failure(let error):
                    noteFailure(error, loggedThrough: nil, &state)
                    return (finishedStall ? state.position : nil, .io(database: path, error))
                }
            }
            if let error = writeBatch(batch, &state, mount: mount) {
                return (finishedStall ? state.position : nil, .stalled(database: path, error))
            }
            return (state.position, refusal)
        }
    }

    /// Rolls back a transaction this node began as primary and never
    /// committed: writes stopped (its lease was lost) between SQLite making
    /// the rollback journal hot and deleting it, so the commit point and
    /// SQLite's own rollback were both refused. The journal is left hot:
    /// SQLite's readers cannot open the database through the read-only
    /// mount while it is there, a copy kept aside would hold the
    /// uncommitted pages, and a later promotion would roll it back over
    /// what this node received. SQLite rolls it back here, on the real
    /// file, with the mount's readers held off, before anything is applied
    /// or kept aside. Nothing acknowledged is lost: the transaction never
    /// reached its commit point, so it was never logged or acknowledged.
    /// Returns the error if the journal cannot be rolled back.
    private func rollBackStaleJournal(_ state: inout State, mount: any MountAccess) -> Errno? {
        defer {
            state.journalActive = false
            state.dirty.removeAll()
            state.unjournaledWrites = false
        }
        var header = [UInt8](repeating: 0, count: 8)
        let hot = Syscall.open(at: environment.filesFD, path + "-journal", flags: O_RDONLY).map { fd in
            defer { Syscall.close(fd) }
            let read = header.withUnsafeMutableBytes { Syscall.pread(fd, into: $0, at: 0) }
            return (try? read.get()) == header.count && header.withUnsafeBytes { JournalHeader.hasMagic($0) }
        }
        guard (try? hot.get()) == true else { return nil }
        let gate = mount.excludeReaders(database: path, walMode: false)
        defer { gate.release() }
        let result = SQLiteRecovery.rollBackJournal(path: environment.filesPath + "/" + path)
        closeReadFD(&state)
        mount.invalidateContent(path: path, .wholeFile)
        mount.invalidateName(path: path + "-journal")
        if case .failure(let error) = result {
            logger.error("cannot roll back the journal this node left when its writes stopped", metadata: ["database": "\(path)", "error": "\(error)"])
            return .io
        }
        logger.warning(
            "rolled back a transaction this node began as primary and never committed: its journal was left when writes stopped",
            metadata: ["database": "\(path)", "position": "\(state.position)"])
        return nil
    }

    /// What pass 1 accepted of a batch, recorded in the log (but for the
    /// in-memory files, recorded merged after it) and waiting to be written.
    struct AcceptedBatch {
        /// The position and page checksums the accepted files reach.
        var view: BatchView
        /// The last version of each page of the in-memory files.
        var pages: [PageNumber: [UInt8]] = [:]
        /// The last file that came as a file (a snapshot): written from there.
        var streamed: (LTXContent, LTXHeader)?
        /// A file replaced the database whole: the database file starts empty.
        var resetFile = false
        /// WAL mode, as the accepted files leave page 1.
        var isWAL: Bool
        var transactions: [Prepared] = []
        /// What the log holds for the batch, oldest first (the redo of a stall).
        var records: [LTXContent] = []
        /// The in-memory files, recorded as one merged LTX record (first
        /// TXID...last TXID): one record for the batch, not one per
        /// transaction (the primary's log keeps those).
        var merged: (first: LTXHeader, preApply: Checksum, last: LTXHeader, whole: Bool)?
        /// The database file existed before the batch.
        var existed: Bool
    }

    /// Pass 1, file by file: verifies each against the view the batch's
    /// earlier files reach and collects what to record and write. A refused
    /// file ends the batch there; the files before it are kept.
    private func acceptBatch(
        _ sources: [LTXContent], aside: (String, Position) -> String, keepAside: Bool, _ state: inout State
    ) -> (AcceptedBatch, ApplyRefusal?) {
        var batch = AcceptedBatch(
            view: BatchView(state), isWAL: state.pages.isWAL, existed: state.pages.exists || Self.fileExists(environment.filesFD, path))
        for source in sources {
            let verified: Verified
            switch verify(source, keepAside: keepAside, view: batch.view, state: &state) {
            case .failure(let refusal): return (batch, refusal)
            case .success(let value): verified = value
            }
            if verified.header.isSnapshot, batch.view.pageCount > 0, keepAside, let refusal = keepAsideBeforeSnapshot(at: batch.view.position, aside: aside, &state) {
                return (batch, refusal)
            }
            if verified.transaction.allPages {
                batch.pages.removeAll()
                batch.resetFile = true
            }
            if case .file = source {
                if case .failure(let error) = record(source, header: verified.header, in: &state) {
                    noteFailure(error, loggedThrough: nil, &state)
                    return (batch, .io(database: path, error))
                }
                batch.records.append(.file(state.log!.path(minTXID: verified.header.minTXID, maxTXID: verified.header.maxTXID)))
                batch.streamed = (source, verified.header)
            } else {
                let whole = verified.header.isSnapshot || verified.transaction.allPages
                if let first = batch.merged {
                    batch.merged = (first.first, first.preApply, verified.header, first.whole)
                } else {
                    batch.merged = (verified.header, batch.view.position.checksum, verified.header, whole)
                }
                for (pgno, bytes) in verified.pages { batch.pages[pgno] = bytes }
            }
            if let isWAL = verified.transaction.isWAL { batch.isWAL = isWAL }
            batch.view.advance(verified.transaction)
            batch.transactions.append(verified.transaction)
        }
        return (batch, nil)
    }

    /// Invariant 6: what this node holds and the primary does not is copied
    /// whole before a snapshot replaces it, or nothing is replaced. Returns
    /// the refusal if the copy cannot be made.
    private func keepAsideBeforeSnapshot(at position: Position, aside: (String, Position) -> String, _ state: inout State) -> ApplyRefusal? {
        let copy = aside(path, position)
        if case .failure(let error) = copyAside(to: copy, &state) {
            logger.error(
                "cannot keep this node's database aside; the primary's snapshot waits",
                metadata: ["database": "\(path)", "aside": "\(copy)", "error": "\(error)"])
            noteFailure(error, loggedThrough: nil, &state)
            return .io(database: path, error)
        }
        logger.warning(
            "moved this node's database aside before taking the primary's snapshot: it holds every transaction this node committed",
            metadata: ["database": "\(path)", "position": "\(position)", "aside": "\(copy)"])
        return nil
    }

    /// Pass 2, once for the batch: readers held off (or, in WAL mode under
    /// a reader, the batch appended to the WAL), pages written, the
    /// position moved. Returns the error if the pages could not all be
    /// written: the batch then stays in the log as an ``UnappliedBatch``.
    private func writeBatch(_ batch: AcceptedBatch, _ state: inout State, mount: any MountAccess) -> Errno? {
        let ownFrames = state.wal.committedPages
        let ownPageSize = state.pages.pageSize
        let startPageCount = state.pages.pageCount
        // A WAL database that a reader is in a transaction on takes the
        // batch as frames appended to its WAL: the reader keeps its
        // snapshot and nothing waits for it (the frames are folded into
        // the file by the first batch that finds no reader).
        // (A snapshot too: it is a transaction that writes every page.)
        let appendable = batch.isWAL && state.pages.isWAL && batch.streamed == nil && batch.existed
            && batch.view.pageSize == ownPageSize && !batch.pages.isEmpty
        var held: (any ReaderGate)?
        if appendable {
            switch appendUnderReader(batch, &state, mount: mount) {
            case .appended: return nil
            case .held(let gate): held = gate
            case .notAppended: break
            }
        }
        let gate = held ?? mount.excludeReaders(database: path, walMode: batch.isWAL || state.pages.isWAL)
        let written = retireWAL(frames: batch.resetFile ? [:] : ownFrames, pageSize: ownPageSize).flatMap {
            writePages(batch.pages, streamed: batch.streamed, reset: batch.resetFile, commit: batch.view.pageCount, pageSize: batch.view.pageSize)
        }
        closeReadFD(&state)
        if case .failure(let error) = written {
            // The log holds the batch: keep readers out of the part-written
            // file until it is written again from there.
            state.unapplied = UnappliedBatch(
                records: batch.records, transactions: batch.transactions, ownFrames: batch.resetFile ? [:] : ownFrames,
                ownPageSize: ownPageSize, gate: gate)
            noteFailure(error, loggedThrough: batch.view.position.txid, &state)
            return error
        }
        state.wal.reset()
        for transaction in batch.transactions { apply(transaction, to: &state) }
        state.applyFailure = nil
        // Folding this node's own WAL frames in changes their pages too:
        // those and the batch's are dropped from the kernel's cache, the
        // rest of the file stays cached for the readers.
        let wholeFile = batch.resetFile || batch.streamed != nil || batch.view.pageSize != ownPageSize || !batch.existed
        publishApplied(
            &state, gate: gate, mount: mount, existed: batch.existed, wholeFile: wholeFile,
            pages: Set(batch.pages.keys).union(ownFrames.keys), startPageCount: startPageCount)
        return nil
    }

    /// What came of trying to append a batch to the WAL.
    private enum UnderReader {
        /// The batch is in the WAL and the position has moved.
        case appended
        /// A moment with no reader came: the batch is written in place
        /// under this gate.
        case held(any ReaderGate)
        /// The WAL cannot take it: written in place once readers leave.
        case notAppended
    }

    /// A gap between short readers is waited for a moment first, so a
    /// replica under back-to-back reads still writes in place (its readers
    /// then read the file through the page cache, not frames from the
    /// uncached -wal); only a reader holding a transaction longer than that
    /// sends the batch to the WAL. A lock held for a moment (a connection
    /// opening, rebuilding the index) is waited out; an index that cannot
    /// be continued is not.
    private func appendUnderReader(_ batch: AcceptedBatch, _ state: inout State, mount: any MountAccess) -> UnderReader {
        if let gate = mount.tryExcludeReaders(database: path, walMode: true, patience: Self.readerGapPatience) { return .held(gate) }
        let giveUp = ContinuousClock.now + .milliseconds(200)
        while true {
            switch appendToWAL(batch.pages, commit: batch.view.pageCount, pageSize: batch.view.pageSize, &state, mount: mount) {
            case .appended:
                logger.trace("batch appended to the WAL under a reader", metadata: ["database": "\(path)"])
                closeReadFD(&state)
                for transaction in batch.transactions { apply(transaction, to: &state) }
                state.applyFailure = nil
                adoptPrimaryEpochs(&state)
                return .appended
            case .unusable:
                return .notAppended
            case .busy:
                // The wait is spent watching for a gap between readers.
                guard ContinuousClock.now < giveUp else { return .notAppended }
                if let gate = mount.tryExcludeReaders(database: path, walMode: true, patience: .milliseconds(2)) { return .held(gate) }
            }
        }
    }

    /// How long a batch waits for a moment with no reader in a transaction
    /// before it goes to the WAL instead (decision 40): long against a point
    /// select (tens of microseconds), short against replication lag.
    static let readerGapPatience: Duration = .milliseconds(5)

    /// After the file holds a batch (the position has moved): the empty
    /// `-wal` and WAL-index header readers of a WAL database need, the
    /// kernel's caches of what changed, the primary's epochs, readers let in.
    private func publishApplied(
        _ state: inout State, gate: any ReaderGate, mount: any MountAccess, existed: Bool, wholeFile: Bool, pages: some Collection<PageNumber>, startPageCount: UInt32
    ) {
        if state.pages.isWAL || gate.readersUseWAL {
            // Readers of a WAL database need a -wal to open; here it stays
            // empty. (So do WAL-mode connections still open on a database
            // the primary switched to a rollback journal.)
            if case .success(let fd) = Syscall.open(at: environment.filesFD, path + "-wal", flags: O_WRONLY | O_CREAT, mode: 0o644) {
                Syscall.close(fd)
            }
            // It may have been truncated underneath: a size the kernel still
            // caches would send SQLite's WAL recovery past its end.
            mount.invalidateContent(path: path + "-wal", .byteRanges([]))
            gate.resetWALIndex(pageSize: state.pages.pageSize, pageCount: state.pages.pageCount)
        } else {
            // A rollback-journal database with no WAL-mode connection left
            // (the gate holds the database file exclusively): the files of
            // its WAL days go, as SQLite removes them when it leaves WAL
            // mode, so that connections opened from now on use the journal
            // (SQLite opens any database whose -wal exists in WAL mode).
            removeWALFiles(mount: mount)
        }
        if state.pages.pageCount == 0 || !existed {
            mount.invalidateName(path: path)
        }
        // Readers keep the kernel's cached pages of everything the batch
        // did not change.
        mount.invalidateContent(
            path: path, wholeFile ? .wholeFile : .pages(pages, pageSize: state.pages.pageSize, oldPageCount: startPageCount, newPageCount: state.pages.pageCount))
        gate.release()
        adoptPrimaryEpochs(&state)
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
}
