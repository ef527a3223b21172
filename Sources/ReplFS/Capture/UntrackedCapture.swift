#if canImport(Glibc)
import Glibc
#endif

/// Capture of content SQLite did not commit through a journal or a WAL it
/// wrote itself: journal_mode OFF or MEMORY, a database or WAL copied in
/// or renamed into place (rsync, a restore), a deletion.
///
/// Nothing marks a commit point, so what the files hold is captured at the
/// next sync or close (or at once for a rename or an unlink) as one
/// transaction, with every page when the file was replaced. What SQLite
/// would read is what is logged: the database file overlaid with a valid
/// WAL beside it.
extension Database {
    /// SQLite synced the database file (or closed it): the moment to capture
    /// writes that no journal covers.
    func mainFileSynced(closing: Bool) -> Result<Void, FileSystemError> {
        capturing { state in
            if state.journalActive { return .success(()) }
            guard state.unjournaledWrites else { return .success(()) }
            return captureUnjournaled(&state, sync: false).flatMap { captureBesideWAL(&state, sync: false) }
        }
    }

    /// Captures database-file writes no journal covered.
    func captureUnjournaled(_ state: inout State, sync: Bool) -> Result<Void, FileSystemError> {
        let prepared = prepareFromDatabaseFile(&state, sync: sync)
        let result = complete(&state, prepared) { .success(()) }
        if case .success = result {
            state.dirty.removeAll()
            state.unjournaledWrites = false
        }
        return result
    }

    /// A descriptor of the WAL was closed: what another program wrote to it
    /// is captured now.
    func walClosed() -> Result<Void, FileSystemError> {
        capturing { state in
            state.walWrittenByOtherProgram ? captureWAL(&state, sync: true) : .success(())
        }
    }

    /// A file was renamed into place as the WAL (rsync, a restore): what it
    /// holds is captured.
    func walReplaced() -> Result<Void, FileSystemError> {
        capturing { state in captureWAL(&state, sync: true) }
    }

    /// Records the content SQLite will see through a WAL that it did not
    /// write itself: the database file overlaid with the WAL's committed
    /// frames (validated as SQLite's recovery does, ``WALScanner``), as one
    /// transaction with every page, if it differs from the position. Then
    /// the tracker continues from the WAL's last commit, as SQLite will.
    func captureWAL(_ state: inout State, sync: Bool) -> Result<Void, FileSystemError> {
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
                switch Syscall.pread(walFD, into: page, at: committed.header.frameOffset(frame) + Int64(WALFrameHeader.size)) {
                case .success(pageSize): return .success(())
                case .success(let count): return .failure(.notLogged("page \(pgno) of the WAL is short (\(count) bytes) when read back"))
                case .failure(let error): return .failure(.notLogged("cannot read page \(pgno) of the WAL back", cause: error))
                }
            }
            guard case .success(let fd) = dbFD else {
                page.initializeMemory(as: UInt8.self, repeating: 0)
                return .success(())
            }
            return Self.readPageBack(fd, pgno, into: page)
        }
        let result = complete(&state, prepared) { .success(()) }
        if case .success = result {
            state.wal.adopt(committed)
            logger.notice(
                "captured a WAL written by another program", metadata: ["database": "\(path)", "frames": "\(committed.lastCommit)", "txid": "\(state.position.txid)"])
        }
        return result
    }

    /// After a database file written by another program is captured: if it
    /// is in WAL mode and a WAL with frames lies beside it (copied in first,
    /// or renamed into place), SQLite will read both, so both are captured.
    func captureBesideWAL(_ state: inout State, sync: Bool) -> Result<Void, FileSystemError> {
        guard state.pages.isWAL, case .success(let wal) = Syscall.lstat(at: environment.filesFD, path + "-wal"), wal.st_size > WALHeader.size else {
            return .success(())
        }
        return captureWAL(&state, sync: sync)
    }

    /// Prepares the database file's whole content (deletion if it is gone
    /// or not a database) as one transaction.
    func prepareFullCapture(_ state: inout State, sync: Bool) -> Result<Prepared?, FileSystemError> {
        func deletion() -> Result<Prepared?, FileSystemError> {
            guard state.pages.exists else { return .success(nil) }
            return prepare(&state, pageSize: state.pages.pageSize, commitSize: 0, candidates: [], allPages: true, sync: sync) { _, _ in .success(()) }
        }
        guard case .success(let fd) = openReadFD(&state) else { return deletion() }
        var headerBytes = [UInt8](repeating: 0, count: DatabaseHeader.size)
        _ = headerBytes.withUnsafeMutableBytes { Syscall.pread(fd, into: $0, at: 0) }
        guard let header = headerBytes.withUnsafeBytes({ DatabaseHeader($0) }) else { return deletion() }
        let size: Int64
        switch Syscall.fstat(fd) {
        case .success(let st): size = Int64(st.st_size)
        case .failure(let error): return .failure(.notLogged("cannot stat the database file", cause: error))
        }
        let pageSize = header.pageSize
        let commitSize = header.hasValidPageCount ? header.pageCountInHeader : UInt32(size / Int64(pageSize))
        return prepare(&state, pageSize: pageSize, commitSize: commitSize, candidates: [], allPages: true, sync: sync) { pgno, page in
            Self.readPageBack(fd, pgno, into: page)
        }
    }

    /// The database file is being deleted: logged as an LTX file with
    /// `commit = 0` (upstream's deletion marker) before it goes.
    func drop(perform: () -> Result<Void, Errno>) -> Result<Void, FileSystemError> {
        capturing { state in
            let prepared: Result<Prepared?, FileSystemError> =
                state.pages.exists
                ? prepare(&state, pageSize: state.pages.pageSize, commitSize: 0, candidates: [], allPages: false, sync: true) { _, _ in .success(()) }
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
    func contentReplaced() -> Result<Void, FileSystemError> {
        capturing { state in
            closeReadFD(&state)
            state.journalActive = false
            state.wal.reset()
            state.dirty.removeAll()
            state.unjournaledWrites = false
            let prepared = prepareFullCapture(&state, sync: true)
            return complete(&state, prepared) { .success(()) }.flatMap { captureBesideWAL(&state, sync: true) }
        }
    }
}
