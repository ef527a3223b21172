/// The point a restore aims at: the newest state archived, a TXID, or a time.
public enum RestoreTarget: Hashable, Sendable, CustomStringConvertible {
    case latest
    /// Exactly this TXID: only files ending at or before it count, and the
    /// chain must end on it.
    case txid(TXID)
    /// Milliseconds since the epoch: only files whose timestamp (their
    /// newest commit's time) is at or before it count.
    case timestamp(Int64)

    /// Whether `file` lies within the target, the filter Litestream 0.5's
    /// `CalcRestorePlan` applies to every level.
    public func admits(_ file: BackupArchive.File) -> Bool {
        switch self {
        case .latest: true
        case .txid(let txid): file.maxTXID <= txid
        case .timestamp(let time): file.timestamp <= time
        }
    }

    /// A `--txid` argument: 16 hex digits (as in file names and in what
    /// `restore` prints), `0x` then hex, or decimal. A 16-digit argument is
    /// always hex, which is how every TXID ReplFS prints looks.
    public static func txid(parsing text: String) -> TXID? {
        let value: UInt64?
        if text.hasPrefix("0x") || text.hasPrefix("0X") {
            value = UInt64(text.dropFirst(2), radix: 16)
        } else if text.utf8.count == 16 {
            value = UInt64(text, radix: 16)
        } else {
            value = UInt64(text, radix: 10)
        }
        guard let value, value > 0 else { return nil }
        return TXID(value)
    }

    /// "the newest backup", "TXID 0000000000000123", "2026-12-07T10:00:00.123Z".
    public var description: String {
        switch self {
        case .latest: "the newest backup"
        case .txid(let txid): "TXID \(txid)"
        case .timestamp(let time): RFC3339Time.format(milliseconds: time)
        }
    }
}

/// Which archived LTX files rebuild a database at a target, in apply order.
///
/// The rules are Litestream 0.5's `CalcRestorePlan`, so that `replfsd
/// restore` and `litestream restore` pick the same state from the same
/// archive: of the files within the target, start from the newest level-9
/// snapshot (or, with none, a file from TXID 1 at any level), then extend
/// greedily: among the files of levels 8 to 0 that start at or before the
/// next TXID and end after the current one, take the one reaching furthest.
/// Files may overlap the range already applied (a level-1 compaction of
/// 100-130 on a state at 120): a compacted file holds the final version of
/// every page changed in its range, so it gives the state at its end.
///
/// Pure logic over the archive's listing, so it is tested without a disk.
public struct RestorePlan: Hashable, Sendable {
    public var database: String
    public var target: RestoreTarget
    /// The files to apply, in order: each ends after the one before.
    public var files: [BackupArchive.File]

    /// The TXID the database is at once every file is applied.
    public var txid: TXID { files[files.count - 1].maxTXID }
    /// When that TXID was committed: the last file's timestamp.
    public var timestamp: Int64 { files[files.count - 1].timestamp }

    /// Plans the restore of `database` from `files` (its archived files, any
    /// order, any level).
    ///
    /// Refuses, rather than restore something older than asked: nothing
    /// within the target; nothing to start from; a gap below the newest file
    /// within the target (Litestream's "non-contiguous" error); for a TXID,
    /// a chain that does not end exactly on it.
    public init(database: String, files: [BackupArchive.File], target: RestoreTarget) throws(RestoreError) {
        let admitted = files.filter(target.admits)
        let within = target == .latest ? "" : " at or before \(target)"
        guard let newest = admitted.max(by: { $0.maxTXID < $1.maxTXID }) else {
            throw RestoreError(.noBackup, "no backup of \(database)\(within)" + Self.oldest(files))
        }
        let chain = Self.chain(admitted)
        guard let reached = chain.last?.maxTXID else {
            let first = admitted.min { ($0.minTXID, $0.maxTXID) < ($1.minTXID, $1.maxTXID) }!
            throw RestoreError(.noStart, "no snapshot of \(database)\(within) to start from: "
                + "the oldest file within it, \(first.name) at level \(first.level), starts at TXID \(first.minTXID)")
        }
        if reached < newest.maxTXID {
            let next = admitted.filter { $0.minTXID > reached.next }.min { $0.minTXID < $1.minTXID }
            let resumes = next.map { ", the next file starts at TXID \($0.minTXID) (\($0.name) at level \($0.level))" } ?? ""
            throw RestoreError(.nonContiguous, "non-contiguous: nothing follows TXID \(reached) in the backup of \(database)\(resumes)")
        }
        if case .txid(let wanted) = target, reached != wanted {
            throw RestoreError(.txidUnavailable, "no backup of \(database) ends at TXID \(wanted): "
                + "the nearest restorable TXID before it is \(reached) (compaction keeps only the end points of its ranges)")
        }
        self.database = database
        self.target = target
        self.files = chain
    }

    /// The greedy chain over `files` (already filtered by the target),
    /// possibly ending early at a gap, possibly empty.
    static func chain(_ files: [BackupArchive.File]) -> [BackupArchive.File] {
        var chain: [BackupArchive.File] = []
        let snapshots = files.filter { $0.level == BackupArchive.snapshotLevel && $0.minTXID == TXID(1) }
        if let snapshot = snapshots.max(by: { better($1, than: $0) }) {
            chain.append(snapshot)
        }
        // With no snapshot, TXID 0 is where the first file (one from TXID 1,
        // at any level below 9) must start.
        var current = chain.last?.maxTXID ?? TXID(0)
        let levels = files.filter { $0.level < BackupArchive.snapshotLevel }
        while let next = levels.filter({ $0.minTXID <= current.next && $0.maxTXID > current }).max(by: { better($1, than: $0) }) {
            chain.append(next)
            current = next.maxTXID
        }
        return chain
    }

    /// What an operator asking for too old a state needs next: the oldest
    /// state the archive can restore (a file from TXID 1), else its oldest file.
    private static func oldest(_ files: [BackupArchive.File]) -> String {
        if let start = files.filter({ $0.minTXID == TXID(1) }).min(by: { ($0.maxTXID, $0.timestamp) < ($1.maxTXID, $1.timestamp) }) {
            return "; the oldest state it can restore is TXID \(start.maxTXID) of \(RFC3339Time.format(milliseconds: start.timestamp))"
        }
        guard let first = files.min(by: { ($0.minTXID, $0.maxTXID) < ($1.minTXID, $1.maxTXID) }) else { return "" }
        return "; its oldest file, \(first.name) at level \(first.level), starts at TXID \(first.minTXID) and has no snapshot before it"
    }

    /// Litestream's `restoreCandidateBetter`: further, then starting
    /// earlier, then the higher level (fewer files to read).
    private static func better(_ file: BackupArchive.File, than other: BackupArchive.File) -> Bool {
        if file.maxTXID != other.maxTXID { return file.maxTXID > other.maxTXID }
        if file.minTXID != other.minTXID { return file.minTXID < other.minTXID }
        if file.level != other.level { return file.level > other.level }
        return file.timestamp < other.timestamp
    }
}
