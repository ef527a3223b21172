#if canImport(Glibc)
import Glibc
#endif

/// The database file's side of replica apply: writing a batch's pages in
/// place, appending them to the WAL under a reader, folding this node's own
/// WAL frames in, and keeping its database aside before a snapshot.
extension Database {
    /// What came of appending a batch to the WAL under a reader.
    enum AppendOutcome {
        case appended
        /// A lock SQLite's connections hold for a moment: try again.
        case busy
        /// The WAL or its index cannot be continued: wait for the readers.
        case unusable
    }

    /// Appends a batch's pages to the WAL as one transaction and publishes
    /// it through the wal-index (``WALIndexAppender``), keeping the tracker
    /// in step as if SQLite had written the frames. Nothing visible changes
    /// unless it returns `.appended`.
    func appendToWAL(_ pages: [PageNumber: [UInt8]], commit: UInt32, pageSize: Int, _ state: inout State, mount: any MountAccess) -> AppendOutcome {
        guard let sharedMemory = mount.openSharedMemory(database: path) else { return .unusable }
        defer { Syscall.close(sharedMemory) }
        guard case .success(let wal) = Syscall.open(at: environment.filesFD, path + "-wal", flags: O_RDWR | O_CREAT, mode: 0o644) else { return .unusable }
        defer { Syscall.close(wal) }
        let frames = pages.filter { $0.key.rawValue <= commit }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
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

    /// Removes an empty `-wal` and the `-shm` left from when the database
    /// was in WAL mode, if there are any. Only with no WAL-mode connection.
    func removeWALFiles(mount: any MountAccess) {
        for suffix in ["-wal", "-shm"] {
            guard case .success(let info) = Syscall.lstat(at: environment.filesFD, path + suffix) else { continue }
            if suffix == "-wal", info.st_size > 0 { continue }  // frames nobody folded: left alone
            _ = Syscall.unlink(at: environment.filesFD, path + suffix)
            mount.invalidateName(path: path + suffix)
        }
    }

    /// Writes the batch's pages into the database file (deleting it for
    /// commit 0): the last version of each page, or a streamed file's pages.
    /// A replica keeps its WAL empty (applied pages go to the main file). A
    /// node that was primary until now may still have committed frames in
    /// its WAL: they are copied into the main file (a checkpoint, done here
    /// because SQLite cannot write through a read-only mount), made durable,
    /// and the WAL is emptied. Readers are held off by the caller.
    func retireWAL(frames: [PageNumber: Int], pageSize: Int) -> Result<Void, Errno> {
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
    func copyFrames(_ frames: [PageNumber: Int], pageSize: Int, into main: Int32) -> Result<Void, Errno> {
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
            if case .failure(let error) = Syscall.pwrite(main, UnsafeRawBufferPointer(page), at: Int64(pgno.fileOffset(pageSize: pageSize))) {
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
        let pageSize = state.pages.pageSize
        let size = Int64(state.pages.pageCount) * Int64(pageSize)
        let frames = state.wal.committedPages
        let copied = Syscall.open(at: AT_FDCWD, destination, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600).flatMap { out in
            defer { Syscall.close(out) }
            return Syscall.open(at: environment.filesFD, path, flags: O_RDONLY).flatMap { source in
                defer { Syscall.close(source) }
                return Syscall.copy(from: source, to: out)
            }
            .flatMap { frames.isEmpty || pageSize == 0 ? .success(()) : copyFrames(frames, pageSize: pageSize, into: out) }
            .flatMap { Syscall.ftruncate(out, size) }
            .flatMap { Syscall.fsync(out) }
        }
        if case .failure = copied { _ = Syscall.unlink(at: AT_FDCWD, destination) }
        return copied
    }

    func writePages(_ pages: [PageNumber: [UInt8]], streamed: (LTXContent, LTXHeader)?, reset: Bool, commit: UInt32, pageSize: Int) -> Result<Void, Errno> {
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
                var decoder = try source.decoder()
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
        for (pgno, bytes) in pages where pgno.rawValue <= commit {
            let result = bytes.withUnsafeBytes { Syscall.pwrite(fd, $0, at: Int64(pgno.fileOffset(pageSize: pageSize))) }
            if case .failure(let error) = result { return .failure(error) }
        }
        return Syscall.ftruncate(fd, Int64(commit) * Int64(pageSize))
    }

    static func fileExists(_ directory: Int32, _ path: String) -> Bool {
        if case .success = Syscall.lstat(at: directory, path) { return true }
        return false
    }
}
