/// What a backup archive holds and what can be restored from it: the JSON
/// of `replfsd backups --json` and the source of its human output.
///
/// "Restorable" means what `replfsd restore` (and `litestream restore`)
/// would accept: the range runs from the earliest state a chain can start
/// at (the oldest file from TXID 1: a snapshot, or the first level-0 file)
/// to where the newest restore plan ends. Keys are snake_case, TXIDs are
/// numbers (as in `replfsd status --json`), times RFC 3339 in UTC to the
/// millisecond.
public struct BackupListing: Codable, Hashable, Sendable {
    /// The archive's root (`--from`).
    public var path: String
    public var databases: [Database]
    public var plainFiles: [PlainFile]

    enum CodingKeys: String, CodingKey {
        case path, databases
        case plainFiles = "plain_files"
    }

    /// One archived database (a Litestream file replica).
    public struct Database: Codable, Hashable, Sendable {
        public var name: String
        /// The oldest and newest TXID a restore can reach; nil when nothing
        /// is restorable.
        public var firstTXID: UInt64?
        public var lastTXID: UInt64?
        /// The times of those states.
        public var oldestTime: String?
        public var newestTime: String?
        /// Level-9 files, oldest first.
        public var snapshots: [Snapshot]
        /// The levels that hold files, lowest first.
        public var levels: [Level]
        public var totalBytes: Int64
        /// Whether the archive records database checksums for it
        /// (`.replfs/positions`): restores are then verified.
        public var checksumsRecorded: Bool
        /// Why the newest backup cannot be restored (a gap, no snapshot),
        /// when it cannot; `lastTXID` is then where the chain stops.
        public var problem: String?

        enum CodingKeys: String, CodingKey {
            case name, snapshots, levels, problem
            case firstTXID = "first_txid"
            case lastTXID = "last_txid"
            case oldestTime = "oldest_time"
            case newestTime = "newest_time"
            case totalBytes = "total_bytes"
            case checksumsRecorded = "checksums_recorded"
        }
    }

    public struct Snapshot: Codable, Hashable, Sendable {
        public var txid: UInt64
        public var time: String
        public var bytes: Int64
    }

    public struct Level: Codable, Hashable, Sendable {
        public var level: Int
        public var files: Int
        public var bytes: Int64
    }

    /// One archived plain file (the Noise key) and its versions.
    public struct PlainFile: Codable, Hashable, Sendable {
        public var path: String
        public var versions: Int
        public var firstTime: String?
        public var lastTime: String?
        /// Whether the newest version is the file's removal.
        public var removed: Bool

        enum CodingKeys: String, CodingKey {
            case path, versions, removed
            case firstTime = "first_time"
            case lastTime = "last_time"
        }
    }

    public init(path: String, databases: [Database], plainFiles: [PlainFile]) {
        self.path = path
        self.databases = databases
        self.plainFiles = plainFiles
    }

    /// Reads the listing of `archive` from its directories.
    public init(archive: BackupArchive) {
        let databases = archive.databases().map { name in
            Self.database(name, files: archive.files(of: name),
                          checksumsRecorded: (try? Syscall.stat(archive.positionsPath(name)).get()) != nil)
        }
        let plainFiles = PlainFileVersion.archivedPaths(in: archive).map { path in
            Self.plainFile(path, versions: PlainFileVersion.versions(of: path, in: archive))
        }
        self.init(path: archive.root, databases: databases, plainFiles: plainFiles)
    }

    /// The listing of one database from its files (pure, for tests).
    static func database(_ name: String, files: [BackupArchive.File], checksumsRecorded: Bool) -> Database {
        let starts = files.filter { $0.minTXID == TXID(1) }
        let first = starts.min { ($0.maxTXID, $0.timestamp) < ($1.maxTXID, $1.timestamp) }
        let chain = RestorePlan.chain(files)
        var problem: String?
        if !files.isEmpty {
            do throws(RestoreError) {
                _ = try RestorePlan(database: name, files: files, target: .latest)
            } catch {
                problem = error.description
            }
        }
        let levels = Dictionary(grouping: files, by: \.level).sorted { $0.key < $1.key }.map { level, files in
            Level(level: level, files: files.count, bytes: files.reduce(0) { $0 + $1.size })
        }
        let snapshots = files.filter { $0.level == BackupArchive.snapshotLevel }.sorted { $0.maxTXID < $1.maxTXID }.map {
            Snapshot(txid: $0.maxTXID.rawValue, time: RFC3339Time.format(milliseconds: $0.timestamp), bytes: $0.size)
        }
        return Database(
            name: name,
            firstTXID: first?.maxTXID.rawValue,
            lastTXID: chain.last?.maxTXID.rawValue,
            oldestTime: starts.map(\.timestamp).min().map { RFC3339Time.format(milliseconds: $0) },
            newestTime: chain.last.map { RFC3339Time.format(milliseconds: $0.timestamp) },
            snapshots: snapshots,
            levels: levels,
            totalBytes: files.reduce(0) { $0 + $1.size },
            checksumsRecorded: checksumsRecorded,
            problem: problem)
    }

    /// The listing of one plain file from its versions (oldest first).
    static func plainFile(_ path: String, versions: [PlainFileVersion]) -> PlainFile {
        PlainFile(
            path: path,
            versions: versions.count,
            firstTime: versions.first.map { RFC3339Time.format(milliseconds: $0.timestamp) },
            lastTime: versions.last.map { RFC3339Time.format(milliseconds: $0.timestamp) },
            removed: versions.last?.change == .removed)
    }
}
