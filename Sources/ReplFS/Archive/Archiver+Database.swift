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

    func positions(_ database: String) -> ArchivePositions {
        ArchivePositions(path: archive.positionsPath(database))
    }

    /// Where the archive of each database this node holds stands: its
    /// newest TXID and, from ``ArchivePositions``, the checksum there (zero
    /// when none is recorded: the log then cannot confirm the archive's
    /// history, and a snapshot starts it again).
    func readArchivedPositions() throws(ArchiveError) -> [String: Position] {
        guard Syscall.isDirectory(archive.root) else {
            throw ArchiveError("backup.path \(archive.root) is not a directory (not mounted?)")
        }
        var result: [String: Position] = [:]
        for (database, _) in store.positions() {
            guard let newest = archive.files(of: database).max(by: { $0.maxTXID < $1.maxTXID }) else { continue }
            let checksum = positions(database).byTXID()[newest.maxTXID] ?? .zero
            result[database] = Position(txid: newest.maxTXID, checksum: checksum)
        }
        return result
    }

    func archiveDatabase(_ database: String, current: Position) throws(ArchiveError) {
        noteCurrent(database, current: current)
        guard current.txid.rawValue > 0 else { return }
        guard let position = archived![database] else {
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
                if !group.isEmpty && (size + contentSize > Self.groupLimit || group.count >= Self.groupCount) {
                    try writeLevelZero(database, group, current: current)
                    group = []
                    size = 0
                }
                group.append(content)
                size += contentSize
            }
            if !group.isEmpty { try writeLevelZero(database, group, current: current) }
        case .snapshot:
            if position.txid > current.txid { try moveAside(database, above: current.txid) }
            logger.notice(
                "backup: the log no longer holds what the archive lacks, or its history is not this node's: continuing from a new snapshot",
                metadata: ["database": "\(database)", "archived": "\(position.txid)", "position": "\(current)"])
            try writeSnapshot(database, advancing: true)
        }
    }

    /// One level-0 file for consecutive transactions; its end position is
    /// recorded before the file is renamed into place.
    private func writeLevelZero(_ database: String, _ group: [LTXContent], current: Position) throws(ArchiveError) {
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
        let written = try ArchiveFileEncoder.merge(group, into: file)
        try commit(file, database: database, end: Position(txid: name.maxTXID, checksum: written.postApply), timestamp: written.header.timestamp)
        noteArchived(database, Position(txid: name.maxTXID, checksum: written.postApply), timestamp: written.header.timestamp, current: current)
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
        let encoded = snapshot.encode(flags: .noChecksum, timestamp: timestamp, chunk: ArchiveFileEncoder.chunk, continuing: { store.isWritable }) { bytes, _ in
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
        if advancing { noteArchived(database, snapshot.position, timestamp: timestamp, current: snapshot.position) }
    }

    /// A file to write in the archive, its directory made if needed (under
    /// an existing `backup.path` only: a target that is not mounted is not
    /// written in its mount point's place).
    func makeFile(_ path: String) throws(ArchiveError) -> DurableFile {
        let directory = String(path[..<path.lastIndex(of: "/")!])
        guard Syscall.isDirectory(archive.root) else { throw ArchiveError("backup.path \(archive.root) is not a directory (not mounted?)") }
        if case .failure(let error) = Syscall.makeDirectories(directory) { throw ArchiveError("cannot create", path: directory, error) }
        do throws(Errno) {
            return try DurableFile(path: path)
        } catch {
            throw ArchiveError("cannot create", path: path, error)
        }
    }

    /// Records the position a file leads to, then renames it into place,
    /// if this node is still the primary.
    func commit(_ file: DurableFile, database: String, end: Position?, timestamp: Int64) throws(ArchiveError) {
        let metadata = archive.replicaDirectory(database) + "/" + BackupArchive.metadataName
        if end != nil, case .failure(let error) = Syscall.makeDirectories(metadata) { throw ArchiveError("cannot create", path: metadata, error) }
        if let end, case .failure(let error) = positions(database).append([ArchivePositions.Entry(txid: end.txid, checksum: end.checksum, timestamp: timestamp)]) {
            throw ArchiveError("cannot record the archived position", path: archive.positionsPath(database), error)
        }
        try checkStillPrimary()
        do throws(Errno) {
            try file.commit(timestamp: timestamp)
        } catch {
            throw ArchiveError("cannot write", path: file.path, error)
        }
    }

    /// Files of a history this node does not have (a primary lost before
    /// they reached it) move to `.replfs/aside/<time>/`, kept, out of
    /// Litestream's sight, before this node's history continues the
    /// archive.
    private func moveAside(_ database: String, above txid: TXID) throws(ArchiveError) {
        let destination = archive.asideDirectory(database) + "/\(WallClock.milliseconds())"
        if case .failure(let error) = Syscall.makeDirectories(destination) { throw ArchiveError("cannot create", path: destination, error) }
        for file in archive.files(of: database) where file.maxTXID > txid {
            let target = destination + "/\(file.level)-\(file.name)"
            if case .failure(let error) = Syscall.rename(at: AT_FDCWD, file.path, to: target) { throw ArchiveError("cannot move aside", path: file.path, error) }
        }
        logger.warning(
            "backup: the archive holds transactions this node does not (a primary lost before they were replicated): moved them aside",
            metadata: ["database": "\(database)", "above": "\(txid)", "to": "\(destination)"])
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
