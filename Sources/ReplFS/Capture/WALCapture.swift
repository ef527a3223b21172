#if canImport(Glibc)
import Glibc
#endif

/// Capture of WAL transactions: what happens when SQLite commits in WAL mode.
///
/// ``WALTracker`` follows SQLite's frames as they are written. The write
/// that completes a commit frame is held: the transaction's pages are read
/// from the WAL (overlaid with the bytes of the held write, which has not
/// reached the file yet), logged as one LTX record, and only then is the
/// write let through (design.md, invariant 2). A crash between the two
/// leaves a record that recovery redoes, never a committed WAL transaction
/// without its record. Writes to the database file in WAL mode are
/// checkpoints and change nothing logical.
extension Database {
    /// Handles a write to `NAME-wal`. When it completes a commit frame, the
    /// transaction is logged first and the write reaches the WAL after, so a
    /// crash in between leaves a log that recovery can redo (never a
    /// committed WAL transaction without its LTX file).
    func walWrite(
        _ buffer: UnsafeRawBufferPointer, at offset: Int64, walFD: Int32, perform: () -> Result<Int, Errno>
    ) -> Result<Int, FileSystemError> {
        capturing { state in
            if state.walWrittenByOtherProgram || !state.wal.isSQLiteShaped(offset: offset, count: buffer.count, pageSize: state.pages.pageSize) {
                if !state.walWrittenByOtherProgram {
                    state.walWrittenByOtherProgram = true
                    state.wal.reset()
                    logger.info(
                        "a program other than SQLite is writing the WAL; what it holds is captured when the program syncs or closes it",
                        metadata: ["database": "\(path)", "offset": "\(offset)", "bytes": "\(buffer.count)"])
                }
                return perform().mapError(FileSystemError.system)
            }
            guard let commit = state.wal.observe(buffer, at: offset) else { return perform().mapError(FileSystemError.system) }
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
    func walSync(perform: () -> Result<Void, Errno>) -> Result<Void, FileSystemError> {
        let captured: Result<Void, FileSystemError> = capturing { state in
            state.walSyncsCommits = state.walCommittedSinceSync
            state.walCommittedSinceSync = false
            return state.walWrittenByOtherProgram ? captureWAL(&state, sync: true) : .success(())
        }
        if case .failure(let error) = captured { return .failure(error) }
        return flushingLog(perform: perform)
    }

    func prepareWALCommit(
        _ state: inout State, _ commit: WALTracker.Commit, buffer: UnsafeRawBufferPointer, at offset: Int64, walFD: Int32
    ) -> Result<Prepared?, FileSystemError> {
        // The last frame for each page wins.
        var frameOfPage: [PageNumber: Int] = [:]
        frameOfPage.reserveCapacity(commit.pageNumbers.count)
        for (i, pgno) in commit.pageNumbers.enumerated() {
            frameOfPage[pgno] = commit.frames.lowerBound + i
        }
        let pageSize = commit.pageSize
        let frameSize = Int64(WALFrameHeader.size + pageSize)
        let firstFrameOffset = Int64(WALHeader.size)
        // A first capture needs the whole logical content: the database file
        // overlaid with every committed frame before this transaction.
        var earlier: [PageNumber: Int] = [:]
        let allPages = state.position.txid.rawValue == 0 || state.pages.pageSize != pageSize || !commit.isComplete
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
                    let n: Int
                    switch Syscall.pread(walFD, into: page, at: dataOffset) {
                    case .success(let count): n = count
                    case .failure(let error): return .failure(.notLogged("cannot read page \(pgno) of the WAL back", cause: error))
                    }
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
            return Self.readPageBack(fd, pgno, into: page)
        }
    }

    /// Page → last frame index among the valid frames 1...`last` of the WAL.
    func scanCommittedFrames(walFD: Int32, through last: Int, pageSize: Int, salt1: UInt32, salt2: UInt32) -> [PageNumber: Int] {
        var result: [PageNumber: Int] = [:]
        guard last >= 1 else { return result }
        var header = [UInt8](repeating: 0, count: WALFrameHeader.size)
        let frameSize = Int64(WALFrameHeader.size + pageSize)
        for index in 1...last {
            let offset = Int64(WALHeader.size) + Int64(index - 1) * frameSize
            let read = header.withUnsafeMutableBytes { Syscall.pread(walFD, into: $0, at: offset) }
            guard case .success(WALFrameHeader.size) = read else { break }
            let frame = header.withUnsafeBytes { WALFrameHeader($0) }
            guard frame.salt1 == salt1, frame.salt2 == salt2 else { break }
            result[PageNumber(frame.pageNumber)] = index
        }
        return result
    }
}
