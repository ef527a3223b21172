#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

extension Database {
    /// What recovery found and did, for the log and for tests.
    enum RecoveryOutcome: Equatable, Sendable {
        /// Content and log agreed.
        case consistent
        /// No log yet: the content was recorded as a snapshot.
        case snapshotted
        /// The last logged transaction had not reached the file; it was applied.
        case redone(TXID)
        /// The content matched neither; it was recorded as a new transaction.
        case resynced(TXID)
        /// SQLite's hot-journal rollback left reused free pages changed; they
        /// were recorded as a new transaction.
        case repairedFreePages(TXID)
        /// Torn LTX files at the end of the log were removed.
        case removedTornFiles(Int)
    }

    /// Brings the database file and its LTX log into agreement at startup,
    /// before the mount serves anything (invariant 3).
    ///
    /// 1. SQLite's own recovery (hot journal rollback, WAL checkpoint), so the
    ///    database file alone is the content.
    /// 2. The newest LTX files are decoded in full; torn ones (a crash during
    ///    their write, before their transaction was acknowledged) are removed.
    /// 3. The content is checksummed and compared with the log: equal is the
    ///    normal case; if applying the last file to the content reaches the
    ///    log's position, the crash fell between logging and the commit point,
    ///    so the file is applied (it may already be on replicas). That holds
    ///    when the content is the file's pre-apply state, and also when a
    ///    hot-journal rollback left free pages the transaction reused with
    ///    its bytes (SQLite does not journal them; the file rewrites them).
    ///    The second form is only trusted after a hot-journal rollback: a
    ///    database edited behind the daemon's back must not be overwritten.
    ///    A rollback of a transaction that was never logged can leave such
    ///    pages too: they are recorded as a transaction of their own.
    ///    Anything else is recorded as a new transaction holding every page,
    ///    and logged loudly.
    func recover(absoluteFilesPath: String) -> [RecoveryOutcome] {
        var outcomes: [RecoveryOutcome] = []
        let databasePath = absoluteFilesPath + "/" + path
        let hasJournal = Self.fileSize(databasePath + "-journal").map { $0 > 0 } ?? false
        let hasWAL = Self.fileSize(databasePath + "-wal") != nil
        if (hasJournal || hasWAL), let size = Self.fileSize(databasePath), size > 0 {
            if case .failure(let error) = SQLiteRecovery.run(path: databasePath) {
                logger.error("\(error)")
            }
        }

        return state.withLock { state in
            // The log: the newest complete record is the position.
            let (last, torn) = newestCompleteRecord(&state)
            if torn > 0 { outcomes.append(.removedTornFiles(torn)) }
            if let last {
                state.position = Position(
                    txid: last.header.maxTXID, checksum: last.trailer.postApplyChecksum, epoch: state.epochs.epoch(at: last.header.maxTXID) ?? .unknown)
            }

            // The content.
            closeReadFD(&state)
            var content = loadContent(&state)
            if let last {
                let before = last.header.isSnapshot ? Checksum.emptyDatabase : last.header.preApplyChecksum
                if content.checksum == state.position.checksum {
                    outcomes.append(.consistent)
                } else if content.checksum == before
                    || (hasJournal && checksum(afterApplying: last.content, onto: content) == state.position.checksum),
                    case .success = redo(last.content)
                {
                    logger.notice("applied a logged transaction the crash kept from the database file", metadata: ["database": "\(path)", "txid": "\(last.header.maxTXID)"])
                    closeReadFD(&state)
                    content = loadContent(&state)
                    outcomes.append(.redone(last.header.maxTXID))
                } else if hasJournal, content.pages.pageSize == Int(last.header.pageSize),
                    let free = freePages(&state, content), case .success(let txid) = recordRepair(&state, pages: free, content: content)
                {
                    // SQLite rolled back a hot journal but left free pages it
                    // had reused (it never journals them) with new bytes.
                    logger.notice(
                        "SQLite's rollback left reused free pages changed; recorded them as a transaction",
                        metadata: ["database": "\(path)", "pages": "\(free.count)", "txid": "\(txid)"])
                    outcomes.append(.repairedFreePages(txid))
                    return outcomes
                } else {
                    logger.warning(
                        "database content does not match its log; recording it as a new transaction",
                        metadata: [
                            "database": "\(path)", "position": "\(state.position)", "content": "\(content.checksum)",
                            "last-pre-apply": "\(before)", "hot-journal": "\(hasJournal)", "wal": "\(hasWAL)", "pages": "\(content.pages.pageCount)",
                        ])
                    // The log's last state is what the new transaction starts from.
                    state.pages.pageCount = last.header.commit
                    state.pages.pageSize = Int(last.header.pageSize)
                    let prepared = prepareFullCapture(&state, sync: true)
                    _ = complete(&state, prepared) { .success(()) }
                    outcomes.append(.resynced(state.position.txid))
                    return outcomes
                }
                adopt(content, position: state.position, into: &state)
            } else if content.pages.pageCount > 0 {
                let prepared = prepareFullCapture(&state, sync: true)
                _ = complete(&state, prepared) { .success(()) }
                outcomes.append(.snapshotted)
            }
            return outcomes
        }
    }

    /// The newest record of the log that decodes whole; torn ones after it
    /// (a crash while one was written) are removed, and counted.
    private func newestCompleteRecord(_ state: inout State) -> (last: (header: LTXHeader, trailer: LTXTrailer, content: LTXContent)?, torn: Int) {
        guard Self.fileSize(environment.logDirectory(for: path)) != nil, case .success(let log) = ensureLog(&state) else { return (nil, 0) }
        var torn = 0
        while let record = log.newestRecord() {
            do {
                let decoded = try Self.walkLTX(record.content)
                return ((decoded.header, decoded.trailer, record.content), torn)
            } catch {
                logger.warning("removing a torn LTX record", metadata: ["database": "\(path)", "txid": "\(record.maxTXID)", "reason": "\(error)"])
                log.removeNewestRecord()
                torn += 1
            }
        }
        return (nil, torn)
    }

    /// Content of the database file: page checksums and their XOR.
    struct Content {
        var pages = PageTable()
        var checksum = Checksum.emptyDatabase
    }

    private func loadContent(_ state: inout State) -> Content {
        var content = Content()
        guard case .success(let fd) = openReadFD(&state) else { return content }
        var headerBytes = [UInt8](repeating: 0, count: DatabaseHeader.size)
        _ = headerBytes.withUnsafeMutableBytes { Syscall.pread(fd, into: $0, at: 0) }
        guard let header = headerBytes.withUnsafeBytes({ DatabaseHeader($0) }),
            case .success(let st) = Syscall.fstat(fd)
        else { return content }
        content.pages.pageSize = header.pageSize
        content.pages.isWAL = header.isWAL
        content.pages.pageCount = header.hasValidPageCount ? header.pageCountInHeader : UInt32(Int64(st.st_size) / Int64(header.pageSize))
        content.pages.pageChecksums = [Checksum](repeating: .zero, count: Int(content.pages.pageCount))
        let lockPage = PageNumber.lockPage(pageSize: header.pageSize).rawValue
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: header.pageSize, alignment: 16)
        defer { page.deallocate() }
        var pgno: UInt32 = 1
        while pgno <= content.pages.pageCount {
            if pgno != lockPage, case .success = Self.readPage(fd, PageNumber(pgno), into: page) {
                let value = Checksum.page(PageNumber(pgno), UnsafeRawBufferPointer(page))
                content.pages.pageChecksums[Int(pgno - 1)] = value
                content.checksum = content.checksum.replacingPage(old: .zero, new: value)
            }
            pgno += 1
        }
        return content
    }

    /// The freelist pages of the database file, if its freelist parses.
    private func freePages(_ state: inout State, _ content: Content) -> Set<UInt32>? {
        guard case .success(let fd) = openReadFD(&state) else { return nil }
        let pageSize = content.pages.pageSize
        return Freelist.pages(pageSize: pageSize, pageCount: content.pages.pageCount) { pgno in
            var page = [UInt8](repeating: 0, count: pageSize)
            guard case .success(pageSize) = page.withUnsafeMutableBytes({ Self.readPage(fd, PageNumber(pgno), into: $0).map { pageSize } }) else { return nil }
            return page
        }
    }

    /// Records `pages` of the current content as the next transaction, from
    /// the log's position to the content's checksum. The other pages are
    /// assumed equal to the log's (a replica applying the file checks the
    /// result against the post-apply checksum, and takes a snapshot if not).
    private func recordRepair(_ state: inout State, pages: Set<UInt32>, content: Content) -> Result<TXID, Errno> {
        guard case .success(let fd) = openReadFD(&state) else { return .failure(.io) }
        let txid = TXID(state.position.txid.rawValue + 1)
        let header = LTXHeader(
            pageSize: UInt32(content.pages.pageSize), commit: content.pages.pageCount, minTXID: txid, maxTXID: txid,
            timestamp: WallClock.milliseconds(), preApplyChecksum: state.position.checksum, nodeID: environment.nodeID)
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: content.pages.pageSize, alignment: 16)
        defer { page.deallocate() }
        var epoch: Epoch = .unknown
        do {
            var encoder = try LTXEncoder(header: header)
            let lockPage = PageNumber.lockPage(pageSize: content.pages.pageSize).rawValue
            for pgno in pages.sorted() where pgno != lockPage && pgno <= content.pages.pageCount {
                if case .failure(let error) = Self.readPage(fd, PageNumber(pgno), into: page) { return .failure(error) }
                try encoder.append(PageNumber(pgno), page: UnsafeRawBufferPointer(page))
            }
            try encoder.finish(postApplyChecksum: content.checksum)
            guard case .success(let log) = ensureLog(&state), case .success(let value) = recordEpoch(&state, log: log, txid: txid) else { return .failure(.io) }
            epoch = value
            if case .failure(let error) = log.append(encoder.takeBytes(), txid: txid, sync: true) { return .failure(error) }
        } catch {
            logger.error("cannot encode repair transaction", metadata: ["database": "\(path)", "error": "\(error)"])
            return .failure(.io)
        }
        adopt(content, position: Position(txid: txid, checksum: content.checksum, epoch: epoch), into: &state)
        return .success(txid)
    }

    private func adopt(_ content: Content, position: Position, into state: inout State) {
        state.pages = content.pages
        state.position = position
    }

    /// The checksum `content` would have after the pages of one logged file
    /// were written over it and the file cut to the file's commit size;
    /// nil if the file cannot be read.
    private func checksum(afterApplying record: LTXContent, onto content: Content) -> Checksum? {
        var checksums = content.pages.pageChecksums
        var commit: UInt32 = 0
        do {
            _ = try Self.walkLTX(record) { header in
                commit = header.commit
                let pageSize = Int(header.pageSize)
                guard pageSize == content.pages.pageSize || content.pages.pageCount == 0 else { throw Errno.io }
                // Cut or grow to the commit size (grown pages read as zeros).
                if checksums.count > Int(commit) { checksums.removeLast(checksums.count - Int(commit)) }
                let lockPage = PageNumber.lockPage(pageSize: pageSize).rawValue
                let zeros = [UInt8](repeating: 0, count: pageSize)
                while checksums.count < Int(commit) {
                    let pgno = UInt32(checksums.count + 1)
                    checksums.append(pgno == lockPage ? .zero : zeros.withUnsafeBytes { Checksum.page(PageNumber(pgno), $0) })
                }
            } page: { pgno, page in
                guard pgno.rawValue >= 1, pgno.rawValue <= commit else { throw Errno.io }
                checksums[Int(pgno.rawValue - 1)] = Checksum.page(pgno, page)
            }
        } catch {
            return nil
        }
        guard commit > 0 else { return Checksum.emptyDatabase }
        return checksums.reduce(Checksum.emptyDatabase) { $0.replacingPage(old: .zero, new: $1) }
    }

    /// Applies the pages of one logged file to the database file.
    func redo(_ record: LTXContent) -> Result<Void, Errno> {
        let fd: Int32
        switch Syscall.open(at: environment.filesFD, path, flags: O_RDWR | O_CREAT, mode: 0o644) {
        case .success(let value): fd = value
        case .failure(let error): return .failure(error)
        }
        defer { Syscall.close(fd) }
        let decoded: (header: LTXHeader, trailer: LTXTrailer)
        do {
            decoded = try Self.walkLTX(record, page: { pgno, page in
                _ = try Syscall.pwrite(fd, page, at: Int64(pgno.rawValue - 1) * Int64(page.count)).get()
            })
        } catch let error as Errno {
            return .failure(error)
        } catch {
            logger.error("cannot redo transaction", metadata: ["database": "\(path)", "error": "\(error)"])
            return .failure(.io)
        }
        if decoded.header.commit == 0 {
            return Syscall.unlink(at: environment.filesFD, path)
        }
        if case .failure(let error) = Syscall.ftruncate(fd, Int64(decoded.header.commit) * Int64(decoded.header.pageSize)) { return .failure(error) }
        return Syscall.fsync(fd)
    }

    /// Decodes a whole LTX file, checking every checksum. `header` sees the
    /// header first, then `page` each page in order; either may throw to
    /// stop.
    static func walkLTX(
        _ record: LTXContent, header onHeader: (LTXHeader) throws -> Void = { _ in },
        page onPage: (PageNumber, UnsafeRawBufferPointer) throws -> Void = { _, _ in }
    ) throws -> (header: LTXHeader, trailer: LTXTrailer) {
        var decoder = try record.decoder()
        defer { decoder.source.closeIfFile() }
        let header = try decoder.decodeHeader()
        try onHeader(header)
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(header.pageSize), alignment: 16)
        defer { page.deallocate() }
        while let pgno = try decoder.nextPage(into: page) {
            try onPage(pgno, UnsafeRawBufferPointer(page))
        }
        return (header, try decoder.finish())
    }

    static func fileSize(_ path: String) -> Int64? {
        guard case .success(let st) = Syscall.stat(path) else { return nil }
        return Int64(st.st_size)
    }
}
