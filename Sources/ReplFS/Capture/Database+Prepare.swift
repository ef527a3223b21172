#if canImport(Glibc)
import Glibc
#endif

/// Turning a transaction's pages into the next LTX record of the
/// database's log, in the epoch it is committed in. Every capture
/// (journal, WAL, untracked) ends here.
extension Database {
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
    func prepare(
        _ state: inout State, pageSize: Int, commitSize: UInt32, candidates: [PageNumber], allPages requestedAllPages: Bool, sync: Bool,
        expectSync: Bool = false, read: (PageNumber, UnsafeMutableRawBufferPointer) -> Result<Void, FileSystemError>
    ) -> Result<Prepared?, FileSystemError> {
        let txid = state.position.txid.next
        let isSnapshot = txid.rawValue == 1
        if isSnapshot && commitSize == 0 { return .success(nil) }
        // Whole-database records: the first (a snapshot), a page-size change, or
        // whenever the page table does not describe the old content (recovery).
        let allPages = requestedAllPages || isSnapshot || (pageSize != state.pages.pageSize && commitSize > 0) || !state.pages.isComplete
        let pageSize = commitSize == 0 ? max(state.pages.pageSize, 512) : pageSize

        let log: LTXLog
        switch ensureLog(&state) {
        case .success(let value): log = value
        case .failure(let error): return .failure(.notLogged("cannot open the database's log", cause: error))
        }
        let epoch: Epoch
        switch recordEpoch(&state, log: log, txid: txid) {
        case .success(let value): epoch = value
        case .failure(let error): return .failure(.notLogged("cannot record the epoch history", cause: error))
        }
        var transaction = Prepared(
            txid: txid, checksum: allPages ? .emptyDatabase : state.position.checksum, pageSize: pageSize,
            commitSize: commitSize, allPages: allPages, updates: [], isWAL: nil, epoch: epoch)
        let header = LTXHeader(
            pageSize: UInt32(pageSize), commit: commitSize, minTXID: txid, maxTXID: txid,
            timestamp: WallClock.milliseconds(), preApplyChecksum: isSnapshot ? .zero : state.position.checksum,
            nodeID: environment.nodeID)
        do throws(LTXRecordWriter.Failure) {
            var writer = try LTXRecordWriter(log: log, header: header)
            do throws(LTXRecordWriter.Failure) {
                try collectChanges(into: &transaction, table: state.pages, candidates: candidates, writer: &writer, read: read)
            } catch {
                writer.abandon()
                throw error
            }
            // Same size and no page changed (with every page read: the same
            // content, so the same checksum): a rollback, or identical bytes.
            let unchanged = !isSnapshot && commitSize == state.pages.pageCount && pageSize == state.pages.pageSize
                && (allPages ? transaction.checksum == state.position.checksum : transaction.updates.isEmpty)
            if unchanged {
                writer.abandon()
                return .success(nil)
            }
            transaction.ltx = try writer.finish(postApplyChecksum: transaction.checksum, sync: sync, expectSync: expectSync)
            return .success(transaction)
        } catch {
            if case .encoding(let reason) = error {
                logger.error("cannot encode the transaction", metadata: ["database": "\(path)", "txid": "\(txid)", "error": "\(reason)"])
            }
            return .failure(error.fileSystemError)
        }
    }

    /// Reads page `pgno` of the database file back to capture it: a page
    /// that cannot be read fails the capture, and with it the commit.
    static func readPageBack(_ fd: Int32, _ pgno: PageNumber, into buffer: UnsafeMutableRawBufferPointer) -> Result<Void, FileSystemError> {
        readPage(fd, pgno, into: buffer).mapError { .notLogged("cannot read page \(pgno) of the database file back", cause: $0) }
    }

    /// Reads the pages of `transaction` that may have changed against
    /// `table` (every page when it holds every page), encodes those that
    /// did, and moves its checksum and updates (pages cut off by a smaller
    /// commit size leave the checksum).
    private func collectChanges(
        into transaction: inout Prepared, table: PageTable, candidates: [PageNumber], writer: inout LTXRecordWriter,
        read: (PageNumber, UnsafeMutableRawBufferPointer) -> Result<Void, FileSystemError>
    ) throws(LTXRecordWriter.Failure) {
        let commitSize = transaction.commitSize
        let allPages = transaction.allPages
        let lockPage = PageNumber.lockPage(pageSize: transaction.pageSize)
        // Pages truncated away stop contributing.
        if !allPages && commitSize < table.pageCount {
            for pgno in ((commitSize + 1)...table.pageCount).lazy.map(PageNumber.init(rawValue:)) where pgno != lockPage {
                transaction.checksum = transaction.checksum.replacingPage(old: table.checksum(of: pgno), new: .zero)
            }
        }
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: transaction.pageSize, alignment: 16)
        defer { page.deallocate() }
        func visit(_ pgno: PageNumber) throws(LTXRecordWriter.Failure) {
            if pgno == lockPage { return }
            if case .failure(let error) = read(pgno, page) { throw .unreadable(error) }
            let bytes = UnsafeRawBufferPointer(page)
            let new = Checksum.page(pgno, bytes)
            let old = allPages ? Checksum.zero : table.checksum(of: pgno)
            if !allPages && new == old { return }
            transaction.checksum = transaction.checksum.replacingPage(old: old, new: new)
            transaction.updates.append((pgno, new))
            if pgno.rawValue == 1, let header = DatabaseHeader(bytes) { transaction.isWAL = header.isWAL }
            try writer.append(pgno, page: bytes)
        }
        if allPages {
            var pgno: UInt32 = 1
            while pgno <= commitSize {
                try visit(PageNumber(pgno))
                pgno += 1
            }
        } else {
            for pgno in Self.pagesToRead(candidates: candidates, oldPageCount: table.pageCount, commitSize: commitSize) { try visit(pgno) }
        }
    }

    /// The candidates within the commit size, and every page the database
    /// grew by, ascending.
    static func pagesToRead(candidates: [PageNumber], oldPageCount: UInt32, commitSize: UInt32) -> [PageNumber] {
        var pages = candidates.filter { $0.rawValue <= commitSize }
        let grownFrom = oldPageCount + 1
        if commitSize >= grownFrom {
            let known = Set(pages)
            pages.append(contentsOf: (grownFrom...commitSize).lazy.map(PageNumber.init(rawValue:)).filter { !known.contains($0) })
            pages.sort()
        }
        return pages
    }

    /// Records, before the transaction `txid` is logged, that it is
    /// committed in this node's current epoch (the first of a term changes
    /// the history, durably; the others find it in place). Returns the epoch.
    func recordEpoch(_ state: inout State, log: LTXLog, txid: TXID) -> Result<Epoch, Errno> {
        let epoch = environment.commitEpoch.current
        guard epoch.isKnown else { return .success(state.epochs.epoch(at: txid) ?? .unknown) }
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
}
