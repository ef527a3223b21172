#if canImport(Glibc)
import Glibc
#endif

/// Compaction, scheduled snapshots and retention, as Litestream 0.5 does
/// them, so that its restore finds what it expects.
extension Archiver {
    /// Level n gathers level n-1 at each of its wall-clock boundaries (30 s,
    /// 5 min, 1 h by default). The first boundary after this node started
    /// archiving counts.
    func compactIfDue(_ database: String, now: Int64) throws(ArchiveError) {
        var last = lastCompaction[database] ?? Array(repeating: now, count: settings.compaction.count)
        defer { lastCompaction[database] = last }
        for (index, interval) in settings.compaction.enumerated() {
            let period = max(1, interval.milliseconds)
            guard now / period > last[index] / period else { continue }
            try compact(database, into: index + 1)
            last[index] = now
        }
    }

    /// Merges the level below's files that come after this level's newest
    /// into files of this level: one unbroken run of them (where two files
    /// start at the same TXID, the one reaching further), never across the
    /// end of a snapshot (where a new primary may have started the archive
    /// again: what lies on either side may be two histories), each group
    /// small enough to merge in memory.
    private func compact(_ database: String, into level: Int) throws(ArchiveError) {
        let floor = archive.files(of: database, level: level).map(\.maxTXID).max() ?? TXID(0)
        let snapshotEnds = Set(archive.files(of: database, level: BackupArchive.snapshotLevel).map(\.maxTXID))
        let candidates = archive.files(of: database, level: level - 1).filter { $0.minTXID > floor }
        var run: [BackupArchive.File] = []
        while let next = candidates.filter({ run.isEmpty || $0.minTXID == run.last!.maxTXID.next }).max(by: { ($1.minTXID, $0.maxTXID) < ($0.minTXID, $1.maxTXID) }) {
            run.append(next)
            if snapshotEnds.contains(next.maxTXID) { break }
        }
        for group in ArchiveFileEncoder.groups(run, size: \.size, limit: Self.groupLimit) {
            try writeCompacted(database, level: level, group)
        }
    }

    private func writeCompacted(_ database: String, level: Int, _ group: [BackupArchive.File]) throws(ArchiveError) {
        let name = LTXFileName(minTXID: group[0].minTXID, maxTXID: group[group.count - 1].maxTXID)
        let file = try makeFile(archive.path(database, level: level, name))
        guard try ArchiveFileEncoder.merge(group.map { .file($0.path) }, into: file) != nil else {
            file.abandon()
            let half = group.count / 2
            try writeCompacted(database, level: level, Array(group[..<half]))
            return try writeCompacted(database, level: level, Array(group[half...]))
        }
        // The end position is one a level-0 file already recorded.
        try commit(file, database: database, end: nil, timestamp: group[group.count - 1].timestamp)
    }

    /// A snapshot every `snapshot-interval`, if the database changed since
    /// the last one.
    func snapshotIfDue(_ database: String, now: Int64) throws(ArchiveError) {
        guard let current = store.position(of: database), current.txid.rawValue > 0 else { return }
        let snapshots = archive.files(of: database, level: BackupArchive.snapshotLevel)
        if let newest = snapshots.max(by: { $0.timestamp < $1.timestamp }) {
            guard now - newest.timestamp >= settings.snapshotInterval.milliseconds, newest.maxTXID != current.txid else { return }
        }
        try writeSnapshot(database, advancing: false)
    }

    /// Files older than `retention` go, keeping what a restore to any
    /// moment since then needs: the newest snapshot at or before that
    /// moment (the floor) and everything after it. Level-0 files go
    /// earlier, once one level-1 file holds the whole range of one and it is
    /// older than `levelZeroRetention` (the newest level-0 file stays: it
    /// marks where the archive stands).
    func enforceRetention(_ database: String, now: Int64) throws(ArchiveError) {
        let files = archive.files(of: database)
        var doomed: [BackupArchive.File] = []
        let cutoff = now - settings.retention.milliseconds
        let floor = files.filter { $0.level == BackupArchive.snapshotLevel && $0.timestamp <= cutoff }.max { $0.maxTXID < $1.maxTXID }
        if let floor {
            doomed += files.filter { $0.level == BackupArchive.snapshotLevel ? $0.maxTXID < floor.maxTXID : $0.maxTXID <= floor.maxTXID }
        }
        let levelZero = files.filter { $0.level == 0 }
        let newestLevelZero = levelZero.map(\.maxTXID).max()
        let levelOne = files.filter { $0.level == 1 }
        doomed += levelZero.filter { file in
            file.maxTXID != newestLevelZero && file.timestamp < now - settings.levelZeroRetention.milliseconds
                && levelOne.contains { $0.minTXID <= file.minTXID && $0.maxTXID >= file.maxTXID }
        }
        var removed = 0
        try checkStillPrimary()
        for file in Set(doomed) {
            if case .success = Syscall.unlink(at: AT_FDCWD, file.path) { removed += 1 }
            // Not a sign of the archive changing under this node.
            if newestFile[database] == file.path { newestFile[database] = nil }
        }
        if let floor, case .failure(let error) = positions(database).rewrite(keeping: { $0.txid >= floor.maxTXID }) {
            throw ArchiveError("cannot prune", path: archive.positionsPath(database), error)
        }
        if removed > 0 { logger.debug("backup retention removed files", metadata: ["database": "\(database)", "files": "\(removed)"]) }
    }
}
