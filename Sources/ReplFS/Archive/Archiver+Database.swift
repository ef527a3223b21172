#if canImport(Glibc)
import Glibc
#endif
import Logging

/// Level 0 and snapshots: bringing one database's archive up to date.
extension Archiver {
    /// A group of transactions merged into one level-0 file holds at most
    /// this many bytes of LTX (the merge keeps its pages in memory).
    static let groupLimit: Int64 = 8 << 20
    static let groupCount = 4096
    /// The archive may hold a private key and the databases' content: it
    /// is the owner's alone.
    static let fileMode: mode_t = 0o600
    static let directoryMode: mode_t = 0o700

    func positions(_ database: String) -> ArchivePositions {
        ArchivePositions(path: archive.positionsPath(database))
    }

    /// Where the archive of `database` stands (nil: there is none yet):
    /// the newest TXID its levels 0-8 reach (a snapshot's, if there are
    /// none: a scheduled snapshot ahead of level 0 must not make level 0
    /// skip the transactions in between) and, from ``ArchivePositions``,
    /// the checksum there (zero when none is recorded: the log then cannot
    /// confirm the archive's history, and a snapshot starts it again).
    ///
    /// Files that end beyond that point (a snapshot a lost primary took
    /// ahead of its level 0, or its level-0 files) stay only if this
    /// node's log confirms their end as its own history; the others are
    /// moved aside, or a restore would start from them and apply this
    /// node's transactions on top of another history's. Temporary files a
    /// crash left behind (a minute old) go.
    func readArchivedPosition(_ database: String, current: Position) throws(ArchiveError) -> Position? {
        removeStaleTemporaries(database)
        newestFile[database] = nil
        let recorded = positions(database).read()
        func checksum(at txid: TXID) -> Checksum { recorded.last { $0.txid == txid }?.checksum ?? .zero }
        func confirmed(_ file: BackupArchive.File) -> Bool {
            guard file.maxTXID <= current.txid else { return false }
            switch store.catchUp(database: database, from: Position(txid: file.maxTXID, checksum: checksum(at: file.maxTXID))) {
            case .records, .upToDate: return true
            case .snapshot: return false
            }
        }
        var files = archive.files(of: database)
        while true {
            let levels = files.filter { $0.level < BackupArchive.snapshotLevel }
            guard let newest = (levels.isEmpty ? files : levels).max(by: { $0.maxTXID < $1.maxTXID }) else { return nil }
            let foreign = files.filter { $0.maxTXID > newest.maxTXID && !confirmed($0) }
            try moveAside(database, foreign)
            files.removeAll { foreign.contains($0) }
            // With only snapshots, the one continued from must be this
            // node's too.
            if levels.isEmpty && !confirmed(newest) {
                try moveAside(database, [newest])
                files.removeAll { $0 == newest }
                continue
            }
            newestFile[database] = newest.path
            return Position(txid: newest.maxTXID, checksum: checksum(at: newest.maxTXID))
        }
    }

    /// Whether the newest file this node archived (or found) is still
    /// there: an archive wiped or replaced under it is read again.
    func archiveStillHolds(_ database: String) -> Bool {
        guard let path = newestFile[database] else { return true }
        if case .success = Syscall.lstat(at: AT_FDCWD, path) { return true }
        return false
    }

    private func removeStaleTemporaries(_ database: String) {
        let cutoff = WallClock.milliseconds() / 1000 - 60
        for level in BackupArchive.levels {
            let directory = archive.levelDirectory(database, level: level)
            guard case .success(let names) = Syscall.listDirectory(directory) else { continue }
            for name in names where DurableFile.isTemporary(name) {
                if case .success(let info) = Syscall.lstat(at: AT_FDCWD, directory + "/" + name), Int64(info.st_mtim.tv_sec) < cutoff {
                    _ = Syscall.unlink(at: AT_FDCWD, directory + "/" + name)
                }
            }
        }
    }

    func archiveDatabase(_ database: String, current: Position) throws(ArchiveError) {
        guard current.txid.rawValue > 0 else { return }
        if !read.contains(database) {
            archived[database] = try readArchivedPosition(database, current: current)
            read.insert(database)
        }
        guard let position = archived[database] else {
            logger.notice("backup: a new archive of this database starts with a snapshot", metadata: ["database": "\(database)"])
            return try writeSnapshot(database, advancing: true)
        }
        if position == Position(txid: current.txid, checksum: current.checksum) { return }
        switch store.catchUp(database: database, from: position) {
        case .upToDate:
            return
        case .records(let run, let rebase):
            var group: [LTXContent] = []
            var size: Int64 = 0
            var groupStart: Int64 = 0
            var first = true
            while store.isWritable, var content = run.next() {
                if first, let rebase {
                    // The archive stops inside one of this node's merged
                    // records (received as a replica): from right after it.
                    guard let bytes = content.rebased(from: rebase) else { throw ArchiveError("cannot read the LTX log of \(database)") }
                    content = .bytes(bytes)
                }
                first = false
                let contentSize = content.byteCount
                // Catching up after an outage, a level-0 file spans about
                // a level-0 interval of commits (not the whole backlog), so
                // the moments stay restorable one by one.
                let time = (try? content.header().timestamp) ?? 0
                let backlog = time - groupStart > 2 * settings.levelZeroInterval.milliseconds
                if !group.isEmpty && (size + contentSize > Self.groupLimit || group.count >= Self.groupCount || backlog) {
                    try writeLevelZero(database, group)
                    group = []
                    size = 0
                }
                if group.isEmpty { groupStart = time }
                group.append(content)
                size += contentSize
            }
            if !group.isEmpty { try writeLevelZero(database, group) }
        case .snapshot:
            // Files beyond this node's position are of a history it does
            // not have. Those at or below it stay (a state that existed,
            // this node's or a lost primary's); compaction never merges
            // across the snapshot that now restarts the archive.
            if position.txid > current.txid { try moveAside(database, archive.files(of: database).filter { $0.maxTXID > current.txid }) }
            logger.notice(
                "backup: the log no longer holds what the archive lacks, or its history is not this node's: continuing from a new snapshot",
                metadata: ["database": "\(database)", "archived": "\(position.txid)", "position": "\(current)"])
            try writeSnapshot(database, advancing: true)
        }
    }

    /// One level-0 file for consecutive transactions; its end position is
    /// recorded before the file is renamed into place.
    private func writeLevelZero(_ database: String, _ group: [LTXContent]) throws(ArchiveError) {
        let first: LTXHeader
        let last: LTXHeader
        do throws(LTXError) {
            first = try group[0].header()
            last = try group[group.count - 1].header()
        } catch {
            throw ArchiveError("cannot read the LTX log of \(database)", error)
        }
        let name = LTXFileName(minTXID: first.minTXID, maxTXID: last.maxTXID)
        let file = try makeFile(archive.path(database, level: 0, name))
        guard let written = try ArchiveFileEncoder.merge(group, into: file) else {
            // More pages than a merge holds in memory: in halves.
            file.abandon()
            let half = group.count / 2
            try writeLevelZero(database, Array(group[..<half]))
            return try writeLevelZero(database, Array(group[half...]))
        }
        try commit(file, database: database, end: Position(txid: name.maxTXID, checksum: written.postApply), timestamp: written.header.timestamp)
        noteArchived(database, Position(txid: name.maxTXID, checksum: written.postApply), timestamp: written.header.timestamp)
        levelZeroDue = Int64(MonotonicClock.nanoseconds() / 1_000_000) + settings.levelZeroInterval.milliseconds
    }

    /// A snapshot (level 9) of the database as it is now. `advancing`: the
    /// archive continues from it (it starts there, or lost its way).
    func writeSnapshot(_ database: String, advancing: Bool) throws(ArchiveError) {
        let snapshot: DatabaseSnapshot
        switch store.snapshot(database: database) {
        case .success(let value): snapshot = value
        case .failure(.noEntry): return
        case .failure(let error): throw ArchiveError("cannot copy \(database) for a snapshot", path: store.temporaryDirectory, error)
        }
        defer { _ = Syscall.unlink(at: AT_FDCWD, snapshot.path) }
        guard snapshot.position.txid.rawValue > 0 else { return }
        // A moment at which the database was at this position (taken
        // after the copy, never before).
        let timestamp = WallClock.milliseconds()
        let name = LTXFileName(minTXID: TXID(1), maxTXID: snapshot.position.txid)
        let file = try makeFile(archive.path(database, level: BackupArchive.snapshotLevel, name))
        var failure: Errno?
        let encoded = snapshot.encode(flags: .noChecksum, pageEncoding: .lz4Frame, timestamp: timestamp, chunk: ArchiveFileEncoder.chunk, continuing: { store.isWritable }) { bytes, _ in
            do throws(Errno) {
                try file.append(bytes)
                return true
            } catch {
                failure = error
                return false
            }
        }
        guard encoded else { throw ArchiveError("cannot write a snapshot", path: file.path, failure ?? .io) }
        try commit(file, database: database, end: snapshot.position, timestamp: timestamp)
        logger.info("backup: snapshot written", metadata: ["database": "\(database)", "position": "\(snapshot.position)", "pages": "\(snapshot.pageCount)"])
        if advancing { noteArchived(database, snapshot.position, timestamp: timestamp) }
    }

    /// A file to write in the archive, its directory made if needed (under
    /// an existing `backup.path` only: a target that is not mounted is not
    /// written in its mount point's place).
    func makeFile(_ path: String) throws(ArchiveError) -> DurableFile {
        let directory = String(path[..<path.lastIndex(of: "/")!])
        try checkTarget()
        if case .failure(let error) = DurableFile.makeDirectories(directory, mode: Self.directoryMode) { throw ArchiveError("cannot create", path: directory, error) }
        do throws(Errno) {
            return try DurableFile(path: path, mode: Self.fileMode)
        } catch {
            throw ArchiveError("cannot create", path: path, error)
        }
    }

    /// Syncs a written file, records the position it leads to, then, if
    /// this node is still the writable primary (checked last, right before
    /// the rename), renames it into place.
    func commit(_ file: DurableFile, database: String, end: Position?, timestamp: Int64) throws(ArchiveError) {
        do throws(Errno) {
            try file.sync(timestamp: timestamp)
        } catch {
            throw ArchiveError("cannot write", path: file.path, error)
        }
        let metadata = archive.replicaDirectory(database) + "/" + BackupArchive.metadataName
        if end != nil, case .failure(let error) = DurableFile.makeDirectories(metadata, mode: Self.directoryMode) {
            throw ArchiveError("cannot create", path: metadata, error)
        }
        if let end, case .failure(let error) = positions(database).append([ArchivePositions.Entry(txid: end.txid, checksum: end.checksum, timestamp: timestamp)]) {
            throw ArchiveError("cannot record the archived position", path: archive.positionsPath(database), error)
        }
        try checkStillPrimary()
        do throws(Errno) {
            // Never over a file of that name: the same range written by
            // another node stays as it landed (a snapshot of the same
            // position, rewritten, may replace its older copy).
            try file.publish(replacing: file.path.contains("/ltx/\(BackupArchive.snapshotLevel)/"))
        } catch {
            throw ArchiveError("cannot write", path: file.path, error)
        }
        newestFile[database] = file.path
    }

    /// Files of a history this node does not have (a primary lost before
    /// they reached it) move to `.replfs/aside/<time>/`, kept, out of
    /// Litestream's sight, before this node's history continues the
    /// archive.
    private func moveAside(_ database: String, _ files: [BackupArchive.File]) throws(ArchiveError) {
        guard !files.isEmpty else { return }
        let destination = archive.asideDirectory(database) + "/\(WallClock.milliseconds())"
        if case .failure(let error) = DurableFile.makeDirectories(destination, mode: Self.directoryMode) { throw ArchiveError("cannot create", path: destination, error) }
        try checkStillPrimary()
        for file in files {
            let target = destination + "/\(file.level)-\(file.name)"
            if case .failure(let error) = Syscall.rename(at: AT_FDCWD, file.path, to: target) { throw ArchiveError("cannot move aside", path: file.path, error) }
        }
        do throws(Errno) {
            try DurableFile.syncDirectory(of: files[0].path)
            try DurableFile.syncDirectory(of: destination + "/x")
        } catch {
            throw ArchiveError("cannot sync", path: destination, error)
        }
        newestFile[database] = nil
        logger.warning(
            "backup: the archive holds transactions this node does not (a primary lost before they were replicated): moved them aside",
            metadata: ["database": "\(database)", "files": "\(files.map { "L\($0.level) \($0.name)" }.joined(separator: ", "))", "to": "\(destination)"])
    }
}

extension LTXContent {
    /// The size of the encoded file.
    var byteCount: Int64 {
        switch self {
        case .bytes(let bytes): return Int64(bytes.count)
        case .file(let path):
            guard case .success(let info) = Syscall.stat(path) else { return 0 }
            return Int64(info.st_size)
        }
    }
}
