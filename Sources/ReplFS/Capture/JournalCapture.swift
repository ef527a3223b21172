#if canImport(Glibc)
import Glibc
#endif

/// Capture of rollback-journal transactions (journal_mode DELETE,
/// TRUNCATE, PERSIST): what happens when SQLite commits through a journal.
///
/// Writing the journal's header magic opens a transaction; from then on the
/// database file's writes are remembered as dirty ranges. Invalidating the
/// header (PERSIST zeroes it), truncating the journal to zero (TRUNCATE) or
/// deleting it (DELETE) is SQLite's commit point: the pages the dirty
/// ranges cover are read back from the database file, the transaction is
/// logged (``Database/prepare(_:pageSize:commitSize:candidates:allPages:sync:expectSync:read:)``),
/// and only then does the operation reach the journal (design.md,
/// invariant 2).
extension Database {
    /// A write reached the database file at `offset`.
    func mainFileWritten(offset: Int64, count: Int) {
        state.withLock { state in
            if state.journalActive {
                state.dirty.insert(offset: offset, count: count)
            } else if !state.pages.isWAL {
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
            if !state.journalActive && !state.pages.isWAL {
                state.unjournaledWrites = true
            }
        }
    }

    /// Handles a write to `NAME-journal`. The journal becomes live when its
    /// header magic is written; overwriting a live header with anything else
    /// (PERSIST mode zeroes it) is the commit point.
    func journalWrite(_ buffer: UnsafeRawBufferPointer, at offset: Int64, perform: () -> Result<Int, Errno>) -> Result<Int, FileSystemError> {
        guard offset == 0 else { return perform().mapError(FileSystemError.system) }
        return capturing { state in
            if JournalHeader.hasMagic(buffer) {
                if !state.journalActive {
                    if state.unjournaledWrites, case .failure(let error) = captureUnjournaled(&state, sync: false) {
                        return .failure(error)
                    }
                    beginJournalTransaction(&state)
                }
                return perform().mapError(FileSystemError.system)
            }
            guard state.journalActive else { return perform().mapError(FileSystemError.system) }
            return commitJournalTransaction(&state, perform: perform)
        }
    }

    /// Handles truncation of `NAME-journal`; to zero length it is the commit
    /// point of TRUNCATE mode.
    func journalTruncate(to size: Int64, perform: () -> Result<Void, Errno>) -> Result<Void, FileSystemError> {
        capturing { state in
            guard size == 0, state.journalActive else { return perform().mapError(FileSystemError.system) }
            return commitJournalTransaction(&state, perform: perform)
        }
    }

    /// Handles deletion of `NAME-journal`: the commit point of DELETE mode.
    func journalUnlink(perform: () -> Result<Void, Errno>) -> Result<Void, FileSystemError> {
        capturing { state in
            guard state.journalActive else { return perform().mapError(FileSystemError.system) }
            return commitJournalTransaction(&state, perform: perform)
        }
    }

    func beginJournalTransaction(_ state: inout State) {
        state.journalActive = true
        state.dirty.removeAll()
        state.unjournaledWrites = false
    }

    /// Logs the transaction the live journal covers, then lets `perform`
    /// invalidate the journal (SQLite's commit point).
    func commitJournalTransaction<T>(_ state: inout State, perform: () -> Result<T, Errno>) -> Result<T, FileSystemError> {
        let prepared = prepareFromDatabaseFile(&state, sync: false)
        let result = complete(&state, prepared, perform: perform)
        if case .success = result {
            state.journalActive = false
            state.dirty.removeAll()
            }
        return result
    }

    /// Prepares the database file's current content as a transaction: the
    /// pages written since the last capture, plus growth and truncation.
    func prepareFromDatabaseFile(_ state: inout State, sync: Bool) -> Result<Prepared?, FileSystemError> {
        let fd: Int32
        switch openReadFD(&state) {
        case .success(let value): fd = value
        case .failure(let error):
            return error == .noEntry ? .success(nil) : .failure(.notLogged("cannot open the database file to read it back", cause: error))
        }
        var headerBytes = [UInt8](repeating: 0, count: DatabaseHeader.size)
        let count: Int
        switch headerBytes.withUnsafeMutableBytes({ Syscall.pread(fd, into: $0, at: 0) }) {
        case .success(let value): count = value
        case .failure(let error): return .failure(.notLogged("cannot read the database header back", cause: error))
        }
        let fileSize: Int64
        switch Syscall.fstat(fd) {
        case .success(let st): fileSize = Int64(st.st_size)
        case .failure(let error): return .failure(.notLogged("cannot stat the database file", cause: error))
        }
        guard count == DatabaseHeader.size, let header = headerBytes.withUnsafeBytes({ DatabaseHeader($0) }) else {
            // Not (or no longer) a database: a rolled-back creation leaves an empty file.
            guard state.pages.exists && fileSize == 0 else { return .success(nil) }
            return prepare(&state, pageSize: state.pages.pageSize, commitSize: 0, candidates: [], allPages: false, sync: sync) { _, _ in .success(()) }
        }
        let pageSize = header.pageSize
        let commitSize = header.hasValidPageCount ? header.pageCountInHeader : UInt32(fileSize / Int64(pageSize))
        let candidates = state.dirty.pageNumbers(pageSize: pageSize)
        return prepare(&state, pageSize: pageSize, commitSize: commitSize, candidates: candidates, allPages: false, sync: sync) { pgno, buffer in
            Self.readPageBack(fd, pgno, into: buffer)
        }
    }
}
