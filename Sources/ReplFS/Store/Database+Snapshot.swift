#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A consistent copy of a database at a known position, in a file.
public struct DatabaseSnapshot: Sendable {
    public var database: String
    public var position: Position
    public var pageSize: Int
    public var pageCount: UInt32
    /// A database file with exactly the pages of `position`.
    public var path: String
}

extension Database {
    /// Copies the committed content into `path` without holding the
    /// database's lock for the copy.
    ///
    /// Pages are copied lock-free (a page read while a commit or checkpoint
    /// moves it may be torn or stale), each with its checksum. Then, under the
    /// lock, every page whose copy does not match the checksum the database
    /// holds for it now is read again, and the size is cut to the current
    /// one: the copy is then exactly the current position (its checksum is
    /// verified). Commits wait only for that second, short pass.
    func snapshot(into path: String) -> Result<DatabaseSnapshot, Errno> {
        guard case .success(let out) = Syscall.open(at: AT_FDCWD, path, flags: O_RDWR | O_CREAT | O_TRUNC, mode: 0o644) else {
            return .failure(.io)
        }
        defer { Syscall.close(out) }

        // First pass, lock-free.
        let plan = waitForQuietState { state -> (Int, UInt32, [PageNumber: Int], (UInt32, UInt32)?) in
            (state.pages.pageSize, state.pages.pageCount, state.wal.committedPages, state.wal.header.map { ($0.salt1, $0.salt2) })
        }
        guard plan.0 > 0 else { return .failure(.noEntry) }
        var pageSize = plan.0
        var copied: [Checksum] = []
        copied.reserveCapacity(Int(plan.1))
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
        defer { page.deallocate() }
        var database = Syscall.open(at: environment.filesFD, self.path, flags: O_RDONLY)
        var wal = Syscall.open(at: environment.filesFD, self.path + "-wal", flags: O_RDONLY)
        func closeFiles() {
            if case .success(let fd) = database { Syscall.close(fd) }
            if case .success(let fd) = wal { Syscall.close(fd) }
        }
        defer { closeFiles() }
        func readLogical(_ pgno: PageNumber, _ frames: [PageNumber: Int], into buffer: UnsafeMutableRawBufferPointer) {
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            if let frame = frames[pgno], case .success(let fd) = wal {
                let offset = Int64(WALHeader.size) + Int64(frame - 1) * Int64(WALFrameHeader.size + buffer.count) + Int64(WALFrameHeader.size)
                _ = Syscall.pread(fd, into: buffer, at: offset)
            } else if case .success(let fd) = database {
                _ = Self.readPage(fd, pgno, into: buffer)
            }
        }
        var lockPage = PageNumber.lockPage(pageSize: pageSize).rawValue
        if plan.1 > 0 {
            let buffer = UnsafeMutableRawBufferPointer(rebasing: page[0..<pageSize])
            for pgno in 1...plan.1 {
                readLogical(PageNumber(pgno), plan.2, into: buffer)
                copied.append(pgno == lockPage ? .zero : Checksum.page(PageNumber(pgno), UnsafeRawBufferPointer(buffer)))
                if case .failure(let error) = Syscall.pwrite(out, UnsafeRawBufferPointer(buffer), at: Int64(pgno - 1) * Int64(pageSize)) {
                    return .failure(error)
                }
            }
        }

        // Second pass, under the lock: fix what moved.
        return waitForQuietState { state -> Result<DatabaseSnapshot, Errno> in
            if state.pages.pageSize != pageSize {
                // VACUUM changed the page size meanwhile: copy again, under the lock.
                pageSize = state.pages.pageSize
                copied = []
                lockPage = PageNumber.lockPage(pageSize: pageSize).rawValue
            }
            let buffer = UnsafeMutableRawBufferPointer(rebasing: page[0..<pageSize])
            let frames = state.wal.committedPages
            // The files may have been replaced (a WAL deleted and created again).
            closeFiles()
            database = Syscall.open(at: environment.filesFD, self.path, flags: O_RDONLY)
            wal = Syscall.open(at: environment.filesFD, self.path + "-wal", flags: O_RDONLY)
            var checksum = Checksum.emptyDatabase
            if state.pages.pageCount > 0 {
                for pgno in 1...state.pages.pageCount where pgno != lockPage {
                    let index = Int(pgno - 1)
                    let expected = state.pages.pageChecksums[index]
                    if index >= copied.count || copied[index] != expected {
                        readLogical(PageNumber(pgno), frames, into: buffer)
                        guard Checksum.page(PageNumber(pgno), UnsafeRawBufferPointer(buffer)) == expected else { return .failure(.io) }
                        if case .failure(let error) = Syscall.pwrite(out, UnsafeRawBufferPointer(buffer), at: Int64(index) * Int64(pageSize)) {
                            return .failure(error)
                        }
                    }
                    checksum = checksum.replacingPage(old: .zero, new: expected)
                }
            }
            guard checksum == state.position.checksum else { return .failure(.io) }
            if case .failure(let error) = Syscall.ftruncate(out, Int64(state.pages.pageCount) * Int64(pageSize)) { return .failure(error) }
            return .success(DatabaseSnapshot(database: self.path, position: state.position, pageSize: pageSize, pageCount: state.pages.pageCount, path: path))
        }
    }

    /// Runs `body` under the lock at a moment no rollback-journal transaction
    /// is half-written in the database file (its pages would not be committed).
    private func waitForQuietState<T>(_ body: (inout State) -> T) -> T {
        while true {
            let result: T? = state.withLock { state in
                state.journalActive || state.unjournaledWrites ? nil : body(&state)
            }
            if let result { return result }
            usleep(1000)
        }
    }
}

extension DatabaseSnapshot {
    /// Encodes the copy as an LTX snapshot file (min TXID 1, every page),
    /// reading one page at a time: `emit` gets the encoded bytes whenever
    /// `chunk` bytes are buffered, and the rest with `last` set. Returns
    /// false if the copy could not be read, or `emit` or `continuing` said
    /// stop. With `.noChecksum` and `.lz4Frame` (an archive's flavour) the
    /// file carries no database checksums and pages every Litestream 0.5
    /// reads.
    public func encode(
        flags: LTXHeader.Flags = [], pageEncoding: LTXEncoder.PageEncoding = .lz4Block, timestamp: Int64, chunk: Int, continuing: () -> Bool = { true },
        emit: ([UInt8], _ last: Bool) -> Bool
    ) -> Bool {
        let header = LTXHeader(
            flags: flags, pageSize: UInt32(pageSize), commit: pageCount, minTXID: TXID(1), maxTXID: position.txid, timestamp: timestamp)
        guard var encoder = try? LTXEncoder(header: header, pageEncoding: pageEncoding), case .success(let fd) = Syscall.open(at: AT_FDCWD, path, flags: O_RDONLY) else {
            return false
        }
        defer { Syscall.close(fd) }
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
        defer { page.deallocate() }
        let lockPage = PageNumber.lockPage(pageSize: pageSize).rawValue
        if pageCount > 0 {
            for pgno in 1...pageCount where pgno != lockPage {
                guard continuing(), case .success = Syscall.pread(fd, into: page, at: Int64(pgno - 1) * Int64(pageSize)),
                    (try? encoder.append(PageNumber(pgno), page: UnsafeRawBufferPointer(page))) != nil
                else { return false }
                if encoder.bufferedByteCount >= chunk, !emit(encoder.takeBytes(), false) { return false }
            }
        }
        let postApply = flags.contains(.noChecksum) ? Checksum.zero : position.checksum
        guard (try? encoder.finish(postApplyChecksum: postApply)) != nil else { return false }
        return emit(encoder.takeBytes(), true)
    }
}
