#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Synchronization

/// Why a replicated LTX file was refused. Nothing was changed.
public enum ApplyRefusal: Error, CustomStringConvertible, Sendable {
    /// The file does not follow the database's position.
    case notNext(database: String, position: Position, minTXID: TXID, preApply: Checksum)
    /// The file does not decode or its checksums do not hold.
    case corrupt(database: String, LTXError)
    /// Applying it would not give the post-apply checksum it claims: this
    /// replica's content is not what the primary thinks it is.
    case postApplyMismatch(database: String, expected: Checksum, computed: Checksum)
    case io(database: String, Errno)

    public var description: String {
        switch self {
        case .notNext(let database, let position, let minTXID, let preApply):
            return "\(database): LTX file starting at TXID \(minTXID) (pre-apply \(preApply)) does not follow position \(position)"
        case .corrupt(let database, let error):
            return "\(database): corrupt LTX file: \(error)"
        case .postApplyMismatch(let database, let expected, let computed):
            return "\(database): applying would give checksum \(computed), the file says \(expected)"
        case .io(let database, let errno):
            return "\(database): \(errno)"
        }
    }
}

extension Database {
    /// Applies one LTX file received from the primary (replica).
    ///
    /// The file is decoded and checked in full first (file checksum, that it
    /// follows this database's position, that the result has the post-apply
    /// checksum it claims) and refused with nothing changed otherwise. Then it
    /// is recorded in this node's own log (so a crash before the pages land is
    /// redone at restart), readers are held off with SQLite's own locks, the
    /// pages are written, the kernel's cached pages are dropped and, in WAL
    /// mode, the WAL-index header is rewritten so that readers notice.
    ///
    /// A snapshot (minimum TXID 1) replaces the database whole; if the
    /// replica had a history the primary could not vouch for
    /// (`keepAside`), its database is first copied to `aside` and named in
    /// the log (invariant 6).
    func applyReplicated(
        _ sources: [LTXContent], mount: any MountAccess, aside: (String) -> String?, keepAside: Bool
    ) -> (position: Position?, refusal: ApplyRefusal?) {
        state.withLock { state in
            // Frames this node committed to its WAL as primary (it was demoted
            // since): folded into the main file before the first apply.
            let ownFrames = state.wal.committedPages
            let ownPageSize = state.pageSize
            let startPageCount = state.pageCount
            // Pass 1, file by file: verify, record in this node's log, and move
            // the position (the next file's pre-apply checksum follows it).
            var pages: [UInt32: [UInt8]] = [:]
            var streamed: (LTXContent, LTXHeader)?
            var resetFile = false
            var commit: UInt32 = state.pageCount
            var pageSize = state.pageSize
            var wal = state.isWAL
            var applied = 0
            var refusal: ApplyRefusal?
            // The in-memory files of the batch are recorded as one merged LTX
            // file (first TXID...last TXID): one file for the batch, not one per
            // transaction (the primary's log keeps those).
            var merged: (first: LTXHeader, preApply: Checksum)?
            var mergedLast: LTXHeader?
            var mergedWhole = false
            let existed = state.exists || Self.fileExists(environment.filesFD, path)
            for source in sources {
                switch verify(source, keepAside: keepAside, state: &state) {
                case .failure(let error):
                    refusal = error
                case .success(let verified):
                    if verified.header.isSnapshot, state.exists, keepAside, let copy = aside(path) {
                        logger.warning(
                            "moved this replica's database aside before taking the primary's snapshot",
                            metadata: ["database": "\(path)", "position": "\(state.position)", "aside": "\(copy)"])
                    }
                    if case .file = source, case .failure(let error) = record(source, header: verified.header, in: &state) {
                        refusal = .io(database: path, error)
                        break
                    }
                    if case .bytes = source {
                        if merged == nil {
                            merged = (verified.header, state.position.checksum)
                            if verified.header.isSnapshot || verified.transaction.allPages { mergedWhole = true }
                        }
                        mergedLast = verified.header
                    }
                    apply(verified.transaction, to: &state)
                    if verified.transaction.allPages {
                        pages.removeAll()
                        resetFile = true
                    }
                    if case .file = source {
                        streamed = (source, verified.header)
                    } else {
                        for (pgno, bytes) in verified.pages { pages[pgno] = bytes }
                    }
                    commit = verified.header.commit
                    pageSize = Int(verified.header.pageSize)
                    if let isWAL = verified.transaction.isWAL { wal = isWAL }
                    applied += 1
                }
                if refusal != nil { break }
            }
            guard applied > 0 else { return (nil, refusal) }
            if let merged, let last = mergedLast {
                if case .failure(let error) = recordMerged(first: merged.first, preApply: merged.preApply, last: last, whole: mergedWhole, pages: pages, in: &state) {
                    logger.error("cannot record replicated transactions", metadata: ["database": "\(path)", "error": "\(error)"])
                    return (nil, .io(database: path, error))
                }
            }

            // Pass 2, once for the batch: readers held off, pages written.
            let gate = mount.excludeReaders(database: path, walMode: wal || state.isWAL)
            defer { gate.release() }
            if case .failure(let error) = retireWAL(frames: resetFile ? [:] : ownFrames, pageSize: ownPageSize) {
                logger.error("cannot fold this node's WAL into the database", metadata: ["database": "\(path)", "error": "\(error)"])
                return (nil, .io(database: path, error))
            }
            state.wal.reset()
            let written = writePages(pages, streamed: streamed, reset: resetFile, commit: commit, pageSize: pageSize)
            closeReadFD(&state)
            if case .failure(let error) = written {
                logger.error("cannot write replicated pages", metadata: ["database": "\(path)", "error": "\(error)"])
                return (nil, .io(database: path, error))
            }
            if state.isWAL {
                // Readers of a WAL database need a -wal to open; here it stays empty.
                if case .success(let fd) = Syscall.open(at: environment.filesFD, path + "-wal", flags: O_WRONLY | O_CREAT, mode: 0o644) {
                    Syscall.close(fd)
                }
                gate.resetWALIndex(pageSize: state.pageSize, pageCount: state.pageCount)
            }
            if commit == 0 || !existed {
                mount.invalidateName(path: path)
            }
            // Readers keep the kernel's cached pages of everything the batch
            // did not change.
            let wholeFile = resetFile || streamed != nil || !ownFrames.isEmpty || pageSize != ownPageSize || !existed
            mount.invalidateContent(
                path: path,
                wholeFile ? .wholeFile : .pages(pages.keys, pageSize: pageSize, oldPageCount: startPageCount, newPageCount: commit))
            adoptPrimaryEpochs(&state)
            return (state.position, refusal)
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
    private func verify(_ source: LTXContent, keepAside: Bool, state: inout State) -> Result<Verified, ApplyRefusal> {
        do {
            var decoder = try Self.decoder(for: source)
            defer { decoder.source.closeIfFile() }
            let header = try decoder.decodeHeader()
            let pageSize = Int(header.pageSize)
            let wholeImage = header.isSnapshot || (header.commit > 0 && pageSize != state.pageSize) || state.pageChecksums.count != Int(state.pageCount)
            if header.isSnapshot {
                // A snapshot never takes a database back in time, unless the
                // primary found its history diverged (then a copy is kept).
                guard keepAside || header.maxTXID >= state.position.txid else {
                    return .failure(.notNext(database: path, position: state.position, minTXID: header.minTXID, preApply: header.preApplyChecksum))
                }
            } else {
                guard header.minTXID.rawValue == state.position.txid.rawValue + 1, !header.tracksChecksums || header.preApplyChecksum == state.position.checksum else {
                    return .failure(.notNext(database: path, position: state.position, minTXID: header.minTXID, preApply: header.preApplyChecksum))
                }
            }
            var checksum = wholeImage ? Checksum.emptyDatabase : state.position.checksum
            if !wholeImage && header.commit < state.pageCount {
                for pgno in (header.commit + 1)...state.pageCount {
                    checksum = checksum.replacingPage(old: state.pageChecksums[Int(pgno - 1)], new: .zero)
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
                let old: Checksum = (!wholeImage && pgno.rawValue <= state.pageCount) ? state.pageChecksums[Int(pgno.rawValue - 1)] : .zero
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

    /// Records a batch of in-memory files as one LTX file covering them all:
    /// the last version of each page, the first file's pre-apply checksum,
    /// the position reached after the last.
    private func recordMerged(
        first: LTXHeader, preApply: Checksum, last: LTXHeader, whole: Bool, pages: [UInt32: [UInt8]], in state: inout State
    ) -> Result<Void, Errno> {
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
            try encoder.finish(postApplyChecksum: state.position.checksum)
            return log.append(encoder.takeBytes(), minTXID: minTXID, txid: last.maxTXID, sync: false)
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
            let wal: Int32
            switch Syscall.open(at: environment.filesFD, walPath, flags: O_RDONLY) {
            case .success(let value): wal = value
            case .failure(let error): return .failure(error)
            }
            defer { Syscall.close(wal) }
            let main: Int32
            switch Syscall.open(at: environment.filesFD, path, flags: O_RDWR) {
            case .success(let value): main = value
            case .failure(let error): return .failure(error)
            }
            defer { Syscall.close(main) }
            let page = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
            defer { page.deallocate() }
            for (pgno, frame) in frames.sorted(by: { $0.key < $1.key }) {
                let offset = Int64(WALHeader.size) + Int64(frame - 1) * Int64(WALFrameHeader.size + pageSize) + Int64(WALFrameHeader.size)
                guard case .success(pageSize) = Syscall.pread(wal, into: page, at: offset) else { return .failure(.io) }
                if case .failure(let error) = Syscall.pwrite(main, UnsafeRawBufferPointer(page), at: Int64(pgno - 1) * Int64(pageSize)) {
                    return .failure(error)
                }
            }
            if case .failure(let error) = Syscall.fsync(main) { return .failure(error) }
            logger.notice("folded this node's WAL into the database before following the primary", metadata: ["database": "\(path)", "pages": "\(frames.count)"])
        }
        return Syscall.open(at: environment.filesFD, walPath, flags: O_WRONLY).flatMap { fd in
            defer { Syscall.close(fd) }
            return Syscall.ftruncate(fd, 0)
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
