/// One archived version of a plain file (the Noise key):
/// `<path>/.replfs/files/<escaped path>/<name>`, where the name is the
/// time of the change in milliseconds (16 digits, so names sort in time
/// order), a sequence number for changes within one millisecond, and what
/// happened: `file-<mode in octal>` (the content is the file's bytes) or
/// `removed` (empty).
public struct PlainFileVersion: Hashable, Sendable {
    public enum Change: Hashable, Sendable {
        case file(mode: UInt32)
        case removed
    }

    public var timestamp: Int64
    public var sequence: Int
    public var change: Change

    public init(timestamp: Int64, sequence: Int, change: Change) {
        self.timestamp = timestamp
        self.sequence = sequence
        self.change = change
    }

    public var name: String {
        let time = String(timestamp)
        let sequence = String(self.sequence)
        let kind: String
        switch change {
        case .file(let mode): kind = "file-" + String(mode & 0o7777, radix: 8)
        case .removed: kind = "removed"
        }
        return String(repeating: "0", count: max(0, 16 - time.count)) + time + "-" + String(repeating: "0", count: max(0, 4 - sequence.count)) + sequence + "." + kind
    }

    public init?(name: String) {
        let parts = name.split(separator: ".", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        let stamp = parts[0].split(separator: "-")
        guard stamp.count == 2, stamp[0].count == 16, let timestamp = Int64(stamp[0]), let sequence = Int(stamp[1]) else { return nil }
        let kind = parts[1]
        if kind == "removed" {
            change = .removed
        } else if kind.hasPrefix("file-"), let mode = UInt32(kind.dropFirst(5), radix: 8) {
            change = .file(mode: mode)
        } else {
            return nil
        }
        self.timestamp = timestamp
        self.sequence = sequence
    }

    /// The directory of a plain file's versions in `archive`.
    public static func directory(of path: String, in archive: BackupArchive) -> String {
        archive.plainFilesDirectory + "/" + DatabaseKey.escape(path)
    }

    /// The plain files archived, by their paths in the mount.
    public static func archivedPaths(in archive: BackupArchive) -> [String] {
        guard case .success(let names) = Syscall.listDirectory(archive.plainFilesDirectory) else { return [] }
        return names.filter { !DurableFile.isTemporary($0) }.map { name in
            // A shortened name (a long path) keeps the path in a file.
            let recorded = archive.plainFilesDirectory + "/" + name + "/" + DatabaseKey.pathFileName
            if case .success(let bytes) = Syscall.readFile(recorded), let path = String(validating: bytes, as: UTF8.self) { return path }
            return DatabaseKey.unescape(name)
        }.sorted()
    }

    /// A plain file's versions, oldest first.
    public static func versions(of path: String, in archive: BackupArchive) -> [PlainFileVersion] {
        guard case .success(let names) = Syscall.listDirectory(directory(of: path, in: archive)) else { return [] }
        return names.compactMap(PlainFileVersion.init(name:)).sorted { ($0.timestamp, $0.sequence) < ($1.timestamp, $1.sequence) }
    }
}
