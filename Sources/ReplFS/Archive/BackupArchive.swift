#if canImport(Glibc)
import Glibc
#endif

/// Where things are in a backup archive (`backup.path`).
///
/// Each database is a Litestream 0.5 file replica of its own, so that
/// `litestream restore file:///PATH/NAME` reads it unchanged:
/// `<path>/<database>/ltx/<level>/<min>-<max>.ltx`, levels 0 (one file per
/// archived batch of transactions) to 8 (compactions), and level 9 for
/// snapshots. ReplFS's own additions live beside it, in names Litestream
/// never reads: `<path>/<database>/.replfs/positions` (the database checksum
/// at each archived TXID, which Litestream's file format has no room for)
/// and `<path>/.replfs/files/` (the plain files' versions).
public struct BackupArchive: Sendable {
    /// The archive's root directory (`backup.path`, or `--from`).
    public let root: String

    /// Snapshots are level 9; 0 is what the primary writes as it commits.
    public static let snapshotLevel = 9
    public static let levels = 0...9
    /// ReplFS's own directory, in the archive and in each database's replica.
    public static let metadataName = ".replfs"

    public init(root: String) {
        self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    /// `<root>/<database>`: the directory Litestream's file replica URL names.
    public func replicaDirectory(_ database: String) -> String { root + "/" + database }

    public func levelDirectory(_ database: String, level: Int) -> String {
        replicaDirectory(database) + "/ltx/\(level)"
    }

    public func path(_ database: String, level: Int, _ name: LTXFileName) -> String {
        levelDirectory(database, level: level) + "/\(name)"
    }

    /// The database checksums of the archived positions (``ArchivePositions``).
    public func positionsPath(_ database: String) -> String {
        replicaDirectory(database) + "/\(Self.metadataName)/positions"
    }

    /// Where files of a history that is not the primary's go (never deleted).
    public func asideDirectory(_ database: String) -> String {
        replicaDirectory(database) + "/\(Self.metadataName)/aside"
    }

    /// `<root>/.replfs/files`: one directory per plain file (its path
    /// escaped), one file per version (``PlainFileVersion``).
    public var plainFilesDirectory: String { root + "/\(Self.metadataName)/files" }

    /// One archived LTX file, from its name and its metadata.
    public struct File: Hashable, Sendable {
        public var level: Int
        public var name: LTXFileName
        public var path: String
        public var size: Int64
        /// Modification time in milliseconds: the archiver sets it to the
        /// header's timestamp (the newest commit's time), which is what
        /// `litestream restore -timestamp` compares.
        public var timestamp: Int64

        public var minTXID: TXID { name.minTXID }
        public var maxTXID: TXID { name.maxTXID }
    }

    /// Every archived LTX file of `database`, all levels, sorted by level
    /// then TXID. Temporary and foreign names are skipped.
    public func files(of database: String) -> [File] {
        var found: [File] = []
        for level in Self.levels {
            found += files(of: database, level: level)
        }
        return found
    }

    public func files(of database: String, level: Int) -> [File] {
        let directory = levelDirectory(database, level: level)
        guard case .success(let names) = Syscall.listDirectory(directory) else { return [] }
        var found: [File] = []
        for entry in names {
            guard let name = try? LTXFileName(parsing: entry) else { continue }
            let path = directory + "/" + entry
            // Regular files only: a link placed in the archive is not followed.
            guard case .success(let info) = Syscall.lstat(at: AT_FDCWD, path), info.st_mode & S_IFMT == S_IFREG else { continue }
            let timestamp = Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000
            found.append(File(level: level, name: name, path: path, size: Int64(info.st_size), timestamp: timestamp))
        }
        return found.sorted { ($0.minTXID, $0.maxTXID) < ($1.minTXID, $1.maxTXID) }
    }

    /// The databases archived under the root: every directory (at any
    /// depth, outside ReplFS's own) that holds an `ltx` directory, as paths
    /// relative to the root.
    public func databases() -> [String] {
        var found: [String] = []
        func walk(_ relative: String, depth: Int) {
            let directory = relative.isEmpty ? root : root + "/" + relative
            guard depth < 16, case .success(let names) = Syscall.listDirectory(directory) else { return }
            if names.contains("ltx"), !relative.isEmpty, Syscall.isDirectory(directory + "/ltx") {
                found.append(relative)
                return
            }
            for name in names.sorted() where name != Self.metadataName && Syscall.isDirectory(directory + "/" + name) {
                walk(relative.isEmpty ? name : relative + "/" + name, depth: depth + 1)
            }
        }
        walk("", depth: 0)
        return found.sorted()
    }
}
